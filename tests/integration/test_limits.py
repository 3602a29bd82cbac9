"""Size, time and concurrency limits of a real manager's API, with clear replies."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Manager

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def manager(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache, "max_request_bytes = 4096\nmax_requests = 4\n"
                                      "request_timeout = 1\n").start()
    try:
        yield manager
    finally:
        manager.close()


def slow_body(manager: Manager, sent: bytes = b'{"method": ') -> socket.socket:
    """A POST whose body starts and then stops coming."""
    conn = socket.create_connection(("127.0.0.1", manager.port))
    conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n" + sent)
    return conn


def reply_of(conn: socket.socket, timeout: float = 10) -> bytes:
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_an_oversized_body_is_refused(manager: Manager) -> None:
    reply = httpx.post(manager.url, json={"method": "list_nodes", "params": {
        "x": "y" * 5000}, "id": 1})
    assert reply.status_code == 413
    assert reply.json()["error"] == "Request body larger than 4096 bytes"


def test_a_slow_body_times_out_and_others_are_served_meanwhile(manager: Manager) -> None:
    conn = slow_body(manager)
    assert httpx.get(manager.url, params={"method": "list_nodes"}).status_code == 200
    answer = reply_of(conn)
    conn.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"Request body not received within 1 s" in answer


def test_too_many_requests_at_once_get_503_at_once(manager: Manager) -> None:
    held = [slow_body(manager) for _ in range(4)]
    try:
        time.sleep(0.3)
        # Queued, it would be answered 200 once the held ones time out: 503 is "at once".
        reply = httpx.get(manager.url, params={"method": "list_nodes"}, timeout=5)
        assert reply.status_code == 503, reply.text
        assert "busy: 4 requests in progress" in reply.json()["error"]
    finally:
        for conn in held:
            conn.close()
    time.sleep(1.5)  # the held requests time out
    assert httpx.get(manager.url, params={"method": "list_nodes"}).status_code == 200


def test_many_idle_connections_do_not_stop_the_service(manager: Manager) -> None:
    """Clients that connect and send half their headers (and nothing more)."""
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            conn = socket.create_connection(("127.0.0.1", manager.port))
            conn.sendall(b"GET /?method=list_nodes HTTP/1.1\r\nHost: x\r\n")
            idle.append(conn)
        for _ in range(5):  # each within the client's timeout, or it raises
            reply = httpx.get(manager.url, params={"method": "get_service_info"}, timeout=5)
            assert reply.status_code == 200
    finally:
        for conn in idle:
            conn.close()


def test_without_a_token_nothing_of_the_body_is_read(template_cache: Path) -> None:
    """With tokens needed, a request without one is answered at once, its body unread
    (an anonymous client cannot hold the server with an endless upload)."""
    manager = Manager(template_cache, "require_token = true\n").start()
    try:
        conn = socket.create_connection(("127.0.0.1", manager.port))
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: 10000000000\r\n\r\n--b\r\n")
        # A body read would wait out request_timeout (30 s) first; the socket allows 5.
        answer = reply_of(conn, timeout=5)
        conn.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b"an API token is needed" in answer and b"connection: close" in answer.lower()
        assert httpx.get(manager.url, params={"method": "list_nodes"}).status_code == 401
        assert manager.get("list_nodes")["serviceNode"] == []  # with the owner's token
    finally:
        manager.close()
