"""The node's role for routers: ``/primary``, ``/replica`` and ``/health`` decisions.

A router (HAProxy) checks every node often; each answer comes from the agent's
own view, so routing goes on while the manager is away. ``/primary`` is 200 only
while this node is the writable master the manager made it (``role.MasterIntent``),
holds its lease (``agent.lease``) and its server answers with ``read_only`` off;
``/source?host=H&port=P`` only while this node replicates from H:P with its IO
thread running (a master renews its lease so, read afresh); ``/replica`` only for a read-only
slave whose two threads run, at most ``max_lag`` seconds (and ``max_lag_tx``
transactions) behind. What the server says is read at most once per ``CACHE_TTL``
seconds, by one query at a time, and read again at once when the role changes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from conpaassql.agent.lease import Confirmations, source_proof
from conpaassql.agent.role import MasterIntent
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError

log = logging.getLogger(__name__)

#: Seconds a view of the server is reused: several routers checking every few hundred
#: milliseconds cost at most one status read per period.
CACHE_TTL = 0.15
#: Seconds a check waits for the server's answer before it counts as none.
READ_TIMEOUT = 2.0
OK, UNAVAILABLE = 200, 503


class BadQueryError(ValueError):
    """A query parameter the endpoint does not take, or a bad value (answered 400)."""


@dataclass(frozen=True)
class ServerView:
    """What the server said of itself at one moment (``answering`` False: nothing)."""

    answering: bool
    read_only: bool | None = None
    replicating_from: str | None = None  # the master's host, on a slave
    replicating_port: int | None = None
    io_running: str | None = None
    sql_running: str | None = None
    seconds_behind: int | None = None
    lag_transactions: int | None = None  # received (gtid_io_pos) but not applied


@dataclass(frozen=True)
class LeaseState:
    """The node's lease at one moment: held or not, and why."""

    held: bool
    why: str


@dataclass(frozen=True)
class Verdict:
    status: int
    body: dict[str, Any]


def _body(view: ServerView, master: bool, **extra: Any) -> dict[str, Any]:
    if master and view.answering and view.read_only is False:
        role = "master"
    elif view.replicating_from is not None:
        role = "slave"
    else:
        role = "none"
    return {"role": role, "answering": view.answering, "read_only": view.read_only,
            "lag": view.seconds_behind, "lag_transactions": view.lag_transactions, **extra}


def primary(view: ServerView, master: bool, lease: LeaseState | None = None) -> Verdict:
    """200 for the writable master the manager made this node, holding its lease (if
    one is given: the body says its state); 503 otherwise."""
    extra = {"lease": lease.why} if master and lease is not None else {}
    if master and lease is not None and not lease.held:
        return Verdict(UNAVAILABLE, _body(view, False, **extra))
    ok = master and view.answering and view.read_only is False
    return Verdict(OK if ok else UNAVAILABLE, _body(view, master, **extra))


def source(view: ServerView, host: str, port: int) -> Verdict:
    """200 while this node replicates from ``host:port`` with its IO thread running."""
    ok = (view.answering and view.replicating_from == host
          and view.replicating_port == port and view.io_running == "Yes")
    return Verdict(OK if ok else UNAVAILABLE,
                   {"source": f"{view.replicating_from}:{view.replicating_port}"
                    if view.replicating_from else None, "io_running": view.io_running})


def replica(view: ServerView, master: bool, max_lag: float,
            max_lag_tx: int | None = None) -> Verdict:
    """200 for a replicating, read-only slave at most ``max_lag`` seconds (and
    ``max_lag_tx`` transactions) behind; 503 otherwise."""
    lag_ok = view.seconds_behind is not None and view.seconds_behind <= max_lag
    if max_lag_tx is not None:
        lag_ok = lag_ok and view.lag_transactions is not None \
            and view.lag_transactions <= max_lag_tx
    ok = (view.answering and view.read_only is True and not master
          and view.replicating_from is not None
          and view.io_running == "Yes" and view.sql_running == "Yes" and lag_ok)
    return Verdict(OK if ok else UNAVAILABLE, _body(view, master))


