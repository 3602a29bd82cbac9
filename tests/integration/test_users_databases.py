"""Users, databases and logs through the manager, checked with the real mariadb client.

One manager with two nodes serves the whole module: a master (elected by the
service, whichever node it is) and a slave replicating from it. Writes go through
the manager and land on the master only; the slave gets them through replication,
which every check waits for (``sync``) before looking at it.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conpaassql.errors import RemoteError
from conpaassql.rpc.client import RpcClient
from tests.integration.harness import Manager

pytestmark = pytest.mark.integration

INJECTED_USER = "x'@'%'; DROP USER root; --"
INJECTED_DATABASE = "a`; DROP DATABASE mysql; --"
SECRET = "S3cr3t-Pass"
READ_ONLY = "Service in wrong state DETAIL:this server is read-only (a slave)"
SERVER_READ_ONLY = "running with the --read-only option"


class PlainManager(Manager):
    """A ``Manager`` whose calls skip loading the CA bundle (its URL is plain HTTP).

    Each ``call_blocking`` builds a client that loads the system CA certificates,
    about 0.1 s a call; this module makes a few hundred calls.
    """

    def call(self, method: str, verb: str = "POST", **params: Any) -> Any:
        async def once() -> Any:
            async with RpcClient(self.url, verify=False) as client:
                return await client.call(method, params, verb=verb)  # type: ignore[arg-type]

        return asyncio.run(once())


class Pair:
    """A manager with a master and one slave replicating from it."""

    def __init__(self, manager: Manager, master: int, slave: int) -> None:
        self.manager = manager
        self.master = master
        self.slave = slave
        listed = {n["id"]: n for n in manager.nodes()}
        self.master_node = listed[master]
        self.slave_node = listed[slave]

    def sync(self) -> None:
        self.manager.sync_slaves(self.master, [self.slave])

    @property
    def both(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The master's node then the slave's (as ``list_nodes`` shows them)."""
        return self.master_node, self.slave_node

    def slave_refusal(self) -> str:
        return (f"Service in wrong state DETAIL:node {self.slave} is a slave: it replicates "
                f"from node {self.master}; send writes to the master")


@pytest.fixture(scope="module")
def pair(template_cache: Path) -> Iterator[Pair]:
    manager = PlainManager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        master, slaves = manager.wait_topology(2)
        assert len(slaves) == 1
        yield Pair(manager, master, slaves[0])
    finally:
        manager.close()


def refused(manager: Manager, method: str, verb: str = "POST", **params: Any) -> str:
    """The error text of a call that must fail."""
    with pytest.raises(RemoteError) as caught:
        manager.call(method, verb, **params)
    return str(caught.value)


def as_user(manager: Manager, node: dict[str, Any], user: str, password: str,
            statement: str) -> subprocess.CompletedProcess[str]:
    """``statement`` run by ``user`` with the mariadb client over TCP to the node."""
    return manager.sql(node["id"], statement, user=user, password=password,
                       tcp=(node["ip"], node.get("port") or 3306))


