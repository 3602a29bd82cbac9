"""The health endpoints' decisions, their query checks, and the listener on garbage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from conpaassql.agent.health import (
    BadQueryError,
    HealthProbe,
    Query,
    ServerView,
    decide,
    parse_query,
    primary,
    replica,
)
from conpaassql.agent.health_http import BadRequestError, HealthListener, parse_request_line
from conpaassql.agent.role import MasterIntent
from conpaassql.domain.states import AgentState

MASTER = ServerView(answering=True, read_only=False)
SLAVE = ServerView(answering=True, read_only=True, replicating_from="10.0.0.1",
                   io_running="Yes", sql_running="Yes", seconds_behind=2, lag_transactions=1)


def test_primary_only_for_the_writable_master_the_manager_made() -> None:
    assert primary(MASTER, master=True).status == 200
    assert primary(MASTER, master=True).body["role"] == "master"
    assert primary(MASTER, master=False).status == 503  # writable, but not made master
    assert primary(ServerView(answering=True, read_only=True), master=True).status == 503
    assert primary(ServerView(answering=False), master=True).status == 503  # fenced, down
    assert primary(SLAVE, master=False).status == 503


def test_replica_only_for_a_replicating_read_only_slave_within_the_lag() -> None:
    assert replica(SLAVE, False, 30).status == 200
    assert replica(SLAVE, False, 30).body == {
        "role": "slave", "answering": True, "read_only": True, "lag": 2,
        "lag_transactions": 1}
    assert replica(SLAVE, False, 1).status == 503  # too far behind
    assert replica(SLAVE, False, 30, max_lag_tx=0).status == 503
    assert replica(SLAVE, False, 30, max_lag_tx=1).status == 200
    assert replica(MASTER, True, 30).status == 503
    stopped = ServerView(answering=True, read_only=True, replicating_from="10.0.0.1",
                         io_running="Yes", sql_running="No", seconds_behind=None)
    assert replica(stopped, False, 30).status == 503
    writable = ServerView(**{**SLAVE.__dict__, "read_only": False})
    assert replica(writable, False, 30).status == 503
    assert replica(ServerView(answering=False), False, 30).status == 503


def test_health_is_the_server_answering() -> None:
    query = Query("/health")
    assert decide(query, SLAVE, False, 30).status == 200
    assert decide(query, ServerView(answering=False), False, 30).status == 503


def test_replica_takes_the_default_lag_unless_given() -> None:
    lagging = ServerView(**{**SLAVE.__dict__, "seconds_behind": 10})
    assert decide(Query("/replica"), lagging, False, 30).status == 200
    assert decide(Query("/replica"), lagging, False, 5).status == 503
    assert decide(parse_query("/replica", [("max_lag", "10")]) or Query(""), lagging,
                  False, 5).status == 200


@pytest.mark.parametrize("path,pairs", [
    ("/replica", [("max_lag", "abc")]),
    ("/replica", [("max_lag", "-1")]),
    ("/replica", [("max_lag", "nan")]),
    ("/replica", [("max_lag", "inf")]),
    ("/replica", [("max_lag_tx", "1.5")]),
    ("/replica", [("max_lag", "1"), ("max_lag", "2")]),
    ("/replica", [("lag", "1")]),
    ("/primary", [("max_lag", "1")]),
])
def test_bad_queries_are_refused(path: str, pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(BadQueryError):
        parse_query(path, pairs)


def test_queries_parsed() -> None:
    assert parse_query("/replica", [("max_lag", "2.5"), ("max_lag_tx", "7")]) == \
        Query("/replica", 2.5, 7)
    assert parse_query("/nowhere", []) is None


@pytest.mark.parametrize("line", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", b"GET\r\n", b"get / HTTP/1.1\r\n",
    b"GET /primary HTTP/2.0\r\n", b"GET primary HTTP/1.1\r\n", b"GET /p q HTTP/1.1\r\n",
    b"GET /replica?max_lag=%ff HTTP/1.1\r\n", b"GET /replica?=&& HTTP/1.1\r\n",
])
def test_garbage_request_lines(line: bytes) -> None:
    with pytest.raises(BadRequestError):
        parse_request_line(line)


def test_request_line() -> None:
    assert parse_request_line(b"GET /replica?max_lag=3&max_lag_tx=0 HTTP/1.0\r\n") == \
        ("GET", "/replica", [("max_lag", "3"), ("max_lag_tx", "0")])


def test_master_intent_kept_in_a_file(tmp_path: Path) -> None:
    intent = MasterIntent.in_dir(tmp_path)
    assert not intent.master
    intent.set(True)
    assert MasterIntent.in_dir(tmp_path).master  # an agent started again knows it
    before = intent.changes
    intent.set(False)
    assert not intent.master and not MasterIntent.in_dir(tmp_path).master
    assert intent.changes == before + 1


class StoppedServer:
    """A supervisor whose mysqld is stopped (as after ``fence``): nothing is read."""

    state = AgentState.STOPPED


async def _ask(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if not data.endswith(b"\n\n"):
        writer.write_eof()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def test_listener_answers_garbage_400_and_goes_on(tmp_path: Path) -> None:
    asyncio.run(_garbage_scenario(tmp_path))


async def _garbage_scenario(tmp_path: Path) -> None:
    intent = MasterIntent.in_dir(tmp_path)
    intent.set(True)
    probe = HealthProbe(StoppedServer(), intent)  # type: ignore[arg-type]
    listener = HealthListener(probe, "127.0.0.1", 0, 30.0)
    await listener.start()
    assert listener.server is not None
    port = listener.server.sockets[0].getsockname()[1]
    try:
        assert (await _ask(port, b"\x16\x03\x01\x00\xff garbage"))[0] == 400
        assert (await _ask(port, b"GET /replica?max_lag=x HTTP/1.1\r\n\r\n"))[0] == 400
        assert (await _ask(port, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n"))[0] == 400
        assert (await _ask(port, b"GET /nowhere HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _ask(port, b"POST /primary HTTP/1.1\r\n\r\n"))[0] == 405
        status, body = await _ask(port, b"GET /primary HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and body["answering"] is False
        assert (await _ask(port, b"GET /health HTTP/1.0\r\n\r\n"))[0] == 503
        assert probe.reads == 0  # a stopped server is not asked
    finally:
        await listener.close()


class StubSession:
    """Answers the probe's two statements as a writable master's server would; ``hold``
    keeps it from answering (a frozen server)."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold: asyncio.Event | None = None

    async def execute(self, sql: str, args: Any = None, *,
                      idempotent: bool = False) -> list[dict[str, Any]]:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        if sql.startswith("SHOW SLAVE STATUS"):
            return []
        return [{"read_only": 0, "slave_pos": ""}]


