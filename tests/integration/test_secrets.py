"""No secret where it does not belong: logs, error replies, command lines, environments,
files others may read. The service does real work first (a master and a slave, a
user with a password, a dump loaded and exported, failing calls that carry a
password), then every place is searched for every secret it knows of."""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE
from tests.integration.harness import Manager, rpc_error

pytestmark = pytest.mark.integration

USER_PASSWORD = "Us3r-S3cret-Pa55word-xyz"
NEW_PASSWORD = "N3w-S3cret-Pa55word-abc"
LOG_SUFFIXES = (".log", ".out", ".err")
TEXT_LIMIT = 8 << 20  # larger files are InnoDB's tablespaces and redo log


@pytest.fixture(scope="module")
def service(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        manager.wait_topology(2)
        yield manager
    finally:
        manager.close()


def secrets_of(manager: Manager) -> dict[str, str]:
    """Every secret the service holds, by name (key bodies: one line of each)."""
    directory = manager.state_dir / "secrets"
    found = {path.name: path.read_text().strip() for path in directory.iterdir()
             if path.is_file() and not path.name.endswith(".json")}
    found["user password"] = USER_PASSWORD
    found["new user password"] = NEW_PASSWORD
    for key in [*manager.state_dir.glob("pki/*.key"),
                *manager.state_dir.glob("nodes/*/tls/node.key")]:
        lines = key.read_text().splitlines()
        found[f"key {key.relative_to(manager.state_dir)}"] = lines[1]
    assert {"root_password", "agent_secret", "replication_password", "api_token"} <= \
        set(found), sorted(found)
    return found


def work(manager: Manager, tmp: Path) -> tuple[list[str], str]:
    """Real work, and failing calls that carry a password; the error replies, and the
    password of a dump account the manager gave out."""
    manager.post("create_database", database="shop")
    manager.post("configure_user", username="clerk", password=USER_PASSWORD,
                 database="shop")
    dump = tmp / "shop.sql"
    dump.write_text("CREATE TABLE t (i INT PRIMARY KEY);\nINSERT INTO t VALUES (1),(2);\n")
    manager.upload("load_dump", "mysqldump_file", dump, database="shop")
    manager.download("sqldump", tmp / "out.sql", database="shop")
    manager.post("set_password", username="clerk", password=NEW_PASSWORD)
    master = manager.get("get_service_info")["master"]["id"]
    login = manager.sql(master, "SELECT COUNT(*) FROM shop.t", user="clerk",
                        password=NEW_PASSWORD, tcp=(manager.node(master)["ip"], 3306))
    assert login.returncode == 0 and login.stdout.strip() == "2", login.stderr
    # A dump account: used, released; and one that conpaassql-client takes and uses.
    account = manager.get("grant_sqldump_login", database="shop")
    used = manager.sql(account["node"], "SELECT COUNT(*) FROM shop.t", user=account["user"],
                       password=account["password"], tcp=(account["host"], account["port"]))
    assert used.returncode == 0 and used.stdout.strip() == "2", used.stderr
    manager.get("release_sqldump_login", user=account["user"])
    client = [sys.executable, "-m", "conpaassql.client", "127.0.0.1", str(manager.port)]
    exported = subprocess.run([*client, "sqldump", "shop", "-o", str(tmp / "cli.sql")],
                              capture_output=True, text=True, timeout=120, check=False)
    assert exported.returncode == 0 and "INSERT INTO `t`" in (tmp / "cli.sql").read_text(), \
        exported.stderr
    return [

        rpc_error(lambda: manager.post("configure_user", username="x\x00", host="bad host!",
                                       password=USER_PASSWORD)),
        rpc_error(lambda: manager.post("configure_user", username="root",
                                       password=USER_PASSWORD)),
        rpc_error(lambda: manager.post("set_password", username="nobody",
                                       password=NEW_PASSWORD)),
        rpc_error(lambda: manager.post("set_password", username="clerk",
                                       password=NEW_PASSWORD + "\n")),
        rpc_error(lambda: manager.post("configure_user", username="clerk",
                                       password=USER_PASSWORD, privileges=["DROP ALL"],
                                       database="shop")),
    ], account["password"]


def service_pids(manager: Manager) -> list[int]:
    pids = [manager.process.pid] if manager.process else []
    for name in (AGENT_PID_FILE, MYSQLD_PID_FILE):
        for path in manager.state_dir.glob(f"nodes/*/{name}"):
            pids.append(int(path.read_text().strip()))
    return pids


def test_no_secret_where_it_does_not_belong(service: Manager, tmp_path: Path) -> None:
    manager = service
    replies, dump_password = work(manager, tmp_path)
    secrets = secrets_of(manager)
    secrets["dump account password"] = dump_password

    # Error replies say what is wrong, never with the password in it.
    for reply in replies:
        for name, value in secrets.items():
            assert value not in reply, (name, reply)

    # Logs: the manager's, the agents', the servers' (error and slow logs).
    logs = [p for p in manager.state_dir.rglob("*")
            if p.is_file() and (p.suffix in LOG_SUFFIXES or p.parent.name == "log")]
    assert any(p.name == "manager.log" for p in logs) and \
        any(p.name == "agent.log" for p in logs), logs
    for log in logs:
        text = log.read_text(errors="replace")
        for name, value in secrets.items():
            assert value not in text, (name, str(log))

    # Command lines and environments of the service's processes.
    listing = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                             check=True).stdout
    for name, value in secrets.items():
        assert value not in listing, name
    pids = service_pids(manager)
    assert len(pids) >= 5, pids  # the manager, two agents, two servers
    for pid in pids:
        environment = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        for name, value in secrets.items():
            assert value not in environment, (name, pid)

    # Files: whatever holds a secret is readable by its owner only, in private dirs.
    holders = []
    for path in manager.state_dir.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.stat().st_size > TEXT_LIMIT:
            continue  # the big ones are InnoDB's files; binlogs and logs are smaller
        text = path.read_bytes().decode("utf-8", errors="replace")
        if any(value in text for value in secrets.values()):
            holders.append(path)
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, \
                (str(path), oct(path.stat().st_mode))
    assert holders, "no file holds a secret?"
    named = {p.name for p in holders}
    assert {"root_password", "api_token", "context", "client.cnf", "node.key", "ca.key"} <= \
        named, sorted(named)
    # A user's password never lands in a file in clear (the server keeps a hash).
    for path in holders:
        text = path.read_text(errors="replace")
        assert USER_PASSWORD not in text and NEW_PASSWORD not in text, str(path)
    assert stat.S_IMODE((manager.state_dir / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((manager.state_dir / "pki").stat().st_mode) == 0o700
    for node in manager.state_dir.glob("nodes/*"):
        assert stat.S_IMODE(node.stat().st_mode) & 0o077 == 0, str(node)