def health(view: ServerView, master: bool) -> Verdict:
    """200 while the server answers, whatever its role."""
    return Verdict(OK if view.answering else UNAVAILABLE, _body(view, master))


def _number(name: str, text: str, *, integer: bool) -> float:
    try:
        value = float(int(text)) if integer else float(text)
    except ValueError:
        raise BadQueryError(f"{name} must be a{'n integer' if integer else ' number'}") from None
    if not math.isfinite(value) or value < 0:
        raise BadQueryError(f"{name} must be a number of at least 0")
    return value


@dataclass(frozen=True)
class Query:
    """A checked request: its endpoint and its limits."""

    path: str
    max_lag: float | None = None
    max_lag_tx: int | None = None
    host: str | None = None  # /source
    port: int | None = None
    nonce: str | None = None  # /source: the asking master's, signed over in a yes


ENDPOINTS = {"/primary": frozenset(), "/health": frozenset(),
             "/replica": frozenset({"max_lag", "max_lag_tx"}),
             "/source": frozenset({"host", "port", "nonce"})}
NONCE = re.compile(r"[0-9A-Za-z_-]{8,64}")


def parse_query(path: str, query: list[tuple[str, str]]) -> Query | None:
    """``path?query`` checked (None for an unknown path); ``BadQueryError`` for a parameter
    it does not take or a bad value."""
    allowed = ENDPOINTS.get(path)
    if allowed is None:
        return None
    values: dict[str, str] = {}
    for name, value in query:
        if name not in allowed:
            raise BadQueryError(f"{path} takes no parameter {name[:40]!r}")
        if name in values:
            raise BadQueryError(f"{name} given twice")
        values[name] = value
    max_lag = _number("max_lag", values["max_lag"], integer=False) \
        if "max_lag" in values else None
    max_tx = int(_number("max_lag_tx", values["max_lag_tx"], integer=True)) \
        if "max_lag_tx" in values else None
    if path == "/source":
        if "host" not in values or "port" not in values:
            raise BadQueryError("/source takes host and port")
        nonce = values.get("nonce")
        if nonce is not None and not NONCE.fullmatch(nonce):
            raise BadQueryError("nonce must be 8 to 64 letters, digits, '-' or '_'")
        return Query(path, host=values["host"][:255],
                     port=int(_number("port", values["port"], integer=True)), nonce=nonce)
    return Query(path, max_lag, max_tx)


def decide(query: Query, view: ServerView, master: bool, default_max_lag: float,
           lease: LeaseState | None = None) -> Verdict:
    """The answer to a checked query, from the server's view, the node's role and its
    lease."""
    if query.path == "/primary":
        return primary(view, master, lease)
    if query.path == "/source":
        return source(view, query.host or "", query.port or 0)
    if query.path == "/replica":
        max_lag = default_max_lag if query.max_lag is None else query.max_lag
        return replica(view, master, max_lag, query.max_lag_tx)
    return health(view, master)


async def read_view(supervisor: Supervisor) -> ServerView:
    """The server's role and lag, read now (two statements on the agent's session)."""
    if supervisor.state is not AgentState.RUNNING:
        return ServerView(answering=False)
    session = supervisor.session
    try:
        rows = await session.execute(
            "SELECT @@global.read_only AS read_only, @@global.gtid_slave_pos AS slave_pos",
            idempotent=True)
        slaves = await session.execute("SHOW SLAVE STATUS", idempotent=True)
    except ConpaasSQLError as exc:
        log.debug("health: the server does not answer: %s", exc)
        return ServerView(answering=False)
    values = rows[0] if rows else {}
    view = ServerView(answering=True, read_only=bool(int(values.get("read_only") or 0)))
    if not slaves:
        return view
    slave = slaves[0]
    lag_tx: int | None = None
    try:
        lag_tx = GtidPosition.parse(str(values.get("slave_pos") or "")).behind(
            GtidPosition.parse(str(slave.get("Gtid_IO_Pos") or "")))
    except ValueError:
        lag_tx = None
    behind = slave.get("Seconds_Behind_Master")
    return ServerView(
        answering=True, read_only=view.read_only,
        replicating_from=str(slave.get("Master_Host") or "") or None,
        replicating_port=_port(slave.get("Master_Port")),
        io_running=slave.get("Slave_IO_Running"), sql_running=slave.get("Slave_SQL_Running"),
        seconds_behind=None if behind is None else int(behind), lag_transactions=lag_tx)


