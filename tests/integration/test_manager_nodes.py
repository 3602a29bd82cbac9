"""Node lifecycle with a real manager, real agents and real mariadbd."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conpaassql.cloud.local import stop_node_processes
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE, MYSQLD_SOCKET_FILE
from tests.integration.harness import Manager, process_alive, rpc_error, wait_until

pytestmark = pytest.mark.integration


def _pids(manager: Manager, node_id: int) -> tuple[int, int]:
    directory = manager.node_dir(node_id)
    agent = int((directory / AGENT_PID_FILE).read_text())
    mysqld = int((directory / MYSQLD_PID_FILE).read_text())
    return agent, mysqld


def test_three_nodes_at_once_then_remove_one(manager: Manager) -> None:
    reply = manager.post("add_nodes", count=3)
    assert [n["state"] for n in reply["serviceNode"]] == ["PENDING"] * 3
    running = manager.wait_running(3)
    master, _ = manager.wait_topology(3)  # one master, the other two copied from it
    addresses = {node["ip"] for node in running}
    assert len(addresses) == 3

    for node in running:
        info = manager.node(node["id"])
        assert info["isRunningMySQL"] is True
        answer = manager.sql(node["id"], "SELECT @@server_id, @@port, @@bind_address")
        assert answer.returncode == 0, answer.stderr
        server_id, port, bind = answer.stdout.split()
        assert (int(server_id), int(port), bind) == (node["id"], 3306, node["ip"])
        # The server listens on the node's own address; root may not log in from afar.
        remote = manager.sql(node["id"], "SELECT 1", tcp=(node["ip"], 3306))
        # (Once the replication account for '%' exists the server says "Access denied"
        # rather than "not allowed to connect": either way root is refused.)
        assert remote.returncode != 0
        assert "is not allowed to connect" in remote.stderr or \
            "Access denied for user 'root'" in remote.stderr, remote.stderr

    info = manager.get("get_service_info")
    assert info["state"] == "RUNNING"
    assert info["type"] == "conpaas-mysql"
    assert info["nodes"] == 3
    assert info["master"]["id"] == master
    assert any(t.get("to") == "RUNNING" for t in info["transitions"])

    victim = running[1]["id"]
    agent_pid, mysqld_pid = _pids(manager, victim)
    assert manager.post("remove_nodes", serviceNodeId=victim)["result"] == "OK"
    wait_until(lambda: not manager.node_dir(victim).exists(), 30, what="directory gone")
    wait_until(lambda: not process_alive(agent_pid) and not process_alive(mysqld_pid), 30,
               what="processes gone")
    assert manager.node(victim)["state"] == "TERMINATED"
    assert sorted(manager.get("list_nodes")["serviceNode"]) == sorted(
        n["id"] for n in running if n["id"] != victim)
    assert "Can't connect" in manager.sql(victim, "SELECT 1", tcp=(running[1]["ip"], 3306)).stderr
    manager.wait_service("RUNNING")


def test_manager_sigkill_mid_provisioning_readopts(manager: Manager) -> None:
    manager.post("add_nodes", count=2)
    manager.kill(signal.SIGKILL)  # while the nodes are still booting
    manager.start()
    running = manager.wait_running(2)
    assert sorted(n["id"] for n in running) == [1, 2]
    nodes_dir = manager.state_dir / "nodes"
    assert sorted(p.name for p in nodes_dir.iterdir()) == ["n1", "n2"]

    # A node the cloud lost while the manager was down is cleaned up and replaced,
    # the other kept.
    manager.kill(signal.SIGKILL)
    stop_node_processes(manager.node_dir(2), grace=10)
    shutil.rmtree(manager.node_dir(2))
    manager.start()
    wait_until(lambda: manager.node(2)["state"] == "TERMINATED", 60, what="node 2 cleaned up")
    assert manager.node(1)["state"] == "RUNNING"
    assert manager.node(1)["isRunningMySQL"] is True
    history = manager.get("get_node_info", serviceNodeId=2)["serviceNode"]["history"]
    assert any("gone from the cloud" in entry["message"] for entry in history)
    assert manager.wait_topology(2) == (1, [3])
    assert manager.node(3)["cloud"] == "default"


def test_manager_stop_leaves_nodes_running(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    node = manager.wait_running(1)[0]
    manager.kill(signal.SIGTERM)
    answer = manager.sql(node["id"], "SELECT 1")
    assert answer.returncode == 0, answer.stderr
    # The store of a manager from before clouds had names: the node is on "local".
    with sqlite3.connect(manager.state_dir / "manager.db") as db:
        db.execute("UPDATE nodes SET cloud = 'local'")
    manager.start()
    assert manager.wait_running(1)[0]["id"] == node["id"]
    assert manager.node(node["id"])["cloud"] == "default"
    manager.post("remove_nodes", serviceNodeId=node["id"])
    wait_until(lambda: manager.node(node["id"])["state"] == "TERMINATED", 60,
               what="the adopted node removed")


def test_agent_restarts_killed_mysqld_and_manager_reports_it(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    node = manager.wait_running(1)[0]
    _, mysqld_pid = _pids(manager, node["id"])
    os.kill(mysqld_pid, signal.SIGKILL)

    def restarted() -> dict | None:
        info = manager.node(node["id"])
        mysqld = info["mysqld"]
        ok = info["isRunningMySQL"] and mysqld["restarts"] >= 1 and mysqld["pid"] != mysqld_pid
        return info if ok else None

    info = wait_until(restarted, 60, 0.2, "mysqld restarted")
    assert "SIGKILL" in info["mysqld"]["last_exit"]
    # The agent's report of the restart is pushed to the manager as it happens.
    def told() -> list[str] | None:
        messages = [entry["message"] for entry in manager.node(node["id"])["history"]]
        seen = any("killed by SIGKILL" in m for m in messages) and \
            any("restarted by the agent" in m for m in messages)
        return messages if seen else None

    wait_until(told, 30, 0.2, "the restart in the node's history")
    assert manager.sql(node["id"], "SELECT 1").returncode == 0
    wait_until(lambda: manager.node(node["id"])["state"] == "RUNNING", 30)


def test_performance_figures_are_read_from_the_servers(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    node = manager.wait_running(1)[0]
    idle = manager.get("get_service_performance")["nodes"][0]
    assert idle["connections"] == 0  # the agent's own connection is not counted
    # One client holds a connection open while another sends 600 statements.
    sleeper = subprocess.Popen(
        ["mariadb", f"--defaults-extra-file={manager.defaults_file()}",
         "-S", str(manager.node_dir(node["id"]) / MYSQLD_SOCKET_FILE),
         "-e", "SELECT SLEEP(8)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        statements = ";".join(["SELECT SLEEP(0)"] * 200)
        for _ in range(3):
            assert manager.sql(node["id"], statements).returncode == 0

        def busy() -> dict | None:
            figures = manager.get("get_service_performance")
            mine = [n for n in figures["nodes"] if n["id"] == node["id"]]
            ok = (mine and mine[0]["queries_per_second"] > 10 and mine[0]["uptime"] >= 1
                  and mine[0]["connections"] >= 1)
            return figures if ok else None

        figures = wait_until(busy, 20, 0.3, "query rate and connection seen")
    finally:
        sleeper.kill()
        sleeper.wait()
    mine = figures["nodes"][0]
    assert mine["com_select_per_second"] > 10
    assert mine["questions"] >= 600
    assert figures["total"]["queries_per_second"] > 10
    assert figures["total"]["connections"] >= 1


def test_shutdown_destroys_every_node(manager: Manager) -> None:
    manager.post("add_nodes", count=2)
    manager.wait_running(2)
    manager.wait_service("RUNNING")
    assert manager.post("shutdown") == {"state": "EPILOGUE"}
    manager.wait_service("STOPPED")
    assert manager.get("list_nodes")["serviceNode"] == []
    assert list((manager.state_dir / "nodes").iterdir()) == []
    transitions = [(t.get("from"), t.get("to")) for t in
                   manager.get("get_service_info")["transitions"] if t["subject"] == "service"]
    assert ("RUNNING", "EPILOGUE") in transitions and ("EPILOGUE", "STOPPED") in transitions
    with pytest.raises(Exception, match="Service in wrong state"):
        manager.post("shutdown")
    log = manager.get("getLog")["log"]
    assert "listening on" in log


def test_set_server_configuration_restarts_mysqld_with_it(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    node = manager.wait_running(1)[0]

    def configure(section: str, name: str, value: str) -> Any:
        return manager.agent_call(node["id"], "set_server_configuration",
                                  {"section": section, "id_param": name, "value": value})

    assert configure("mysqld", "max_connections", "77") == {"return": "OK"}
    assert manager.sql(node["id"], "SELECT @@max_connections").stdout.strip() == "77"
    refused = rpc_error(lambda: configure("mysqld", "datadir", "/tmp"))
    assert refused.startswith("Invalid argument: id_param")
    bad = rpc_error(lambda: configure("mysqld", "max_connections", "77\n[client]"))
    assert bad.startswith("Invalid argument")
    rpc_error(lambda: configure("mysqld", "innodb_buffer_pool_size", "not-a-size"))
    # The bad value was reverted and the server runs with the previous settings.
    assert manager.sql(node["id"], "SELECT @@max_connections").stdout.strip() == "77"
    cnf = Path(manager.node_dir(node["id"]) / "mysql" / "my.cnf").read_text()
    assert "not-a-size" not in cnf
