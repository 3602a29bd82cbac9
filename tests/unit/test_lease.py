"""The master's lease: its rules, the agent's lease and keeper (slaves asked on real
health listeners), ``/primary`` and ``/source``, and the manager's side."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict

from conpaassql.agent import lease as lease_module
from conpaassql.agent.health import (
    BadQueryError,
    HealthProbe,
    LeaseState,
    Query,
    ServerView,
    parse_query,
    primary,
    source,
)
from conpaassql.agent.health_http import HealthListener
from conpaassql.agent.heartbeat import Heartbeat
from conpaassql.agent.lease import (
    Confirmations,
    Lease,
    LeaseKeeper,
    ManagerWord,
    confirmations,
    leave_from,
    server_fence,
)
from conpaassql.agent.role import MasterIntent
from conpaassql.config import ManagerConfig
from conpaassql.domain import lease as rules
from conpaassql.domain.states import AgentState, Role
from conpaassql.manager.leases import last_confirmations
from conpaassql.mysql.connection import ConnectInfo
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.registry import Params, Registry
from conpaassql.rpc.server import RpcApp
from tests.unit.ha_world import make_world
from tests.unit.served import served

# -- the rules -------------------------------------------------------------------


@pytest.mark.parametrize(("known", "confirmed", "renews"), [
    (0, 0, True),  # no slave: nobody can be promoted over it
    (1, 0, False), (1, 1, True),
    (2, 1, False), (2, 2, True),
    (3, 1, False), (3, 2, True),
    (4, 2, False), (4, 3, True),
])
def test_a_majority_of_the_slaves_renews(known: int, confirmed: int, renews: bool) -> None:
    assert rules.slaves_renew(known, confirmed) is renews


@pytest.mark.parametrize(("known", "unconfirmed", "ends"), [
    (0, 0, False),  # it knew no slave: it keeps its lease while cut off
    (1, 0, True), (1, 1, False),
    (2, 1, True), (2, 2, False),  # two undrained could renew it on their own
    (3, 1, True), (3, 2, False),
])
def test_a_lost_masters_lease_ends_unless_undrained_slaves_could_renew_it(
        known: int, unconfirmed: int, ends: bool) -> None:
    assert rules.bounded(known, unconfirmed) is ends


@pytest.mark.parametrize(("remaining", "lease", "ask"), [
    (2.0, 2.0, False), (1.01, 2.0, False), (1.0, 2.0, True), (0.0, 2.0, True),
    (-5.0, 2.0, True),
])
def test_the_slaves_are_asked_once_half_the_lease_went_unrenewed(
        remaining: float, lease: float, ask: bool) -> None:
    assert rules.ask_slaves(remaining, lease) is ask


@pytest.mark.parametrize(("interval", "lease", "period"), [
    (5.0, None, 5.0), (5.0, 0.0, 5.0), (5.0, 3.0, 1.0), (0.5, 3.0, 0.5),
])
def test_a_master_beats_three_times_a_lease(interval: float, lease: float | None,
                                            period: float) -> None:
    assert rules.heartbeat_period(interval, lease) == period


@pytest.mark.parametrize(("grant", "stopped", "expected"), [
    (10.0, 12.0, 12.0 + 2.0 + rules.CHECK_INTERVAL + rules.MARGIN),  # the slaves later
    (15.0, 12.0, 15.0 + 2.0 + rules.CHECK_INTERVAL + rules.MARGIN),  # the manager later
])
def test_promotion_waits_a_lease_past_the_last_renewal_anyone_could_give(
        grant: float, stopped: float, expected: float) -> None:
    assert rules.promote_after(grant, stopped, 2.0) == pytest.approx(expected)


def test_the_managers_default_is_the_rules_default() -> None:
    assert ManagerConfig().lease == rules.DEFAULT_LEASE


# -- the agent's lease -------------------------------------------------------------


@pytest.mark.parametrize(("reply", "word"), [
    ({"result": "OK"}, None),  # a manager that says nothing of leases
    ("OK", None),
    ({"lease": 0}, ManagerWord(0.0)),
    ({"lease": 2, "slaves": ["10.0.0.2:60008", 5], "source": "10.0.0.1:3306"},
     ManagerWord(2.0, ("10.0.0.2:60008",), "10.0.0.1:3306")),
    ({"lease": -1}, None), ({"lease": True}, None), ({"lease": "2"}, None),
    ({"lease": math.inf}, None),
])
def test_the_managers_word_is_read_with_care(reply: Any, word: ManagerWord | None) -> None:
    assert ManagerWord.parse(reply) == word


def test_a_lease_runs_from_the_beat_and_the_slaves_are_kept(tmp_path: Path) -> None:
    lease = Lease(tmp_path / "lease.json")
    assert not lease.held() and lease.reason() == "no lease yet"
    sent = time.monotonic() - 1.5
    lease.heard(ManagerWord(2.0, ("10.0.0.2:60008",), "10.0.0.1:3306"), sent)
    assert lease.expires == pytest.approx(sent + 2.0)
    assert lease.held() and lease.reason() == "renewed by the manager"
    again = Lease(tmp_path / "lease.json")  # an agent started again knows whom to ask
    assert (again.seconds, again.slaves, again.source) == \
        (2.0, ("10.0.0.2:60008",), "10.0.0.1:3306")
    assert not again.held()  # but holds no lease before anyone renews it
    expires = lease.expires
    lease.heard(ManagerWord(2.0, (), "10.0.0.1:3306"), time.monotonic() - 5)
    assert lease.expires == expires  # an older beat answered late shortens nothing
    again.renew(time.monotonic() - 5, "renewed by the slaves")
    assert not again.held()
    assert again.reason().startswith("lease ran out ")
    assert again.reason().endswith("(last renewed by the slaves)")
    lease.heard(ManagerWord(0.0), time.monotonic())
    assert lease.denied and not lease.held()
    assert lease.reason() == "the manager says this node is not the master"


@pytest.mark.parametrize(("bind", "source"), [
    ("127.0.3.4", "127.0.3.4"), ("0.0.0.0", None), ("::", None), ("node.example", None),
    ("fd00::5", "fd00::5"),
])
def test_calls_leave_from_the_nodes_own_address(bind: str, source: str | None) -> None:
    assert leave_from(bind) == source


def test_the_role_gives_and_takes_the_lease(tmp_path: Path) -> None:
    intent = MasterIntent.in_dir(tmp_path)
    changes: list[bool] = []
    intent.on_change = lambda: changes.append(intent.master)
    assert not intent.lease.held()
    intent.set(True)
    assert intent.lease.held()
    intent.set(False)
    assert not intent.lease.held() and changes == [True, False]


# -- /primary and /source ------------------------------------------------------------

WRITABLE = ServerView(answering=True, read_only=False)


@pytest.mark.parametrize(("view", "master", "lease", "status"), [
    (WRITABLE, True, LeaseState(True, "renewed by the manager"), 200),
    (WRITABLE, True, LeaseState(False, "lease ran out 0.1 s ago"), 503),
    (WRITABLE, True, None, 200),
    (WRITABLE, False, LeaseState(True, "made the master"), 503),
    (ServerView(answering=True, read_only=True), True, LeaseState(True, "x"), 503),
])
def test_primary_needs_the_lease(view: ServerView, master: bool, lease: LeaseState | None,
                                 status: int) -> None:
    verdict = primary(view, master, lease)
    assert verdict.status == status
    if master and lease is not None:
        assert verdict.body["lease"] == lease.why
    if status == 503:
        assert verdict.body["role"] != "master"


FOLLOWING = ServerView(answering=True, read_only=True, replicating_from="10.0.0.1",
                       replicating_port=3306, io_running="Yes", sql_running="Yes")


@pytest.mark.parametrize(("view", "status"), [
    (FOLLOWING, 200),
    (ServerView(**{**FOLLOWING.__dict__, "io_running": "Connecting"}), 503),
    (ServerView(**{**FOLLOWING.__dict__, "io_running": "No"}), 503),
    (ServerView(**{**FOLLOWING.__dict__, "replicating_from": "10.0.0.9"}), 503),
    (ServerView(**{**FOLLOWING.__dict__, "replicating_port": 3307}), 503),
    (ServerView(answering=False), 503),
])
def test_source_confirms_only_a_running_io_thread_from_that_master(view: ServerView,
                                                                   status: int) -> None:
    assert source(view, "10.0.0.1", 3306).status == status


def test_source_query() -> None:
    assert parse_query("/source", [("host", "10.0.0.1"), ("port", "3306")]) == \
        Query("/source", host="10.0.0.1", port=3306)
    assert parse_query("/source", [("host", "h"), ("port", "1"), ("nonce", "ab12" * 8)]) == \
        Query("/source", host="h", port=1, nonce="ab12" * 8)
    for pairs in ([("host", "10.0.0.1")], [("host", "h"), ("port", "x")],
                  [("host", "h"), ("port", "1"), ("max_lag", "1")],
                  [("host", "h"), ("port", "1"), ("nonce", "short")],
                  [("host", "h"), ("port", "1"), ("nonce", "a b" * 5)],
                  [("host", "h"), ("port", "1"), ("nonce", "a" * 65)]):
        with pytest.raises(BadQueryError):
            parse_query("/source", pairs)


# -- the keeper, asking slaves on real health listeners ------------------------------


class SlaveSession:
    """A slave's server: SHOW SLAVE STATUS from ``row`` (None: not a slave)."""

    def __init__(self, row: dict[str, Any] | None) -> None:
        self.row = row

    async def execute(self, sql: str, args: Any = None, *,
                      idempotent: bool = False) -> list[dict[str, Any]]:
        if sql.startswith("SHOW SLAVE STATUS"):
            return [] if self.row is None else [dict(self.row)]
        return [{"read_only": 1, "slave_pos": ""}]


