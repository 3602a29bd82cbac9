"""/metrics scraped by a real Prometheus (Debian's package): a real manager with a master
and a slave on real mariadbd, the shipped rules loaded and checked by promtool, the
counters across a restart of the manager, and a token beyond loopback."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import REPO, Manager, free_port, wait_until
from tests.integration.test_api_security import Remote, started

pytestmark = pytest.mark.integration

RULES = REPO / "contrib" / "prometheus" / "conpaassql-rules.yml"
SCRAPE_CONFIG = REPO / "contrib" / "prometheus" / "prometheus.yml"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"the metrics tests need {name} (Debian's prometheus package): "
                             "scripts/bootstrap.sh installs it when run as root")
    return found


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False,
                          cwd=cwd)


def test_promtool_checks_the_shipped_rules() -> None:
    checked = run(tool("promtool"), "check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS: 13 rules found" in checked.stdout, checked
    tested = run(tool("promtool"), "test", "rules", "conpaassql-rules.test.yml",
                 cwd=RULES.parent)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested


def test_promtool_checks_the_shipped_scrape_configuration(tmp_path: Path) -> None:
    """The example as shipped, its token and CA files put where it says."""
    token, ca = tmp_path / "conpaassql.token", tmp_path / "conpaassql-ca.crt"
    token.write_text("cqt_example\n")
    ca.write_text("")
    text = SCRAPE_CONFIG.read_text()
    assert "/etc/prometheus/conpaassql.token" in text and "conpaassql-ca.crt" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/conpaassql.token", str(token))
                      .replace("/etc/prometheus/conpaassql-ca.crt", str(ca)))
    shutil.copy(RULES, tmp_path / RULES.name)
    checked = run(tool("promtool"), "check", "config", str(config))
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked


@contextlib.contextmanager
def prometheus(jobs: str, prefix: list[str] | None = None) -> Iterator[str]:
    """A Prometheus on a free loopback port (in a namespace with ``prefix``), scraping
    every second with the shipped rules; its URL."""
    directory = Path(tempfile.mkdtemp(prefix="cq-prom-", dir="/tmp"))
    port = free_port()
    shutil.copy(RULES, directory / RULES.name)
    (directory / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES.name}\nscrape_configs:\n{jobs}")
    with open(directory / "prometheus.out", "ab") as out:
        process = subprocess.Popen(
            [*(prefix or []), tool("prometheus"),
             f"--config.file={directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=out, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def query(url: str, expression: str) -> list[dict[str, Any]]:
    """The series of an instant query, as Prometheus's HTTP API answers it."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def by_node(series: list[dict[str, Any]]) -> dict[str, float]:
    return {item["metric"]["node"]: float(item["value"][1]) for item in series}