class RunningServer:
    state = AgentState.RUNNING

    def __init__(self) -> None:
        self.session = StubSession()


def test_checks_at_once_cost_one_read_and_a_role_change_reads_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        server, intent = RunningServer(), MasterIntent.in_dir(tmp_path)
        intent.set(True)
        probe = HealthProbe(server, intent, ttl=3600)  # type: ignore[arg-type]
        verdicts = await asyncio.gather(*(probe.answer(Query("/primary"), 30)
                                          for _ in range(20)))
        assert {v.status for v in verdicts} == {200}
        assert probe.reads == 1
        intent.set(False)  # set_read_only(true), fence, a slave setup
        assert (await probe.answer(Query("/primary"), 30)).status == 503
        await probe.answer(Query("/primary"), 30)
        assert probe.reads == 2

    asyncio.run(scenario())


def test_a_frozen_server_is_not_waited_for(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conpaassql.agent.health.READ_TIMEOUT", 0.05)

    async def scenario() -> None:
        server, intent = RunningServer(), MasterIntent.in_dir(tmp_path)
        intent.set(True)
        server.session.hold = asyncio.Event()
        probe = HealthProbe(server, intent)  # type: ignore[arg-type]
        first = await probe.answer(Query("/primary"), 30)
        second = await probe.answer(Query("/health"), 30)
        assert (first.status, second.status) == (503, 503)
        assert server.session.calls == 1  # one read at a time, still under way
        server.session.hold.set()
        assert (await probe.answer(Query("/primary"), 30)).status == 200

    asyncio.run(scenario())