class SlaveServer:
    state = AgentState.RUNNING

    def __init__(self, row: dict[str, Any] | None) -> None:
        self.session = SlaveSession(row)


def following(io: str = "Yes", host: str = "127.0.0.1", port: int = 3306) -> dict[str, Any]:
    return {"Master_Host": host, "Master_Port": port, "Slave_IO_Running": io,
            "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 0, "Gtid_IO_Pos": ""}


async def slave_ports(rows: list[dict[str, Any] | None], tmp_path: Path,
                      listeners: list[HealthListener],
                      keys: list[bytes | None] | None = None) -> tuple[str, ...]:
    found = []
    for n, row in enumerate(rows):
        probe = HealthProbe(SlaveServer(row), MasterIntent.in_dir(tmp_path / str(n)),  # type: ignore[arg-type]
                            source_key=keys[n] if keys else None)
        (tmp_path / str(n)).mkdir()
        listener = HealthListener(probe, "127.0.0.1", 0, 30.0)
        await listener.start()
        listeners.append(listener)
        assert listener.server is not None
        found.append(f"127.0.0.1:{listener.server.sockets[0].getsockname()[1]}")
    return tuple(found)


KEEPER_CASES = [
    # (slaves' rows, renewed)
    ([following(), following(io="Connecting")], False),  # 1 of 2: no majority
    ([following(), following()], True),
    ([following(), following(), following(io="No")], True),
    ([following(), following(host="127.0.0.9"), None], False),
    ([], True),  # no slave: kept
]


@pytest.mark.parametrize(("rows", "renewed"), KEEPER_CASES)
def test_the_keeper_asks_the_slaves_then_fences_once_the_lease_runs_out(
        tmp_path: Path, rows: list[Any], renewed: bool) -> None:
    async def scenario() -> tuple[bool, list[str]]:
        listeners: list[HealthListener] = []
        try:
            slaves = await slave_ports(rows, tmp_path, listeners)
            lease = Lease(tmp_path / "lease.json")
            # Three quarters of the lease went unrenewed by the manager (what is left
            # of it bounds the round: 2 s, for a loaded machine).
            lease.heard(ManagerWord(8.0, slaves, "127.0.0.1:3306"), time.monotonic() - 6.0)
            fences: list[str] = []

            async def self_fence() -> bool:
                fences.append("read_only")
                return True

            keeper = LeaseKeeper(lease, lambda: True, self_fence)
            await keeper.look()
            held = lease.expires > time.monotonic() + 5.0  # renewed from the round
            assert fences == []  # the lease had not run out yet
            if not held:
                lease.expires = time.monotonic() + 0.3  # the end of it, sooner
                while lease.held():  # the guard's own timer
                    await asyncio.sleep(await keeper.guard_once())
                await keeper.guard_once()
                await keeper.guard_once()  # fenced once per lapse
            return held, fences
        finally:
            for listener in listeners:
                await listener.close()

    held, fences = asyncio.run(scenario())
    assert held is renewed
    assert fences == ([] if renewed else ["read_only"])


@pytest.mark.parametrize(("master", "left", "wait"), [
    (True, 5.0, 0.2), (True, 0.05, 0.05),  # wakes when the lease runs out
    (True, -1.0, 0.2), (False, None, 0.2),  # ran out, or none: no busy loop
])
def test_the_guard_wakes_when_the_lease_runs_out(tmp_path: Path, master: bool,
                                                 left: float | None, wait: float) -> None:
    lease = Lease(tmp_path / "lease.json")
    if left is not None:
        lease.expires = time.monotonic() + left

    async def self_fence() -> bool:
        return True

    keeper = LeaseKeeper(lease, lambda: master, self_fence, interval=0.2)
    assert asyncio.run(keeper.guard_once()) == pytest.approx(wait, abs=0.02)


def test_a_lapsed_lease_is_fenced_before_the_slaves_are_asked(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[bool], bool]:
        listeners: list[HealthListener] = []
        try:
            slaves = await slave_ports([following(), following()], tmp_path, listeners)
            lease = Lease(tmp_path / "lease.json")
            lease.heard(ManagerWord(8.0, slaves, "127.0.0.1:3306"), time.monotonic() - 8.5)
            held_at_fence: list[bool] = []

            async def self_fence() -> bool:
                held_at_fence.append(lease.held())
                return True

            await LeaseKeeper(lease, lambda: True, self_fence).look()
            return held_at_fence, lease.held()
        finally:
            for listener in listeners:
                await listener.close()

    held_at_fence, renewed = asyncio.run(scenario())
    assert held_at_fence == [False] and renewed  # fenced first, renewed by the round after


def test_the_fence_does_not_wait_for_a_round_of_questions(tmp_path: Path) -> None:
    """A round of questions that never ends: the guard fences on its own timer."""
    async def scenario() -> bool:
        lease = Lease(tmp_path / "lease.json")
        lease.heard(ManagerWord(2.0, ("127.0.0.1:9",), "127.0.0.1:3306"),
                    time.monotonic() - 1.8)
        fenced = asyncio.Event()

        async def self_fence() -> bool:
            fenced.set()
            return True

        keeper = LeaseKeeper(lease, lambda: True, self_fence)

        async def stuck() -> None:
            await asyncio.Event().wait()

        keeper.look = stuck  # type: ignore[method-assign]
        running = asyncio.create_task(keeper.run())
        try:
            await asyncio.wait_for(fenced.wait(), 30)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        return lease.held()

    assert asyncio.run(scenario()) is False


def test_a_round_of_questions_ends_with_the_lease(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Slaves that never answer: the round is cut when the lease runs out."""
    async def never(*args: Any) -> int:
        await asyncio.Event().wait()
        return 0

    monkeypatch.setattr(lease_module, "confirmations", never)

    async def scenario() -> tuple[bool, list[str]]:
        lease = Lease(tmp_path / "lease.json")
        lease.heard(ManagerWord(60.0, ("127.0.0.1:9",), "127.0.0.1:3306"),
                    time.monotonic() - 59.7)
        fences: list[str] = []

        async def self_fence() -> bool:
            fences.append("read_only")
            return True

        await asyncio.wait_for(LeaseKeeper(lease, lambda: True, self_fence).look(), 30)
        return lease.held(), fences

    assert asyncio.run(scenario()) == (False, ["read_only"])


class StuckServer:
    """A supervisor whose server accepts connections on a socket and never greets."""

    def __init__(self, socket: Path, state: AgentState = AgentState.RUNNING) -> None:
        self.state = state
        self.info = ConnectInfo(socket=socket, user="root", password="x")
        self.killed = 0

    async def fence(self) -> None:
        self.killed += 1


@pytest.mark.parametrize(("state", "did", "killed"), [
    (AgentState.RUNNING, True, 1),  # no answer within the bound: mysqld killed
    (AgentState.STOPPED, False, 0),  # nothing to fence
    (AgentState.STARTING, False, 0),  # it starts read-only
])
def test_a_self_fence_not_confirmed_in_time_kills_mysqld(
        tmp_path: Path, state: AgentState, did: bool, killed: int) -> None:
    async def scenario() -> tuple[bool, int]:
        held: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        socket = tmp_path / "s.sock"
        server = await asyncio.start_unix_server(mute, str(socket))
        try:
            stuck = StuckServer(socket, state)
            answer = await server_fence(stuck, 0.2)()  # type: ignore[arg-type]
            return answer, stuck.killed
        finally:
            server.close()

    assert asyncio.run(scenario()) == (did, killed)


def test_the_keeper_leaves_alone_a_node_that_is_not_the_master_or_was_denied(
        tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        lease = Lease(tmp_path / "lease.json")
        lease.heard(ManagerWord(2.0, (), "127.0.0.1:3306"), time.monotonic())
        fences: list[str] = []

        async def self_fence() -> bool:
            fences.append("read_only")
            return True

        await LeaseKeeper(lease, lambda: False, self_fence).look()  # a slave
        lease.heard(ManagerWord(0.0), time.monotonic())
        await LeaseKeeper(lease, lambda: True, self_fence).look()  # denied: not renewed
        return fences

    assert asyncio.run(scenario()) == ["read_only"]


KEY = lease_module.source_key("the service's secret")
SIGNED = [
    # (the slaves' keys, confirmations counted)
    ([KEY, KEY], 2),
    ([KEY, None], 1),  # a 200 without a proof: forged, as by anyone on the path
    ([KEY, lease_module.source_key("another service's")], 1),
    ([None, None], 0),
]


@pytest.mark.parametrize(("keys", "counted"), SIGNED)
def test_only_signed_confirmations_renew(tmp_path: Path, keys: list[bytes | None],
                                         counted: int) -> None:
    async def scenario() -> tuple[int, int]:
        listeners: list[HealthListener] = []
        try:
            slaves = await slave_ports([following(), following()], tmp_path, listeners, keys)
            signed = await confirmations(slaves, "127.0.0.1:3306", 2.0, key=KEY)
            unsigned = await confirmations(slaves, "127.0.0.1:3306", 2.0)
            return signed, unsigned
        finally:
            for listener in listeners:
                await listener.close()

    assert asyncio.run(scenario()) == (counted, 2)


def test_a_proof_is_bound_to_its_nonce_and_question() -> None:
    proof = lease_module.source_proof(KEY, "n" * 32, "10.0.0.1", 3306)
    assert proof == lease_module.source_proof(KEY, "n" * 32, "10.0.0.1", "3306")
    for other in (lease_module.source_proof(KEY, "m" * 32, "10.0.0.1", 3306),
                  lease_module.source_proof(KEY, "n" * 32, "10.0.0.2", 3306),
                  lease_module.source_proof(KEY, "n" * 32, "10.0.0.1", 3307)):
        assert other != proof
    assert "the service's secret" not in proof


# -- the manager's side --------------------------------------------------------------


def test_a_slave_tells_when_it_last_confirmed(tmp_path: Path) -> None:
    """A real health listener asked /source (a yes, a no), then /health, by the manager's
    own reader of it."""
    async def scenario() -> tuple[float, dict[int, float], dict[int, float]]:
        listeners: list[HealthListener] = []
        try:
            ports = await slave_ports([following(), following(io="Connecting")], tmp_path,
                                      listeners)
            world = make_world(tmp_path / "manager")
            nodes = []
            for port in ports:
                node = world.add(Role.SLAVE)
                nodes.append(world.store.update_node(node.id, ip="127.0.0.1", details={
                    "health_port": int(port.rpartition(":")[2])}))
            before = time.monotonic()
            confirmed = await confirmations(ports, "127.0.0.1:3306", 2.0)
            assert confirmed == 1
            later = time.monotonic() + 100
            heard = await last_confirmations(nodes, later)
            stopped_first = await last_confirmations(nodes, before - 100)
            return before, heard, stopped_first
        finally:
            for listener in listeners:
                await listener.close()

    (tmp_path / "manager").mkdir()
    before, heard, stopped_first = asyncio.run(scenario())
    yes, no = heard[1], heard[2]
    assert before - 0.01 <= yes <= time.monotonic()  # confirmed while asked
    assert no < before  # never confirmed: its agent's start
    assert stopped_first == {1: before - 100, 2: before - 100}  # never past the stop


def test_confirmations_count_the_questions_under_way() -> None:
    seen = Confirmations()
    start = seen.last
    seen.asked(start + 10)
    assert seen.ago(start + 12) == pytest.approx(2)  # may yet be a yes
    seen.answered(start + 10, False)
    assert seen.ago(start + 12) == pytest.approx(12)
    seen.asked(start + 11)
    seen.answered(start + 11, True)
    assert seen.ago(start + 12) == pytest.approx(1)


@pytest.mark.parametrize(("address", "url"), [
    ("10.0.0.2:60008", "http://10.0.0.2:60008/source"),
    ("fd00::2:60008", "http://[fd00::2]:60008/source"),
    ("[fd00::2]:60008", "http://[fd00::2]:60008/source"),
    ("node-2.example:60008", "http://node-2.example:60008/source"),
    ("10.0.0.2", None), ("10.0.0.2:http", None), ("a/b:1", None), (":60008", None),
])
def test_a_slaves_health_port_is_asked_by_a_url_fit_for_ipv6(address: str,
                                                             url: str | None) -> None:
    if url is None:
        with pytest.raises(ValueError):
            lease_module.health_url(address, "source")
        return
    assert lease_module.health_url(address, "source") == url


def test_slaves_and_their_confirmations_are_asked_over_ipv6(tmp_path: Path) -> None:
    """A slave's real health listener on ::1, asked by the master (/source) and by the
    manager (/health)."""
    async def scenario() -> tuple[int, dict[int, float], float]:
        probe = HealthProbe(SlaveServer(following(host="::1")),  # type: ignore[arg-type]
                            MasterIntent.in_dir(tmp_path))
        listener = HealthListener(probe, "::1", 0, 30.0)
        await listener.start()
        try:
            assert listener.server is not None
            port = listener.server.sockets[0].getsockname()[1]
            before = time.monotonic()
            confirmed = await confirmations((f"::1:{port}", "::1"), "::1:3306", 2.0)
            world = make_world(tmp_path / "manager")
            node = world.add(Role.SLAVE)
            node = world.store.update_node(node.id, ip="::1", details={"health_port": port})
            heard = await last_confirmations([node], time.monotonic() + 100)
            return confirmed, heard, before
        finally:
            await listener.close()

    (tmp_path / "manager").mkdir()
    confirmed, heard, before = asyncio.run(scenario())
    assert confirmed == 1  # and the malformed address counts as none
    assert before - 0.01 <= heard[1] <= time.monotonic()  # its /health was read


# -- the heartbeat renews it, against a manager's RPC endpoint -------------------------


class WordParams(Params):
    model_config = ConfigDict(extra="allow")


class LeasingManager:
    """Answers register_node with ``word`` (the real RPC server and client between)."""

    def __init__(self) -> None:
        self.word: dict[str, Any] = {}
        self.beats = 0

    async def register_node(self, params: WordParams, ctx: Any) -> dict[str, Any]:
        self.beats += 1
        return {"result": "OK", **self.word}


def test_the_heartbeat_renews_the_masters_lease_from_when_it_was_sent(
        tmp_path: Path) -> None:
    manager = LeasingManager()
    registry = Registry()
    registry.add("register_node", "POST", manager.register_node, WordParams)

    async def report() -> StateReport:
        return StateReport()

    async def scenario(port: int) -> None:
        intent = MasterIntent.in_dir(tmp_path)
        beat = Heartbeat(f"http://127.0.0.1:{port}/", "secret", 5.0, report, intent=intent,
                         local_address="127.0.0.1")
        try:
            assert beat.period == 5.0  # not the master
            intent.set(True)
            assert beat.period == pytest.approx(rules.DEFAULT_LEASE / 3)
            intent.lease.drop("test")
            manager.word = {"lease": 1.5, "slaves": ["127.0.0.1:1"], "source": "10.0.0.1:3306"}
            before = time.monotonic()
            await beat.beat()
            assert before <= intent.lease.expires - 1.5 <= time.monotonic()
            assert intent.lease.slaves == ("127.0.0.1:1",)
            assert beat.period == pytest.approx(0.5)
            manager.word = {"lease": 0}
            await beat.beat()
            assert not intent.lease.held() and intent.lease.denied
            manager.word = {}  # says nothing of leases: nothing changes
            intent.set(True)
            expires = intent.lease.expires
            await beat.beat()
            assert intent.lease.expires == expires and not intent.lease.denied
            assert manager.beats == 3
        finally:
            await beat.aclose()

    with served(RpcApp(registry).asgi()) as port:
        asyncio.run(scenario(port))
