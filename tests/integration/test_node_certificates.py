"""Verified TLS to every node by its own address, and routers known to the manager:
their addresses in every node's certificate, served at once without a restart."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from conpaassql.rpc.certificates import names_of
from conpaassql.rpc.tls import client_context
from tests.integration import workload
from tests.integration.harness import Manager, rpc_error, wait_until

pytestmark = pytest.mark.integration



def verified_sql(manager: Manager, ip: str, port: int) -> subprocess.CompletedProcess[str]:
    """The real client, verifying the server's certificate against the service's CA and
    the address it connects to."""
    defaults = manager.defaults_file(workload.APP_USER, workload.APP_PASSWORD)
    try:
        return subprocess.run(
            ["mariadb", f"--defaults-extra-file={defaults}", "-h", ip, "-P", str(port),
             "--ssl", f"--ssl-ca={manager.ca_file}", "--ssl-verify-server-cert",
             "--batch", "--skip-column-names", "-e", "SELECT @@hostname IS NOT NULL"],
            capture_output=True, text=True, timeout=30, check=False)
    finally:
        defaults.unlink(missing_ok=True)


def mysqld_names(ip: str, port: int) -> list[str]:
    """The names in the certificate the node's mysqld serves now (a server greets only a
    host some account may come from)."""
    shown = subprocess.run(
        ["openssl", "s_client", "-starttls", "mysql", "-connect", f"{ip}:{port}"],
        input="", capture_output=True, text=True, timeout=30, check=False)
    start = shown.stdout.find("-----BEGIN CERTIFICATE-----")
    end = shown.stdout.find("-----END CERTIFICATE-----")
    assert start >= 0 and end > start, shown.stderr[-500:]
    pem = shown.stdout[start:end + len("-----END CERTIFICATE-----")]
    return names_of(x509.load_pem_x509_certificate(pem.encode("ascii")))


def agent_names(manager: Manager, ip: str, port: int) -> list[str]:
    """The names in the certificate the node's agent serves now (to the manager)."""
    context = client_context(manager.manager_tls)
    context.check_hostname = False
    with socket.create_connection((ip, port), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return names_of(x509.load_der_x509_certificate(der))


def test_every_node_is_verified_by_its_address_and_names_the_routers(pair: Manager) -> None:
    manager = pair
    nodes = manager.get("list_nodes")["nodes"]
    for node in nodes:
        # Issued again once the node registered with its address, and served by
        # mysqld without a restart.
        wait_until(lambda n=node: verified_sql(manager, n["ip"], n["port"]).returncode == 0,
                   60, 0.5, f"a verified connection to node {node['id']}")
        assert node["ip"] in mysqld_names(node["ip"], node["port"])
    info = manager.get("get_service_info")
    assert info["endpoints"] is None and info["routers"] == []
    pids = {n["id"]: manager.node(n["id"])["mysqld"]["pid"] for n in nodes}

    answer = manager.post("register_router", name="edge-1",
                          writer={"host": "127.0.0.1", "port": 13306},
                          readers={"host": "127.0.0.1", "port": 13307},
                          hosts=["db.example.test"])
    assert sorted(answer["certificates"]["installed"]) == sorted(pids)
    assert answer["certificates"]["failed"] == {}
    for node in nodes:
        names = mysqld_names(node["ip"], node["port"])
        assert {"127.0.0.1", "db.example.test", node["ip"]} <= set(names), names
        assert f"node-{node['id']}.{manager.service_id}.conpaassql" in names
        agent_port = manager.node(node["id"])["agent_port"]
        assert set(names) == set(agent_names(manager, node["ip"], agent_port))
        assert verified_sql(manager, node["ip"], node["port"]).returncode == 0
        assert manager.node(node["id"])["mysqld"]["pid"] == pids[node["id"]]  # no restart
    # The manager still reaches every agent by its name (mutual TLS unchanged).
    assert all(manager.node(n["id"])["isRunningMySQL"] for n in nodes)

    info = manager.get("get_service_info")
    assert info["endpoints"] == {"writer": {"host": "127.0.0.1", "port": 13306},
                                 "readers": {"host": "127.0.0.1", "port": 13307}}
    assert [r["name"] for r in info["routers"]] == ["edge-1"]
    assert info["routers"][0]["hosts"] == ["db.example.test"]

    # Registering again with the same names changes no certificate; new names do.
    again = manager.post("register_router", name="edge-1",
                         writer={"host": "127.0.0.1", "port": 13306},
                         readers={"host": "127.0.0.1", "port": 13307},
                         hosts=["db.example.test"])
    assert again["certificates"]["installed"] == []
    moved = manager.post("register_router", name="edge-2",
                         writer={"host": "::1", "port": 3306},
                         readers={"host": "0.0.0.0", "port": 3307})
    assert moved["endpoints"]["writer"] == {"host": "::1", "port": 3306}
    for node in nodes:
        names = mysqld_names(node["ip"], node["port"])
        assert "::1" in names and "0.0.0.0" not in names and "127.0.0.1" in names
    assert [r["name"] for r in manager.get("get_service_info")["routers"]] == \
        ["edge-1", "edge-2"]


def test_bad_routers_are_refused(pair: Manager) -> None:
    manager = pair
    good = {"name": "r1", "writer": {"host": "127.0.0.1", "port": 3306},
            "readers": {"host": "127.0.0.1", "port": 3307}}
    cases = [
        ({**good, "name": "r 1"}, "Invalid argument: name"),
        ({**good, "writer": {"host": "127.0.0.1", "port": 70000}}, "Invalid argument: writer"),
        ({**good, "writer": "127.0.0.1:3306"}, "Invalid argument: writer"),
        ({**good, "readers": {"host": "not a host", "port": 3307}},
         "Invalid argument: readers"),
        ({**good, "hosts": ["ok.example", "-bad"]}, "Invalid argument: hosts"),
        ({"name": "r1", "writer": good["writer"]}, "Missing argument: readers"),
        ({**good, "via": "x"}, "Unexpected arguments"),
    ]
    for params, expected in cases:
        text = rpc_error(lambda p=params: manager.post("register_router", **p))
        assert text.startswith(expected), (params, text)
    assert manager.get("get_service_info")["routers"] == []



def test_a_configured_router_gives_the_endpoints_and_is_in_every_certificate(
        template_cache: Path) -> None:
    manager = Manager(template_cache, sections="[router]\nname = front\n"
                      "writer = 127.0.0.1:13306\nreaders = 127.0.0.1:13307\n"
                      "hosts = db.example.test\n").start()
    try:
        info = manager.get("get_service_info")
        assert info["endpoints"] == {"writer": {"host": "127.0.0.1", "port": 13306},
                                     "readers": {"host": "127.0.0.1", "port": 13307}}
        assert [(r["name"], r["source"]) for r in info["routers"]] == \
            [("front", "configuration")]
        manager.post("add_nodes", count=1)
        (node,) = manager.wait_running(1)
        manager.wait_topology(1)
        workload.prepare(manager)  # an account from anywhere: the server greets anyone
        wait_until(lambda: {"127.0.0.1", "db.example.test", node["ip"]}
                   <= set(mysqld_names(node["ip"], node["port"])), 60, 0.5,
                   "the configured router's names in the node's certificate")
        # A registered router is listed, but the configured one keeps the endpoints.
        manager.post("register_router", name="edge", writer={"host": "127.0.0.2", "port": 1},
                     readers={"host": "127.0.0.2", "port": 2})
        info = manager.get("get_service_info")
        assert info["endpoints"]["writer"] == {"host": "127.0.0.1", "port": 13306}
        assert [r["name"] for r in info["routers"]] == ["front", "edge"]
    finally:
        manager.close()
