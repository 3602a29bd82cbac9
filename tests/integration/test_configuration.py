"""The service's server configuration on the manager, with real nodes: dynamic options at
once everywhere (and on a node added after), static ones by a rolling restart under a
write load, wrong ones refused with nothing changed, a value mysqld will not start
with rolled back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from conpaassql.gui.app import create_app
from conpaassql.gui.config import GuiConfig
from tests.integration import workload
from tests.integration.harness import Manager, rpc_error, wait_until
from tests.integration.test_replication import acked_rows_present, assert_converged, sql_value

pytestmark = pytest.mark.integration
HTML = {"accept": "text/html"}




def variable(manager: Manager, node: int, name: str) -> str:
    return sql_value(manager, node, f"SELECT @@global.{name}")


def mysqld_pid(manager: Manager, node: int) -> int:
    return int((manager.node_dir(node) / "mysql" / "run" / "mysqld.pid").read_text())


def node_files(manager: Manager, nodes: list[int]) -> dict[int, tuple[str, str]]:
    """Each node's my.cnf and its copy of the service's options (what a change touches)."""
    found = {}
    for node in nodes:
        directory = manager.node_dir(node) / "mysql"
        options = directory / "service-options.json"
        found[node] = ((directory / "my.cnf").read_text(),
                       options.read_text() if options.exists() else "")
    return found


def history(manager: Manager) -> list[str]:
    return [entry["message"] for entry in
            manager.get("get_service_history", limit=1000)["history"]]


def wait_restart(manager: Manager, timeout: float = 300) -> dict[str, Any]:
    return wait_until(lambda: (found := manager.get("get_server_configuration")["restart"])
                      and found["state"] != "running" and found, timeout, 0.3,
                      "the rolling restart's end")


def test_refused_options_change_nothing(solo: Manager) -> None:
    manager = solo
    before = node_files(manager, [1])
    long_query_time = variable(manager, 1, "long_query_time")
    cases = {
        "no_such_option_at_all": ("Invalid argument: options DETAIL:no_such_option_at_all: "
                                  "not an option of this server"),
        "max_connections": "Invalid argument: options DETAIL:max_connections: must be an "
                           "integer",
        "read_only": "Invalid argument: options DETAIL:read_only: managed by the service",
        "ssl_key": "Invalid argument: options DETAIL:ssl_key: managed by the service",
    }
    values = {"no_such_option_at_all": 1, "max_connections": "lots", "read_only": "OFF",
              "ssl_key": "/tmp/k"}
    for name, expected in cases.items():
        text = rpc_error(lambda name=name: manager.post(  # type: ignore[misc]
            "set_server_configuration", options={"long_query_time": 3, name: values[name]}))
        assert text.startswith(expected), text
    assert rpc_error(lambda: manager.post("set_server_configuration", options={
        "max_connections": 5})).startswith(
        "Invalid argument: options DETAIL:max_connections: 5 is out of range")
    assert rpc_error(lambda: manager.post("set_server_configuration")) == \
        "Missing argument: options"
    assert rpc_error(lambda: manager.post("set_server_configuration", options={"a": 1},
                                          when="now")) == "Unexpected arguments ['when']"
    assert rpc_error(lambda: manager.post("set_server_configuration", options=[1])) \
        .startswith("Invalid argument: options")
    assert rpc_error(lambda: manager.post("set_server_configuration", options={"a": 1},
                                          apply="later")).startswith("Invalid argument: apply")
    assert rpc_error(lambda: manager.post("reset_server_configuration",
                                          options=["max_connections"])).startswith(
        "Invalid argument: options DETAIL:max_connections: not in the service's")
    assert node_files(manager, [1]) == before
    assert variable(manager, 1, "long_query_time") == long_query_time
    assert manager.get("get_server_configuration")["options"] == {}


def test_dynamic_options_everywhere_and_on_a_node_added_after(solo: Manager) -> None:
    manager = solo
    pid = mysqld_pid(manager, 1)
    max_connections = variable(manager, 1, "max_connections")
    answer = manager.post("set_server_configuration",
                          options={"max-connections": 321, "long_query_time": 0.5,
                                   "slow_query_log": True})
    assert answer["options"] == {"max_connections": "321", "long_query_time": "0.5",
                                 "slow_query_log": "ON"}
    assert answer["restart"] is None and answer["pending_restart"] == {}
    assert sorted(answer["applied"]) == ["long_query_time", "max_connections",
                                         "slow_query_log"]
    assert variable(manager, 1, "max_connections") == "321"
    assert variable(manager, 1, "long_query_time") == "0.500000"
    assert mysqld_pid(manager, 1) == pid  # no restart
    kept = json.loads((manager.node_dir(1) / "mysql" / "service-options.json").read_text())
    assert kept["options"]["max_connections"] == "321"
    assert "max-connections=321" in (manager.node_dir(1) / "mysql" / "my.cnf").read_text()

    manager.post("add_nodes", count=1)
    manager.wait_topology(2)
    wait_until(lambda: variable(manager, 2, "max_connections") == "321", 60, 0.3,
               "the new node's max_connections")
    assert variable(manager, 2, "long_query_time") == "0.500000"
    shown = manager.get("get_server_configuration")
    assert shown["options"]["max_connections"] == "321"
    assert [(n["id"], n["in_sync"], n["restart_pending"]) for n in shown["nodes"]] == [
        (1, True, False), (2, True, False)]
    assert all(n["effective"]["max_connections"] == "321" for n in shown["nodes"])

    # A node whose copy is not the service's (it was away during a change) is given the
    # service's by the reconcile loop.
    stale = manager.node_dir(2) / "mysql" / "service-options.json"
    stale.write_text(json.dumps({"generation": "0" * 16, "options": {}}))
    wait_until(lambda: json.loads(stale.read_text())["generation"] == shown["generation"],
               60, 0.3, "the service's options given again")
    assert json.loads(stale.read_text())["options"]["max_connections"] == "321"
    assert "node 2 has the service's server configuration" in history(manager)

    # Kept by the manager across its restart; a reset goes back to the server's own.
    manager.kill()
    manager.start()
    assert manager.get("get_server_configuration")["options"]["max_connections"] == "321"
    manager.post("reset_server_configuration", options=["max_connections"])
    for node in (1, 2):
        assert variable(manager, node, "max_connections") == max_connections
        assert variable(manager, node, "long_query_time") == "0.500000"
    assert manager.get("get_server_configuration")["options"] == {
        "long_query_time": "0.5", "slow_query_log": "ON"}


def test_one_node_service_restarts_and_says_so(solo: Manager) -> None:
    manager = solo
    pid = mysqld_pid(manager, 1)
    answer = manager.post("set_server_configuration", options={"innodb_flush_method": "fsync"},
                          apply="next-restart")
    assert answer["restart"] is None and answer["pending_restart"] == {
        "1": ["innodb_flush_method"]}
    shown = manager.get("get_server_configuration")
    assert shown["nodes"][0]["restart_pending"] is True
    assert variable(manager, 1, "innodb_flush_method") != "fsync"
    answer = manager.post("restart_nodes")
    assert answer["nodes"] == [1] and "one node" in answer["note"]
    done = wait_restart(manager)
    assert done["state"] == "done", (done.get("error"), history(manager)[-6:])
    assert mysqld_pid(manager, 1) != pid
    assert variable(manager, 1, "innodb_flush_method") == "fsync"
    assert variable(manager, 1, "read_only") == "0"  # the master takes writes again
    assert manager.get("get_server_configuration")["nodes"][0]["restart_pending"] is False
    assert any("is the only node" in message for message in history(manager))

    # A node added after has it from its first start (its context carries the service's
    # options): no restart.
    manager.post("add_nodes", count=1)
    manager.wait_topology(2)
    assert variable(manager, 2, "innodb_flush_method") == "fsync"
    shown = manager.get("get_server_configuration")
    assert [(n["id"], n["in_sync"], n["restart_pending"]) for n in shown["nodes"]] == [
        (1, True, False), (2, True, False)]
    assert not any("restarting node 2" in message for message in history(manager))


def test_static_option_by_a_rolling_restart_under_load(trio: Manager) -> None:
    manager = trio
    switchovers = sum(m.startswith("switchover: ") for m in history(manager))
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 50, 30, what="writes flowing")
        answer = manager.post("set_server_configuration",
                              options={"innodb_flush_method": "fsync", "max_connections": 222})
        assert answer["static"] == ["innodb_flush_method"]
        assert answer["applied"] == ["max_connections"]
        assert answer["restart"] == "started"
        for method, params in (("restart_nodes", {}), ("set_up_replica_master", {"id": 2}),
                               ("set_server_configuration", {"options": {"a": 1}})):
            busy = rpc_error(lambda m=method, p=params: manager.post(m, **p))  # type: ignore[misc]
            assert busy.startswith("Service in wrong state DETAIL:busy: "), (method, busy)
        done = wait_restart(manager)
        assert done["state"] == "done", (done.get("error"), history(manager)[-6:])
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count + 50, 30, what="writes after")
    finally:
        writer.stop()
    acked_rows_present(manager, writer)
    assert_converged(manager)
    for node in (1, 2, 3):
        assert variable(manager, node, "innodb_flush_method") == "fsync"
        assert variable(manager, node, "max_connections") == "222"
    messages = history(manager)
    assert sum(m.startswith("switchover: ") for m in messages) == switchovers + 1
    assert any(m.startswith("rolling restart done") for m in messages)
    shown = manager.get("get_server_configuration")
    assert not any(node["restart_pending"] for node in shown["nodes"])

    # A value mysqld will not start with: the first node restarted goes back, the rolling
    # restart stops there with the server's own error, the service's options are as before.
    pids = {node: mysqld_pid(manager, node) for node in (1, 2, 3)}
    files = node_files(manager, [1, 2, 3])
    manager.post("set_server_configuration", options={"innodb_page_size": 8192})
    failed = wait_restart(manager)
    assert failed["state"] == "failed", failed
    assert "did not start with the service's options" in failed["error"]
    assert "[ERROR] InnoDB:" in failed["error"], failed["error"]  # the server's own words
    stopped = [m for m in history(manager) if m.startswith("rolling restart stopped at node")]
    assert stopped and "[ERROR]" in stopped[-1]
    assert "innodb_page_size" not in manager.get("get_server_configuration")["options"]
    wait_until(lambda: node_files(manager, [1, 2, 3]) == files, 30, 0.3, "files as before")
    restarted = [node for node in (1, 2, 3) if mysqld_pid(manager, node) != pids[node]]
    assert restarted == [failed["node"]]  # only the node it was tried on
    for node in (1, 2, 3):
        assert variable(manager, node, "innodb_page_size") == "16384"
    assert_converged(manager)


def test_the_configuration_page(solo: Manager) -> None:
    config = GuiConfig(manager_host="127.0.0.1", manager_port=manager_port(solo))
    with TestClient(create_app(config), base_url="http://127.0.0.1:5000") as client:
        page = client.get("/configuration", headers=HTML)
        assert page.status_code == 200 and "No options set" in page.text
        found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
        assert found
        headers = {"x-csrf-token": found.group(1), "origin": "http://127.0.0.1:5000"}
        answer = client.post("/act/set_configuration", headers=headers, data={
            "options": "# a comment\nmax_connections = 444\n\nlong_query_time=2\n"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["message"] == "2 option(s) set; 2 applied at once"
        refused = client.post("/act/set_configuration", headers=headers,
                              data={"options": "max_connections=many"})
        assert refused.status_code >= 400
        assert "max_connections: must be an integer" in refused.json()["error"]
        part = client.get("/part/configuration").text
        assert "max_connections" in part and part.count("444") == 2  # service, node 1
        answer = client.post("/act/reset_option", headers=headers,
                             data={"name": "long_query_time"})
        assert answer.status_code == 200, answer.text
    assert solo.get("get_server_configuration")["options"] == {"max_connections": "444"}
    assert variable(solo, 1, "max_connections") == "444"


def manager_port(manager: Manager) -> int:
    return int(manager.url.rstrip("/").rsplit(":", 1)[1])