def test_prometheus_scrapes_a_master_and_a_slave(manager: Manager) -> None:
    manager.post("add_nodes", count=2)
    master, (slave,) = manager.wait_topology(2)
    job = (f"  - job_name: conpaassql\n    static_configs:\n"
           f"      - targets: ['127.0.0.1:{manager.port}']\n")
    with prometheus(job) as url:
        up = wait_until(lambda: len(by_node(query(url, "conpaassql_node_up == 1"))) == 2
                        and query(url, "conpaassql_node_up"), 120, 0.5,
                        "Prometheus having both nodes up")
        assert {item["metric"]["cloud"] for item in up} == {"default"}
        assert by_node(up) == {str(master): 1.0, str(slave): 1.0}
        roles = by_node(query(url, "conpaassql_node_role == 1"))
        assert set(roles) == {str(master), str(slave)}
        role_of = {item["metric"]["node"]: item["metric"]["role"]
                   for item in query(url, "conpaassql_node_role == 1")}
        assert role_of == {str(master): "master", str(slave): "slave"}
        lag = wait_until(lambda: by_node(query(url, "conpaassql_node_replication_lag_seconds")),
                         30, 0.5, "the slave's lag in seconds")
        assert lag == {str(slave): 0.0}
        behind = wait_until(
            lambda: by_node(query(url, "conpaassql_node_replication_lag_transactions")),
            30, 0.5, "the slave's lag in transactions")
        assert set(behind) == {str(slave)}
        assert by_node(query(url, "conpaassql_node_replicating")) == {str(slave): 1.0}
        assert query(url, "conpaassql_service_writers")[0]["value"][1] == "1"
        assert query(url, 'conpaassql_service_state{state="RUNNING"}')[0]["value"][1] == "1"
        assert {item["metric"]["quantile"] for item in
                query(url, "conpaassql_manager_loop_lag_seconds >= 0")} == {"0.99", "1"}
        figures = wait_until(lambda: by_node(query(url, "conpaassql_node_connections")),
                             30, 0.5, "the servers' figures")
        assert set(figures) == {str(master), str(slave)}
        rules = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert [(group["name"], {rule["health"] for rule in group["rules"]})
                for group in rules] == [("conpaassql", {"ok"})]
        alerts = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        assert [alert for alert in alerts if alert["state"] == "firing"] == []
        # A new service archives binlogs and has no backup yet: pending for 26 h.
        assert {alert["labels"]["alertname"] for alert in alerts} <= {"ConpaasSQLNoBackup"}

        # A switchover: counted, and still counted after the manager restarts.
        manager.post("set_up_replica_master", id=slave)
        wait_until(lambda: query(url, "conpaassql_switchovers_total == 1"), 30, 0.5,
                   "Prometheus seeing the switchover")
        manager.kill()
        manager.start()
        text = httpx.get(f"{manager.url}metrics", timeout=10).text
        assert "conpaassql_switchovers_total 1.0" in text
        assert "conpaassql_failovers_total 0.0" in text
        after = wait_until(lambda: by_node(query(url, "conpaassql_node_role{role='master'}"
                                                      " == 1")), 60, 0.5, "the new master")
        assert after == {str(slave): 1.0}
        assert query(url, "resets(conpaassql_switchovers_total[5m]) > 0") == []


def in_namespace(remote: Remote, url: str, token_file: Path | None = None) -> Any:
    """A GET of ``url`` from inside the manager's namespace: status and body."""
    script = ("import httpx, json, sys\n"
              "headers = {'Authorization': 'Bearer ' + open(sys.argv[3]).read().strip()}"
              " if sys.argv[3] else {}\n"
              "answer = httpx.get(sys.argv[1], headers=headers, verify=sys.argv[2] or True,"
              " timeout=10)\n"
              "print(json.dumps([answer.status_code, answer.text]))\n")
    done = remote.run(sys.executable, "-c", script, url,
                      str(remote.state_dir / "pki" / "ca.crt"), str(token_file or ""))
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def test_beyond_loopback_a_scraper_needs_a_token(tmp_path: Path) -> None:
    with started() as remote:
        metrics = f"https://{remote.address}:{remote.port}/metrics"
        status, body = in_namespace(remote, metrics)
        assert status == 401 and "an API token is needed" in body
        made = remote.tokens("new", "--read-only", "--label", "prometheus")
        assert made.returncode == 0, made
        token = remote.state_dir / "prometheus.token"
        token.write_text(made.stdout)
        token.chmod(0o600)
        status, body = in_namespace(remote, metrics, token)
        assert status == 200 and "conpaassql_service_nodes 0.0" in body

        # Prometheus itself, as the shipped configuration has it: TLS, the service's CA and
        # the token file; and a job without the token, refused.
        job = (f"  - job_name: conpaassql\n    scheme: https\n"
               f"    authorization:\n      type: Bearer\n      credentials_file: {token}\n"
               f"    tls_config:\n      ca_file: {remote.state_dir / 'pki' / 'ca.crt'}\n"
               f"    static_configs:\n      - targets: ['{remote.address}:{remote.port}']\n"
               f"  - job_name: no-token\n    scheme: https\n"
               f"    tls_config:\n      ca_file: {remote.state_dir / 'pki' / 'ca.crt'}\n"
               f"    static_configs:\n      - targets: ['{remote.address}:{remote.port}']\n")
        with prometheus(job, ["ip", "netns", "exec", remote.namespace]) as url:

            def targets() -> dict[str, tuple[str, str]] | None:
                _, body = in_namespace(remote, f"{url}/api/v1/targets")
                active = json.loads(body)["data"]["activeTargets"]
                seen = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}
                return seen if "unknown" not in {h for h, _ in seen.values()} \
                    and len(seen) == 2 else None

            seen = wait_until(targets, 60, 0.5, "both jobs scraped")
            assert seen["conpaassql"] == ("up", ""), seen
            assert seen["no-token"][0] == "down" and "401" in seen["no-token"][1], seen