def _port(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class HealthProbe:
    """The server's view, cached for ``ttl`` seconds and read by one query at a time.

    A read that takes longer than ``READ_TIMEOUT`` (a frozen or very busy server) is
    answered as a server that does not answer; it goes on, and no other starts
    meanwhile.
    """

    def __init__(self, supervisor: Supervisor, intent: MasterIntent,
                 ttl: float = CACHE_TTL, source_key: bytes | None = None) -> None:
        """``source_key``: what a yes to ``/source`` is signed with (``lease.source_key``)."""
        self.supervisor = supervisor
        self.source_key = source_key
        self.intent = intent
        self.ttl = ttl
        self.reads = 0  # how many times the server was asked
        self.confirmations = Confirmations()  # answers to /source
        self._view: ServerView | None = None
        self._at = 0.0
        self._changes = -1
        self._reading: asyncio.Task[tuple[ServerView, int, float]] | None = None

    def _fresh(self) -> ServerView | None:
        if self.supervisor.state is not AgentState.RUNNING:
            return ServerView(answering=False)
        if (self._view is not None and self._changes == self.intent.changes
                and time.monotonic() - self._at < self.ttl):
            return self._view
        return None

    async def _read(self) -> tuple[ServerView, int, float]:
        changes, started = self.intent.changes, time.monotonic()
        view = await read_view(self.supervisor)
        self.reads += 1
        self._view, self._at, self._changes = view, time.monotonic(), changes
        return view, changes, started

    async def _reading_now(self) -> tuple[ServerView, int, float] | None:
        """The read under way (one started if none is); None if it takes too long."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="health read")
        try:
            return await asyncio.wait_for(asyncio.shield(self._reading), READ_TIMEOUT)
        except TimeoutError:
            return None

    async def view(self) -> ServerView:
        while True:
            found = self._fresh()
            if found is not None:
                return found
            read = await self._reading_now()
            if read is None:
                return ServerView(answering=False)
            view, changes, _ = read
            if changes == self.intent.changes:
                return view
            # The role changed while the server was read: read it once more.

    async def view_read_after(self, asked: float) -> ServerView:
        """A view whose read began at ``asked`` or later: what a lease is renewed on
        must not predate the question."""
        while self.supervisor.state is AgentState.RUNNING:
            read = await self._reading_now()
            if read is None:
                break
            if read[2] >= asked:
                return read[0]
        return ServerView(answering=False)

    async def answer(self, query: Query, default_max_lag: float) -> Verdict:
        if query.path == "/source":
            return await self._source(query)
        view = await self.view()
        # The intent and lease are read after the view: a role or lease lost meanwhile
        # counts at once.
        lease = self.intent.lease
        now = time.monotonic()
        verdict = decide(query, view, self.intent.master, default_max_lag,
                         LeaseState(lease.held(now), lease.reason(now)))
        if query.path == "/health":
            verdict.body["confirmed_ago"] = round(self.confirmations.ago(), 3)
        return verdict

    async def _source(self, query: Query) -> Verdict:
        """Whether this node replicates from the asking master, read afresh; a yes
        counts from when it was asked."""
        asked = time.monotonic()
        self.confirmations.asked(asked)
        confirmed = False
        try:
            verdict = decide(query, await self.view_read_after(asked), False, 0.0)
            confirmed = verdict.status == OK
            if confirmed and self.source_key is not None and query.nonce is not None:
                verdict.body["proof"] = source_proof(self.source_key, query.nonce,
                                                     query.host or "", query.port or 0)
            return verdict
        finally:
            self.confirmations.answered(asked, confirmed)
