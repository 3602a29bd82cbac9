"""Removal is prompt: a node whose data is thrown away is not waited for; an agent
told to stop stops its mariadbd and exits without waiting for its clients."""

from __future__ import annotations

import asyncio
import time

import pytest

from conpaassql.cloud.local import stop_node_processes
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


def test_an_agent_told_to_stop_stops_its_mariadbd_and_exits(manager: Manager) -> None:
    """As a harness or an operator stops a node whose data is kept: SIGTERM to the agent
    and its mariadbd, while a client of the agent (as the manager) holds an idle
    connection that answers no TLS close."""
    manager.post("add_nodes", count=1)
    node_id = manager.wait_running(1)[0]["id"]
    directory = manager.node_dir(node_id)
    agent, mysqld = _pids(manager, node_id)

    client = manager.agent_client(node_id)

    async def stop_while_connected() -> float:
        async with client:
            await client.get("get_server_state")
            started = time.monotonic()
            await asyncio.to_thread(stop_node_processes, directory, 60.0)
            return time.monotonic() - started

    took = asyncio.run(stop_while_connected())
    print(f"\nan agent with an idle client: stopped {took:.2f} s after SIGTERM")
    assert not process_alive(agent) and not process_alive(mysqld)
    log = (directory / "agent.log").read_text(encoding="utf-8")
    assert "agent stopped" in log  # its own way out, not killed
    assert log.count("started mariadbd pid") == 1  # not started again as it stopped
    assert not (directory / "mysql/run/mysqld.pid").exists()  # mariadbd shut down cleanly