def users_of(manager: Manager, node_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    reply = manager.get("get_users", serviceNodeId=node_id)
    assert [n["id"] for n in reply["nodes"]] == [node_id]
    return {(u["username"], u["host"]): u for u in reply["nodes"][0]["users"]}


def databases_of(manager: Manager, node_id: int) -> dict[str, dict[str, Any]]:
    reply = manager.get("list_databases", serviceNodeId=node_id)
    assert [n["id"] for n in reply["nodes"]] == [node_id]
    return {d["database"]: d for d in reply["nodes"][0]["databases"]}


def shape_of(databases: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What replication must copy exactly (sizes may differ between servers)."""
    return {name: (d["character_set"], d["collation"], d["tables"], d["views"])
            for name, d in databases.items()}


def root_sql(manager: Manager, node_id: int, statement: str) -> str:
    answer = manager.sql(node_id, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def test_users_privileges_and_logins(pair: Pair) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    assert manager.post("create_database", database="db1")["nodes"] == [master]
    assert manager.post("create_database", database="db2",
                        serviceNodeId="all")["nodes"] == [master]
    root_sql(manager, master, "CREATE TABLE db1.t (i INT);"
             "INSERT INTO db1.t VALUES (1), (2);"
             "CREATE TABLE db2.t (i INT); INSERT INTO db2.t VALUES (3)")

    reply = manager.post("configure_user", username="reader", password="r3ad-only pw",
                         database="db1", privileges="select")
    assert reply["nodes"] == [master] and reply["created"] == [master]
    assert reply["privileges"] == ["SELECT"] and "note" not in reply
    pair.sync()
    for node in pair.both:
        assert as_user(manager, node, "reader", "r3ad-only pw",
                       "SELECT COUNT(*) FROM db1.t").stdout.strip() == "2", node
        denied = as_user(manager, node, "reader", "r3ad-only pw", "INSERT INTO db1.t VALUES (9)")
        # The master lacks the privilege; the slave refuses any write before asking.
        why = "command denied" if node is pair.master_node else SERVER_READ_ONLY
        assert denied.returncode != 0 and why in denied.stderr, denied.stderr
        shown = as_user(manager, node, "reader", "r3ad-only pw", "SHOW DATABASES").stdout.split()
        # mysql and sys show: every account is held to its own small grant there.
        assert "db1" in shown and "db2" not in shown and {"mysql", "sys"} <= set(shown)
        assert "denied" in as_user(manager, node, "reader", "r3ad-only pw",
                                   "SELECT * FROM db2.t").stderr
        assert "denied" in as_user(manager, node, "reader", "r3ad-only pw",
                                   "SELECT * FROM mysql.user").stderr

    # ALL on db1: tables can be made there (on the master), and nowhere else.
    manager.post("configure_user", username="writer", password="wr1te", database="db1",
                 privileges=["ALL"])
    made = as_user(manager, pair.master_node, "writer", "wr1te",
                   "CREATE TABLE db1.w (i INT); INSERT INTO db1.w VALUES (1); SELECT * FROM db1.w")
    assert made.returncode == 0 and made.stdout.strip() == "1", made.stderr
    assert "denied" in as_user(manager, pair.master_node, "writer", "wr1te",
                               "CREATE DATABASE db3").stderr
    pair.sync()
    # On the slave the same user reads what it wrote, but may write nothing.
    assert as_user(manager, pair.slave_node, "writer", "wr1te",
                   "SELECT * FROM db1.w").stdout.strip() == "1"
    on_slave = as_user(manager, pair.slave_node, "writer", "wr1te",
                       "INSERT INTO db1.w VALUES (2)")
    assert on_slave.returncode != 0 and SERVER_READ_ONLY in on_slave.stderr, on_slave.stderr
    assert SERVER_READ_ONLY in as_user(manager, pair.slave_node, "writer", "wr1te",
                                       "CREATE TABLE db1.x (i INT)").stderr
    assert root_sql(manager, master, "SELECT COUNT(*) FROM db1.w").strip() == "1"
    assert root_sql(manager, slave, "SELECT COUNT(*) FROM db1.w").strip() == "1"

    users = users_of(manager, master)
    reader = users[("reader", "%")]
    assert reader["can_login"] and reader["password_set"] and not reader["locked"]
    assert "GRANT SELECT ON `db1`.* TO `reader`@`%`" in reader["grants"]
    usage = next(g for g in reader["grants"] if g.startswith("GRANT USAGE"))
    assert usage.endswith("IDENTIFIED BY PASSWORD '***'")  # no hash shown
    assert users[("root", "localhost")]["reserved"] is True
    assert not any(name == "mariadb.sys" for name, _ in users)
    assert users_of(manager, slave) == users  # the same accounts and grants, replicated
    root_sql(manager, master, "ALTER USER 'writer'@'%' ACCOUNT LOCK")
    writer = users_of(manager, master)[("writer", "%")]
    assert writer["locked"] and not writer["can_login"]
    root_sql(manager, master, "ALTER USER 'writer'@'%' ACCOUNT UNLOCK")
    pair.sync()
    seen = manager.call("get_users", "GET")
    assert [n["id"] for n in seen["nodes"]] == [master, slave]  # reads: every node
    assert [n["role"] for n in seen["nodes"]] == ["master", "slave"]
    assert seen["nodes"][0]["users"] == seen["nodes"][1]["users"]

    # A new password only.
    assert manager.post("set_password", user="reader", password="n3w pw")["nodes"] == [master]
    pair.sync()
    for node in pair.both:
        assert as_user(manager, node, "reader", "n3w pw", "SELECT 1").returncode == 0, node
        assert "Access denied" in as_user(manager, node, "reader", "r3ad-only pw",
                                          "SELECT 1").stderr
    # configure_user on an existing user: new password, privileges on db1 replaced.
    again = manager.post("configure_user", username="reader", password="th1rd",
                         database="db1", privileges=["SELECT", "insert"])
    assert again["nodes"] == [master]
    assert again["created"] == [] and again["privileges"] == ["SELECT", "INSERT"]
    assert as_user(manager, pair.master_node, "reader", "th1rd",
                   "INSERT INTO db1.t VALUES (5)").returncode == 0
    pair.sync()
    assert as_user(manager, pair.slave_node, "reader", "th1rd",
                   "SELECT COUNT(*) FROM db1.t").stdout.strip() == "3"
    assert "Access denied" in as_user(manager, pair.slave_node, "reader", "n3w pw",
                                      "SELECT 1").stderr
    granted = users_of(manager, slave)[("reader", "%")]["grants"]
    assert "GRANT SELECT, INSERT ON `db1`.* TO `reader`@`%`" in granted

    # Delete: the login fails everywhere, and a second delete says so.
    assert manager.post("delete_user", username="writer")["nodes"] == [master]
    pair.sync()
    for node in pair.both:
        assert "Access denied" in as_user(manager, node, "writer", "wr1te", "SELECT 1").stderr
    assert ("writer", "%") not in users_of(manager, slave)
    gone = refused(manager, "delete_user", username="writer")
    assert gone.startswith("Invalid argument: username DETAIL:no user 'writer'@'%'")
    assert gone.endswith(f"(node {master})"), gone

    # A grant on my_db does not cover myXdb (_ is a wildcard in grants).
    manager.post("create_database", database="my_db")
    manager.post("create_database", database="myXdb")
    manager.post("configure_user", username="under", password="und3r", database="my_db",
                 privileges="SELECT")
    # No database: a new account owns every database (the seed's user).
    bare = manager.post("configure_user", username="bare", password="b4re")
    assert bare["nodes"] == [master] and bare["created"] == [master]
    assert bare["on"] == "`%`.*" and "no database given" in bare["note"]
    pair.sync()
    for node in pair.both:
        shown = as_user(manager, node, "under", "und3r", "SHOW DATABASES").stdout.split()
        assert "my_db" in shown and "myXdb" not in shown, node
        owned = as_user(manager, node, "bare", "b4re", "SHOW DATABASES").stdout.split()
        assert {"my_db", "myXdb", "mysql"} <= set(owned), node
    assert users_of(manager, slave) == users_of(manager, master)

    secret = manager.get("get_password")
    assert secret["username"] == "root" and secret["password"] == manager.root_password
    assert "unix socket" in secret["note"]


def test_databases_injections_and_reserved_names(pair: Pair) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave

    made = manager.post("create_database", database="sized", character_set="latin1",
                        collation="latin1_swedish_ci")
    assert made == {"nodes": [master], "database": "sized", "character_set": "latin1",
                    "collation": "latin1_swedish_ci"}
    manager.post("create_database", database="empty")
    root_sql(manager, master, "CREATE TABLE sized.t (id INT PRIMARY KEY, v VARCHAR(200));"
             "INSERT INTO sized.t SELECT seq, REPEAT('x', 200) FROM sized.seq_1_to_2000;"
             "CREATE VIEW sized.v AS SELECT id FROM sized.t; ANALYZE TABLE sized.t")
    pair.sync()
    for node_id in (master, slave):
        found = databases_of(manager, node_id)
        assert found["sized"]["tables"] == 1 and found["sized"]["views"] == 1, node_id
        assert (found["sized"]["character_set"], found["sized"]["collation"]) == (
            "latin1", "latin1_swedish_ci")
        assert (found["empty"]["tables"], found["empty"]["bytes"]) == (0, 0)
        assert not {"mysql", "sys", "information_schema", "performance_schema"} & set(found)
    assert databases_of(manager, master)["sized"]["bytes"] > 100_000
    assert root_sql(manager, slave, "SELECT COUNT(*) FROM sized.v").strip() == "2000"
    # Database names are case-sensitive, though information_schema compares without case.
    manager.post("create_database", database="Mixed")
    manager.post("create_database", database="mixed")
    root_sql(manager, master, "CREATE TABLE `Mixed`.t (i INT)")
    pair.sync()
    for node_id in (master, slave):
        found = databases_of(manager, node_id)
        assert (found["Mixed"]["tables"], found["mixed"]["tables"]) == (1, 0), node_id
    assert manager.post("drop_database", database="mixed")["nodes"] == [master]
    pair.sync()
    for node_id in (master, slave):
        found = databases_of(manager, node_id)
        assert "Mixed" in found and "mixed" not in found, node_id

    assert refused(manager, "create_database", database="sized").startswith(
        "Invalid argument: database DETAIL:database 'sized' exists already")
    assert refused(manager, "create_database", database="c", character_set="nope").startswith(
        "Invalid argument: character_set DETAIL:the server has no character set 'nope'")
    assert refused(manager, "create_database", database="c", character_set="latin1",
                   collation="utf8mb4_bin").startswith("Invalid argument: collation")
    assert refused(manager, "drop_database", database="nope").startswith(
        "Invalid argument: database DETAIL:no database 'nope'")
    assert manager.post("drop_database", database="empty") == {"nodes": [master],
                                                                 "database": "empty"}
    pair.sync()
    assert "empty" not in databases_of(manager, master)
    assert "empty" not in databases_of(manager, slave)
    assert "c" not in databases_of(manager, slave)

    # Names that look like SQL are stored exactly, and nothing else happens, on either node.
    manager.post("create_database", database=INJECTED_DATABASE)
    manager.post("create_database", database="we`ird")
    manager.post("configure_user", username=INJECTED_USER, password="inj3cted",
                 database="we`ird", privileges="SELECT")
    manager.post("configure_user", username="back`tick", password="b4ck")
    pair.sync()
    for node_id in (master, slave):
        assert {INJECTED_DATABASE, "we`ird"} <= set(databases_of(manager, node_id))
        assert "mysql" in root_sql(manager, node_id, "SHOW DATABASES").split()
        users = users_of(manager, node_id)
        assert (INJECTED_USER, "%") in users and ("back`tick", "%") in users, node_id
        assert "GRANT SELECT ON `we``ird`.* TO `x'@'%'; DROP USER root; --`@`%`" in users[
            (INJECTED_USER, "%")]["grants"]
        assert root_sql(manager, node_id, "SELECT COUNT(*) FROM mysql.global_priv "
                        "WHERE User = 'root'").strip() == "1"
    assert as_user(manager, pair.slave_node, "back`tick", "b4ck", "SELECT 1").returncode == 0
    assert manager.post("delete_user", username=INJECTED_USER)["nodes"] == [master]
    assert manager.post("drop_database", database=INJECTED_DATABASE)["nodes"] == [master]
    pair.sync()
    for node_id in (master, slave):
        assert INJECTED_DATABASE not in databases_of(manager, node_id)
        assert (INJECTED_USER, "%") not in users_of(manager, node_id)

    before = {node_id: (users_of(manager, node_id), shape_of(databases_of(manager, node_id)))
              for node_id in (master, slave)}
    assert before[master] == before[slave]
    attempts: list[tuple[str, dict[str, Any], str]] = [
        ("configure_user", {"username": "u" * 200, "password": SECRET}, "username"),
        ("configure_user", {"username": "nul\x00", "password": SECRET}, "username"),
        ("configure_user", {"username": "tab\tname", "password": SECRET}, "username"),
        ("configure_user", {"username": "trailing ", "password": SECRET}, "username"),
        ("configure_user", {"username": "ok", "password": "two\nlines"}, "password"),
        ("configure_user", {"username": "ok", "password": SECRET, "host": "%' OR 1=1"},
         "host"),
        ("configure_user", {"username": "ok", "password": SECRET, "database": "sized",
                            "privileges": "SUPER"}, "privileges"),
        ("configure_user", {"username": "ok", "password": SECRET, "database": "sized",
                            "privileges": "ALL; DROP USER root"}, "privileges"),
        ("configure_user", {"username": "ok", "password": SECRET, "database": "sized",
                            "privileges": ["SELECT", "GRANT OPTION"]}, "privileges"),
        ("configure_user", {"username": "ok", "password": SECRET, "database": "mysql"},
         "database"),
        ("configure_user", {"username": "ok", "password": SECRET, "privileges": "SELECT"},
         "privileges"),
        ("create_database", {"database": "mysql"}, "database"),
        ("create_database", {"database": "#mysql50#mysql"}, "database"),
        ("create_database", {"database": "d" * 65}, "database"),
        ("create_database", {"database": "sized", "collation": "x; DROP"}, "collation"),
        ("drop_database", {"database": "information_schema"}, "database"),
    ]
    for reserved in ("root", "mariadb.sys", "PUBLIC", "conpaassql_repl"):
        attempts += [("configure_user", {"username": reserved, "password": SECRET}, "username"),
                     ("delete_user", {"username": reserved}, "username"),
                     ("set_password", {"user": reserved, "password": SECRET}, "user")]
    for method, params, name in attempts:
        text = refused(manager, method, **params)
        assert text.startswith(f"Invalid argument: {name}"), (method, params, text)
        assert SECRET not in text
    # A lone surrogate, as JSON can carry it.
    body = ('{"method": "configure_user", "id": 1, "params": '
            '{"username": "\\ud800", "password": "pw"}}')
    reply = httpx.post(manager.url, content=body,
                       headers={"Content-Type": "application/json"}).json()
    assert reply["error"].startswith("Invalid argument: username")
    pair.sync()
    assert {node_id: (users_of(manager, node_id), shape_of(databases_of(manager, node_id)))
            for node_id in (master, slave)} == before


def test_logs(pair: Pair) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    for node_id in (master, slave):
        agent_log = manager.get("get_agent_log", serviceNodeId=node_id, lines=10_000)
        assert agent_log["node"] == node_id and agent_log["which"] == "agent"
        assert f"agent of node {node_id} starting" in agent_log["log"]
        error_log = manager.get("get_agent_log", serviceNodeId=node_id, log="error",
                                lines=10_000)
        assert "ready for connections" in error_log["log"]
    assert len(manager.get("get_agent_log", serviceNodeId=master)["log"].splitlines()) <= 100
    assert len(manager.get("get_agent_log", serviceNodeId=slave, log="error",
                           lines=2)["log"].splitlines()) <= 2
    assert isinstance(manager.get("get_agent_log", serviceNodeId=master, log="slow")["log"],
                      str)
    assert refused(manager, "get_agent_log", "GET") == "Missing argument: serviceNodeId"
    assert refused(manager, "get_agent_log", "GET", serviceNodeId=master,
                   lines=10_001).startswith("Invalid argument: lines")


def test_writes_naming_the_slave_are_refused(pair: Pair) -> None:
    manager, master, slave = pair.manager, pair.master, pair.slave
    # The slave's server is read-only, as the service made it.
    assert root_sql(manager, slave, "SELECT @@global.read_only").strip() == "1"
    assert root_sql(manager, master, "SELECT @@global.read_only").strip() == "0"
    assert manager.node(slave)["replication"]["role"] == "slave"
    listed = manager.get("list_nodes")
    assert (listed["masters"], listed["slaves"]) == ([master], [slave])

    manager.post("create_database", database="db_keep")
    manager.post("configure_user", username="keeper", password="k33p", database="db_keep",
                 privileges="SELECT")
    pair.sync()
    before = {node_id: (users_of(manager, node_id), shape_of(databases_of(manager, node_id)))
              for node_id in (master, slave)}
    position = root_sql(manager, master, "SELECT @@global.gtid_binlog_pos").strip()

    attempts: list[tuple[str, dict[str, Any]]] = [
        ("configure_user", {"username": "late", "password": "l4te"}),
        ("configure_user", {"username": "keeper", "password": "n3w", "database": "db_keep",
                            "privileges": "ALL"}),
        ("set_password", {"user": "keeper", "password": "n3w"}),
        ("delete_user", {"username": "keeper"}),
        ("create_database", {"database": "nope"}),
        ("drop_database", {"database": "db_keep"}),
    ]
    for method, params in attempts:
        text = refused(manager, method, serviceNodeId=slave, **params)
        assert text == pair.slave_refusal(), (method, text)
    # The agent of the slave says the same to its manager directly: read-only.
    for method, params in attempts:
        sent = {("username" if k == "user" else k): v for k, v in params.items()}
        if isinstance(sent.get("privileges"), str):
            sent["privileges"] = [sent["privileges"]]
        with pytest.raises(RemoteError) as caught:
            manager.agent_call(slave, method, sent)
        assert str(caught.value).startswith(READ_ONLY), (method, str(caught.value))
    # Nothing changed anywhere: no account, no database, not one transaction.
    assert root_sql(manager, master, "SELECT @@global.gtid_binlog_pos").strip() == position
    assert root_sql(manager, slave, "SELECT @@global.gtid_current_pos").strip() == position
    after = {node_id: (users_of(manager, node_id), shape_of(databases_of(manager, node_id)))
             for node_id in (master, slave)}
    assert after == before
    assert as_user(manager, pair.slave_node, "keeper", "k33p", "SELECT 1").returncode == 0
    assert "Access denied" in as_user(manager, pair.slave_node, "keeper", "n3w",
                                      "SELECT 1").stderr

    # Through the manager (or naming the master), the same write goes to the master and
    # reaches the slave.
    assert manager.post("configure_user", username="late", password="l4te")["nodes"] == [master]
    assert manager.post("create_database", serviceNodeId=master,
                        database="late_db")["nodes"] == [master]
    pair.sync()
    for node_id in (master, slave):
        assert ("late", "%") in users_of(manager, node_id)
        assert "late_db" in databases_of(manager, node_id)
    for node in pair.both:
        assert as_user(manager, node, "late", "l4te", "SELECT 1").returncode == 0, node
