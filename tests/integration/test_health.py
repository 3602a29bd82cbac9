"""The agents' health endpoints on real nodes: a master, a slave, a stopped SQL thread,
a switchover, a fenced master, garbage on the port."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.integration.harness import Manager, health_get, wait_until

pytestmark = pytest.mark.integration


def status_becomes(node: dict[str, Any], path: str, status: int) -> None:
    wait_until(lambda: health_get(node, path)[0] == status, 30, 0.05,
               f"{path} of node {node['id']} answers {status}")


def test_master_and_slave_answer_their_roles(pair: Manager) -> None:
    manager = pair
    master, (slave,) = manager.wait_topology(2)
    listed = {n["id"]: n for n in manager.get("list_nodes")["nodes"]}
    assert listed[master]["health_port"] == 60008
    assert manager.node(slave)["health_port"] == 60008
    m, s = listed[master], listed[slave]
    status, body = health_get(m, "/primary")
    assert (status, body["role"], body["read_only"]) == (200, "master", False)
    assert health_get(m, "/replica")[0] == 503
    assert health_get(m, "/health")[0] == 200
    status_becomes(s, "/replica", 200)
    status, body = health_get(s, "/replica?max_lag=5&max_lag_tx=10")
    assert (status, body["role"], body["read_only"]) == (200, "slave", True), body
    assert health_get(s, "/primary")[0] == 503
    assert health_get(s, "/health")[0] == 200

    # A slave whose SQL thread stopped leaves the readers; back when it runs again.
    stopped = manager.sql(slave, "STOP SLAVE SQL_THREAD")
    assert stopped.returncode == 0, stopped.stderr
    status_becomes(s, "/replica", 503)
    assert health_get(s, "/primary")[0] == 503
    started = manager.sql(slave, "START SLAVE SQL_THREAD")
    assert started.returncode == 0, started.stderr
    status_becomes(s, "/replica", 200)

    # A switchover moves /primary to the new master; the old one becomes a reader.
    manager.post("set_up_replica_master", id=slave)
    status_becomes(s, "/primary", 200)
    assert health_get(m, "/primary")[0] == 503
    status_becomes(m, "/replica", 200)

    # A fenced master is never a primary, even before its manager knows.
    manager.agent_call(slave, "fence")
    status, body = health_get(s, "/primary")
    assert status == 503 and body["answering"] is False, body
    assert health_get(s, "/health")[0] == 503


def test_garbage_on_the_health_port_is_answered_400(pair: Manager) -> None:
    manager = pair
    node = manager.get("list_nodes")["nodes"][0]
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),
                    b"GET /replica?max_lag=soon HTTP/1.1\r\n\r\n",
                    b"GET /primary?x=1 HTTP/1.1\r\n\r\n",
                    b"HELLO\r\n\r\n"):
        with socket.create_connection((node["ip"], node["health_port"]), timeout=10) as raw:
            raw.sendall(garbage)
            raw.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert health_get(node, "/health")[0] == 200  # the listener goes on
