"""Removal is prompt: a node whose data is thrown away is not waited for."""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import Manager, process_alive, wait_until

pytestmark = pytest.mark.integration


def _pids(manager: Manager, node_id: int) -> list[int]:
    directory = manager.node_dir(node_id)
    return [int((directory / name).read_text())
            for name in ("agent.pid", "mysql/run/mysqld.pid")]


def test_removed_node_and_shut_down_service_reach_their_end(manager: Manager) -> None:
    manager.post("add_nodes", count=3)
    running = manager.wait_running(3)
    manager.wait_topology(3)
    manager.wait_service("RUNNING")

    victim = running[-1]["id"]
    pids = _pids(manager, victim)
    asked = time.monotonic()
    assert manager.post("remove_nodes", serviceNodeId=victim)["result"] == "OK"
    wait_until(lambda: not any(process_alive(pid) for pid in pids), 60, 0.02,
               "the removed node's processes gone")
    gone = time.monotonic()
    wait_until(lambda: manager.node(victim)["state"] == "TERMINATED", 60, 0.02,
               "the removed node TERMINATED")
    terminated = time.monotonic()
    assert not manager.node_dir(victim).exists()
    print(f"\nremove_nodes: processes gone after {gone - asked:.2f} s, "
          f"TERMINATED after {terminated - asked:.2f} s")

    manager.post("add_nodes", count=1)
    manager.wait_running(3)
    manager.wait_topology(3)
    manager.wait_service("RUNNING")
    asked = time.monotonic()
    assert manager.post("shutdown") == {"state": "EPILOGUE"}
    manager.wait_service("STOPPED", timeout=90)
    stopped = time.monotonic()
    print(f"shutdown of 3 nodes: STOPPED after {stopped - asked:.2f} s")
    assert manager.get("list_nodes")["serviceNode"] == []
    assert list((manager.state_dir / "nodes").iterdir()) == []
    history = manager.get("get_service_info")["transitions"]
    assert sum(1 for t in history if t.get("to") == "TERMINATED") >= 3
