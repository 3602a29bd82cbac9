"""The router's parts: addresses, slots, HAProxy's configuration (checked by the
real HAProxy), and a real HAProxy driven over its runtime API in front of stand-in
servers whose health answers the tests set."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.gui.views import endpoint_commands
from conpaassql.router import haproxy
from conpaassql.router.app import Router, StartError, describe_failure
from conpaassql.router.haproxy import HAProxy, config_text
from conpaassql.router.settings import Address, Checks, RouterSettings
from conpaassql.router.slots import Slots, Target, targets_of

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="HAProxy is not installed (scripts/bootstrap.sh)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings(state_dir: Path, **changes: object) -> RouterSettings:
    values: dict[str, object] = {
        "name": "t", "manager": Address("127.0.0.1", free_port()),
        "writer": Address("127.0.0.1", free_port()), "readers": Address("127.0.0.1", free_port()),
        "state_dir": state_dir, "slots": 4, "checks": Checks(100, 1, 1, 5),
        **changes}
    return RouterSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.2:3306", Address("127.0.0.2", 3306)),
    ("db.example:1", Address("db.example", 1)),
    ("[::1]:3307", Address("::1", 3307)),
])
def test_addresses_are_read(text: str, expected: Address) -> None:
    assert Address.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["127.0.0.1", "h:0", "h:65536", "h:x", "a b:1", ":1", "::1"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not"):
        Address.parse(text)


def test_slots_follow_additions_removals_and_moves() -> None:
    slots = Slots(3)
    one, two, three = (Target(n, f"10.0.0.{n}", 3306, 60008) for n in (1, 2, 3))
    plan = slots.plan({1: one, 2: two})
    assert (plan.freed, plan.filled, plan.left_out) == ([], [(1, one), (2, two)], [])
    slots.apply(plan)
    moved = Target(1, "10.0.0.9", 3306, 60008)
    plan = slots.plan({1: moved, 3: three})
    assert plan.freed == [1, 2] and plan.filled == [(1, moved), (2, three)]
    slots.apply(plan)
    four, five = Target(4, "x", 1, 2), Target(5, "y", 1, 2)
    plan = slots.plan({1: moved, 3: three, 4: four, 5: five})
    assert plan.filled == [(3, four)] and plan.left_out == [five]


def test_nodes_without_an_address_are_left_out() -> None:
    found = targets_of([{"id": 1, "ip": "", "port": 3306},
                        {"id": 2, "ip": "10.0.0.2", "port": 3306, "health_port": 61000},
                        {"id": 3, "ip": "10.0.0.3", "port": 3306}])
    assert found == {2: Target(2, "10.0.0.2", 3306, 61000),
                     3: Target(3, "10.0.0.3", 3306, 60008)}


def test_failures_are_said_in_a_line_without_the_token() -> None:
    url = "https://m:50000/"
    refused = RemoteError("Not authorized", http_status=401)
    assert "refused the token" in describe_failure(url, refused)
    unverified = UnreachableError(url, detail="[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                              "verify failed: self-signed certificate")
    assert "cannot verify the manager's certificate" in describe_failure(url, unverified)
    away = UnreachableError(url, detail="All connection attempts failed")
    assert describe_failure(url, away).startswith("cannot reach the manager at https://m")


@needs_haproxy
@pytest.mark.parametrize("fallback", [True, False])
def test_the_configuration_is_valid(tmp_path: Path, fallback: bool) -> None:
    chosen = settings(tmp_path, reader_fallback=fallback)
    HAProxy(chosen).write_config()  # runs haproxy -c
    text = config_text(chosen, tmp_path / "s")
    assert "option httpchk GET /replica?max_lag=5\n" in text
    limited = settings(tmp_path, checks=Checks(100, 1, 1, 2.5, 40))
    assert "option httpchk GET /replica?max_lag=2.5&max_lag_tx=40\n" in \
        config_text(limited, tmp_path / "s")
    HAProxy(limited).write_config()
    assert "on-marked-down shutdown-sessions" in text
    assert ("server m4 127.0.0.1:1 backup track writer/w4" in text) is fallback
    assert "    nbthread 1\n" in text
    assert "nbthread" not in config_text(settings(tmp_path, threads=0), tmp_path / "s")


class Stand:
    """A stand-in node: a TCP server that sends its name, and a health port whose
    ``/primary`` and ``/replica`` answers the test sets (``/replica`` also 503 when
    ``lag_tx`` is above the check's ``max_lag_tx``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.primary = self.replica = False
        self.lag_tx = 0
        self.hold = False  # keep connections open after the name
        self.held: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        stand = self

        class Health(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                limit = dict(parse_qsl(query)).get("max_lag_tx")
                up = stand.primary if path == "/primary" else stand.replica and (
                    limit is None or stand.lag_tx <= int(limit))
                self.send_response(200 if up else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.health = ThreadingHTTPServer(("127.0.0.1", 0), Health)
        for target in (self._serve, self.health.serve_forever):
            threading.Thread(target=target, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                connection.sendall(self.name.encode())
            except OSError:  # the client went away first (HAProxy reset it)
                connection.close()
                continue
            if self.hold:
                self.held.append(connection)  # open until the other side closes it
            else:
                connection.close()

    def target(self, node_id: int) -> Target:
        return Target(node_id, "127.0.0.1", self.listener.getsockname()[1],
                      self.health.server_address[1])

    def close(self) -> None:
        for connection in self.held:
            connection.close()
        self.listener.close()
        self.health.shutdown()


@pytest.fixture
def stands() -> Iterator[list[Stand]]:
    made = [Stand("a"), Stand("b"), Stand("c")]
    yield made
    for stand in made:
        stand.close()


def reached(address: Address) -> str:
    try:
        with socket.create_connection((address.host, address.port), timeout=2) as client:
            return client.recv(16).decode()
    except OSError:
        return ""


async def until(check: object, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await asyncio.to_thread(check):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@needs_haproxy
def test_haproxy_follows_roles_and_nodes(tmp_path: Path, stands: list[Stand]) -> None:
    a, b, c = stands
    a.primary, b.replica = True, True
    chosen = settings(tmp_path)
    router = Router(chosen)

    async def scenario() -> None:
        router.haproxy.start()
        try:
            await router.follow({1: a.target(1), 2: b.target(2)})
            await until(lambda: reached(chosen.writer) == "a", "writes on a")
            await until(lambda: reached(chosen.readers) == "b", "reads on b")
            # The slave lags: the readers fall back to the master.
            b.replica = False
            await until(lambda: reached(chosen.readers) == "a", "reads on the master")
            # A switchover: b is the master, a a slave.
            a.primary, b.primary, a.replica = False, True, True
            await until(lambda: reached(chosen.writer) == "b", "writes on b")
            await until(lambda: reached(chosen.readers) == "a", "reads on a")
            # A node added takes readers; a node removed takes nothing more.
            c.replica = True
            await router.follow({1: a.target(1), 2: b.target(2), 3: c.target(3)})
            await until(lambda: {reached(chosen.readers) for _ in range(6)} == {"a", "c"},
                        "reads on a and c")
            await router.follow({2: b.target(2), 3: c.target(3)})
            await until(lambda: {reached(chosen.readers) for _ in range(6)} == {"c"},
                        "reads on c only")
            # No master: the writer refuses connections rather than send them anywhere.
            b.primary = False
            await until(lambda: reached(chosen.writer) == "", "no writer")
        finally:
            router.haproxy.stop()
            await router.client.aclose()

    asyncio.run(scenario())
    assert (tmp_path / "nodes.json").exists()


@needs_haproxy
def test_a_slave_too_many_transactions_behind_leaves_the_readers(
        tmp_path: Path, stands: list[Stand]) -> None:
    a, b, _ = stands
    a.primary, b.replica, b.lag_tx = True, True, 100
    chosen = settings(tmp_path, checks=Checks(100, 1, 1, 5, 10))  # --max-lag-tx 10
    router = Router(chosen)

    async def scenario() -> None:
        router.haproxy.start()
        try:
            await router.follow({1: a.target(1), 2: b.target(2)})
            await until(lambda: reached(chosen.writer) == "a", "writes on a")
            await until(lambda: reached(chosen.readers) == "a", "reads on the master")
            b.lag_tx = 3
            await until(lambda: reached(chosen.readers) == "b", "reads on b")
            b.lag_tx = 11
            await until(lambda: reached(chosen.readers) == "a", "reads on the master again")
        finally:
            router.haproxy.stop()
            await router.client.aclose()

    asyncio.run(scenario())


def closed(client: socket.socket) -> bool:
    try:
        return client.recv(16) == b""
    except TimeoutError:
        return False


@needs_haproxy
def test_more_nodes_than_slots_grow_haproxy_by_a_seamless_reload(
        tmp_path: Path, stands: list[Stand], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = stands
    a.primary, b.replica, c.replica, a.hold = True, True, True, True
    monkeypatch.setattr(haproxy, "OLD_WORKER_GRACE", 1)
    chosen = settings(tmp_path, slots=2)
    router = Router(chosen)

    async def scenario() -> None:
        router.haproxy.start()
        try:
            await router.follow({1: a.target(1), 2: b.target(2)})
            await until(lambda: reached(chosen.writer) == "a", "writes on a")
            await until(lambda: reached(chosen.readers) == "b", "reads on b")
            worker = await router.haproxy.worker_pid()
            session = socket.create_connection((chosen.writer.host, chosen.writer.port), 5)
            assert session.recv(16) == b"a"
            await router.follow({1: a.target(1), 2: b.target(2), 3: c.target(3)})
            assert await router.haproxy.worker_pid() != worker
            assert router.slots.count == 4 and router.slots.held[3] == c.target(3)
            # The new worker took the slots over as they were: no wait for checks.
            assert reached(chosen.writer) == "a"
            assert reached(chosen.readers) in ("b", "c")
            await until(lambda: {reached(chosen.readers) for _ in range(6)} == {"b", "c"},
                        "reads on b and c")
            # The old worker, which checks nothing any more, ends its sessions.
            session.settimeout(0.2)
            await until(lambda: closed(session), "the old worker's session closed")
            session.close()
            # Started again after a crash, HAProxy keeps the slots it grew to.
            assert router.haproxy.process is not None
            router.haproxy.process.kill()
            router.haproxy.process.wait()
            await router.turn()
            await until(lambda: reached(chosen.readers) == "c" and reached(chosen.writer) == "a",
                        "writes on a and reads on c after the restart")
        finally:
            router.haproxy.stop()
            await router.client.aclose()

    asyncio.run(scenario())
    assert "server r4 " in (tmp_path / "haproxy.cfg").read_text()
    assert not (tmp_path / "haproxy.state").exists()


def test_the_front_end_shows_the_endpoints_with_a_line_to_copy() -> None:
    endpoints = {"writer": {"host": "127.0.0.2", "port": 3306},
                 "readers": {"host": "127.0.0.2", "port": 3307}}
    assert endpoint_commands(endpoints) == [
        ("writer", "127.0.0.2:3306",
         "mariadb --ssl --ssl-ca=ca.crt -h 127.0.0.2 -P 3306 -u USER -p"),
        ("readers", "127.0.0.2:3307",
         "mariadb --ssl --ssl-ca=ca.crt -h 127.0.0.2 -P 3307 -u USER -p")]
    assert endpoint_commands(None) == endpoint_commands({"writer": None}) == []


def test_without_the_manager_a_router_starts_only_from_what_it_knew(tmp_path: Path) -> None:
    chosen = settings(tmp_path)  # nobody listens on the manager's port

    async def contact() -> dict[int, Target]:
        router = Router(chosen)
        try:
            return await router.first_contact()
        finally:
            await router.client.aclose()

    with pytest.raises(StartError, match=r"cannot reach the manager at http://127\.0\.0\.1:"):
        asyncio.run(contact())
    known = Target(4, "10.0.0.4", 3306, 60008)
    (tmp_path / "nodes.json").write_text(json.dumps({"nodes": [known.as_dict()]}))
    assert asyncio.run(contact()) == {4: known}


@needs_haproxy
def test_a_dead_haproxy_is_started_again_with_the_nodes(tmp_path: Path,
                                                         stands: list[Stand]) -> None:
    a = stands[0]
    a.primary = True
    chosen = settings(tmp_path)  # the manager away: the nodes last known are kept
    router = Router(chosen)

    async def scenario() -> None:
        router.haproxy.start()
        try:
            await router.follow({1: a.target(1)})
            await until(lambda: reached(chosen.writer) == "a", "writes on a")
            assert router.haproxy.process is not None
            router.haproxy.process.kill()
            router.haproxy.process.wait()
            await until(lambda: reached(chosen.writer) == "", "no writer")
            await router.turn()
            assert router.haproxy.running()
            await until(lambda: reached(chosen.writer) == "a", "writes on a again")
        finally:
            router.haproxy.stop()
            await router.client.aclose()

    asyncio.run(scenario())
