"""Users, databases and logs through the manager, checked with the real mariadb client."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest

from conpaassql.errors import RemoteError
from conpaassql.rpc.client import call_blocking
from tests.integration.harness import Manager, wait_until

pytestmark = pytest.mark.integration

INJECTED_USER = "x'@'%'; DROP USER root; --"
INJECTED_DATABASE = "a`; DROP DATABASE mysql; --"
SECRET = "S3cr3t-Pass"
READ_ONLY = "Service in wrong state DETAIL:this server is read-only (a slave)"


def refused(manager: Manager, method: str, verb: str = "POST", **params: Any) -> str:
    """The error text of a call that must fail."""
    with pytest.raises(RemoteError) as caught:
        manager.call(method, verb, **params)
    return str(caught.value)


def as_user(manager: Manager, node: dict[str, Any], user: str, password: str,
            statement: str) -> subprocess.CompletedProcess[str]:
    """``statement`` run by ``user`` with the mariadb client over TCP to the node."""
    return manager.sql(node["id"], statement, user=user, password=password,
                       tcp=(node["ip"], 3306))


def users_of(manager: Manager, node_id: int) -> dict[tuple[str, str], dict[str, Any]]:
    reply = manager.get("get_users", serviceNodeId=node_id)
    return {(u["username"], u["host"]): u for u in reply["nodes"][0]["users"]}


def databases_of(manager: Manager, node_id: int) -> dict[str, dict[str, Any]]:
    reply = manager.get("list_databases", serviceNodeId=node_id)
    return {d["database"]: d for d in reply["nodes"][0]["databases"]}


def root_sql(manager: Manager, node_id: int, statement: str) -> str:
    answer = manager.sql(node_id, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def test_users_privileges_and_logins(manager: Manager) -> None:
    manager.post("add_nodes", count=2)
    nodes = manager.wait_running(2)
    assert manager.post("create_database", database="db1")["nodes"] == [1, 2]
    manager.post("create_database", database="db2")
    for node in nodes:
        root_sql(manager, node["id"], "CREATE TABLE db1.t (i INT);"
                 "INSERT INTO db1.t VALUES (1), (2);"
                 "CREATE TABLE db2.t (i INT); INSERT INTO db2.t VALUES (3)")

    reply = manager.post("configure_user", username="reader", password="r3ad-only pw",
                         database="db1", privileges="select")
    assert reply["nodes"] == [1, 2] and reply["created"] == [1, 2]
    assert reply["privileges"] == ["SELECT"] and "note" not in reply
    for node in nodes:
        assert as_user(manager, node, "reader", "r3ad-only pw",
                       "SELECT COUNT(*) FROM db1.t").stdout.strip() == "2"
        denied = as_user(manager, node, "reader", "r3ad-only pw", "INSERT INTO db1.t VALUES (9)")
        assert denied.returncode != 0 and "command denied" in denied.stderr
        shown = as_user(manager, node, "reader", "r3ad-only pw", "SHOW DATABASES").stdout.split()
        assert "db1" in shown and "db2" not in shown and "mysql" not in shown
        assert "denied" in as_user(manager, node, "reader", "r3ad-only pw",
                                   "SELECT * FROM db2.t").stderr
        assert "denied" in as_user(manager, node, "reader", "r3ad-only pw",
                                   "SELECT * FROM mysql.user").stderr

    # ALL on db1: tables can be made there, and nowhere else.
    manager.post("configure_user", username="writer", password="wr1te", database="db1",
                 privileges=["ALL"])
    made = as_user(manager, nodes[0], "writer", "wr1te",
                   "CREATE TABLE db1.w (i INT); INSERT INTO db1.w VALUES (1); SELECT * FROM db1.w")
    assert made.returncode == 0 and made.stdout.strip() == "1", made.stderr
    assert "denied" in as_user(manager, nodes[0], "writer", "wr1te", "CREATE DATABASE db3").stderr

    users = users_of(manager, 1)
    reader = users[("reader", "%")]
    assert reader["can_login"] and reader["password_set"] and not reader["locked"]
    assert "GRANT SELECT ON `db1`.* TO `reader`@`%`" in reader["grants"]
    usage = next(g for g in reader["grants"] if g.startswith("GRANT USAGE"))
    assert usage.endswith("IDENTIFIED BY PASSWORD '***'")  # no hash shown
    assert users[("root", "localhost")]["reserved"] is True
    assert not any(name == "mariadb.sys" for name, _ in users)
    seed = manager.call("get_users", "GET")
    assert len(seed["nodes"]) == 2

    # A new password only.
    manager.post("set_password", user="reader", password="n3w pw")
    assert as_user(manager, nodes[1], "reader", "n3w pw", "SELECT 1").returncode == 0
    assert "Access denied" in as_user(manager, nodes[1], "reader", "r3ad-only pw",
                                      "SELECT 1").stderr
    # configure_user on an existing user: new password, privileges on db1 replaced.
    again = manager.post("configure_user", username="reader", password="th1rd",
                         database="db1", privileges=["SELECT", "insert"])
    assert again["created"] == [] and again["privileges"] == ["SELECT", "INSERT"]
    assert as_user(manager, nodes[0], "reader", "th1rd",
                   "INSERT INTO db1.t VALUES (5)").returncode == 0

    # Delete: the login fails, and a second delete says so.
    assert manager.post("delete_user", username="writer")["nodes"] == [1, 2]
    assert "Access denied" in as_user(manager, nodes[0], "writer", "wr1te", "SELECT 1").stderr
    gone = refused(manager, "delete_user", username="writer")
    assert gone.startswith("Invalid argument: username DETAIL:no user 'writer'@'%'")
    assert "(nodes 1, 2)" in gone

    # A grant on my_db does not cover myXdb (_ is a wildcard in grants).
    manager.post("create_database", database="my_db")
    manager.post("create_database", database="myXdb")
    manager.post("configure_user", username="under", password="und3r", database="my_db",
                 privileges="SELECT")
    shown = as_user(manager, nodes[0], "under", "und3r", "SHOW DATABASES").stdout.split()
    assert "my_db" in shown and "myXdb" not in shown

    # No database: the account may log in and sees nothing.
    bare = manager.post("configure_user", username="bare", password="b4re")
    assert "no database given" in bare["note"]
    assert as_user(manager, nodes[0], "bare", "b4re", "SHOW DATABASES").stdout.split() == [
        "information_schema"]

    secret = manager.get("get_password")
    assert secret["username"] == "root" and secret["password"] == manager.root_password
    assert "unix socket" in secret["note"]


def test_databases_injections_and_reserved_names(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    manager.wait_running(1)

    made = manager.post("create_database", database="sized", character_set="latin1",
                        collation="latin1_swedish_ci")
    assert made == {"nodes": [1], "database": "sized", "character_set": "latin1",
                    "collation": "latin1_swedish_ci"}
    manager.post("create_database", database="empty")
    root_sql(manager, 1, "CREATE TABLE sized.t (id INT PRIMARY KEY, v VARCHAR(200));"
             "INSERT INTO sized.t SELECT seq, REPEAT('x', 200) FROM sized.seq_1_to_2000;"
             "CREATE VIEW sized.v AS SELECT id FROM sized.t; ANALYZE TABLE sized.t")
    found = databases_of(manager, 1)
    assert found["sized"]["tables"] == 1 and found["sized"]["views"] == 1
    assert found["sized"]["bytes"] > 100_000
    assert (found["empty"]["tables"], found["empty"]["bytes"]) == (0, 0)
    assert not {"mysql", "sys", "information_schema", "performance_schema"} & set(found)
    # Database names are case-sensitive, though information_schema compares without case.
    manager.post("create_database", database="Mixed")
    manager.post("create_database", database="mixed")
    root_sql(manager, 1, "CREATE TABLE `Mixed`.t (i INT)")
    found = databases_of(manager, 1)
    assert (found["Mixed"]["tables"], found["mixed"]["tables"]) == (1, 0)
    manager.post("drop_database", database="mixed")
    assert "Mixed" in databases_of(manager, 1)

    assert refused(manager, "create_database", database="sized").startswith(
        "Invalid argument: database DETAIL:database 'sized' exists already")
    assert refused(manager, "create_database", database="c", character_set="nope").startswith(
        "Invalid argument: character_set DETAIL:the server has no character set 'nope'")
    assert refused(manager, "create_database", database="c", character_set="latin1",
                   collation="utf8mb4_bin").startswith("Invalid argument: collation")
    assert refused(manager, "drop_database", database="nope").startswith(
        "Invalid argument: database DETAIL:no database 'nope'")
    assert manager.post("drop_database", database="empty") == {"nodes": [1], "database": "empty"}
    assert "empty" not in databases_of(manager, 1)

    # Names that look like SQL are stored exactly, and nothing else happens.
    manager.post("create_database", database=INJECTED_DATABASE)
    manager.post("create_database", database="we`ird")
    assert {INJECTED_DATABASE, "we`ird"} <= set(databases_of(manager, 1))
    assert "mysql" in root_sql(manager, 1, "SHOW DATABASES").split()
    manager.post("configure_user", username=INJECTED_USER, password="inj3cted",
                 database="we`ird", privileges="SELECT")
    manager.post("configure_user", username="back`tick", password="b4ck")
    users = users_of(manager, 1)
    assert (INJECTED_USER, "%") in users and ("back`tick", "%") in users
    assert "GRANT SELECT ON `we``ird`.* TO `x'@'%'; DROP USER root; --`@`%`" in users[
        (INJECTED_USER, "%")]["grants"]
    assert root_sql(manager, 1, "SELECT COUNT(*) FROM mysql.global_priv "
                    "WHERE User = 'root'").strip() == "1"
    assert manager.post("delete_user", username=INJECTED_USER)["nodes"] == [1]
    manager.post("drop_database", database=INJECTED_DATABASE)
    assert INJECTED_DATABASE not in databases_of(manager, 1)

    before = (users_of(manager, 1), databases_of(manager, 1))
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
    assert (users_of(manager, 1), databases_of(manager, 1)) == before


def test_logs_and_read_only_servers(manager: Manager) -> None:
    manager.post("add_nodes", count=2)
    nodes = manager.wait_running(2)

    agent_log = manager.get("get_agent_log", serviceNodeId=1)
    assert agent_log["node"] == 1 and agent_log["which"] == "agent"
    assert "agent of node 1 starting" in agent_log["log"]
    error_log = manager.get("get_agent_log", serviceNodeId=2, log="error", lines=500)
    assert "ready for connections" in error_log["log"]
    assert len(manager.get("get_agent_log", serviceNodeId=2, log="error",
                           lines=2)["log"].splitlines()) <= 2
    assert isinstance(manager.get("get_agent_log", serviceNodeId=1, log="slow")["log"], str)
    assert refused(manager, "get_agent_log", "GET") == "Missing argument: serviceNodeId"
    assert refused(manager, "get_agent_log", "GET", serviceNodeId=1,
                   lines=10_001).startswith("Invalid argument: lines")

    # Node 2 becomes read-only, as a slave is.
    agent_url = f"http://{nodes[1]['ip']}:60000/"
    call_blocking(agent_url, "set_server_configuration",
                  {"section": "mysqld", "id_param": "read_only", "value": "ON"},
                  token=manager.agent_secret, timeout=60)
    wait_until(lambda: manager.node(2)["state"] == "RUNNING"
               and manager.node(2)["isRunningMySQL"], 30, 0.2, "node 2 back")
    assert root_sql(manager, 2, "SELECT @@global.read_only").strip() == "1"

    one = refused(manager, "configure_user", serviceNodeId=2, username="late", password="l4te")
    assert one.startswith(READ_ONLY) and one.endswith("(node 2)"), one
    both = refused(manager, "configure_user", username="late", password="l4te")
    assert READ_ONLY in both and "(node 2)" in both and "done on node 1" in both
    assert ("late", "%") in users_of(manager, 1) and ("late", "%") not in users_of(manager, 2)
    assert refused(manager, "create_database", serviceNodeId=2,
                   database="nope").startswith(READ_ONLY)
    assert refused(manager, "delete_user", serviceNodeId=2,
                   username="late").startswith(READ_ONLY)
    assert "nope" not in databases_of(manager, 2)
    # The agent says the same to its manager directly.
    with pytest.raises(RemoteError, match="read-only"):
        call_blocking(agent_url, "create_database", {"database": "nope"},
                      token=manager.agent_secret)
