"""The master's lease: its rules, the agent's lease and keeper (slaves asked on real
health listeners), ``/primary`` and ``/source``, and the manager's side."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
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
from conpaassql.domain.states import AgentState, NodeState, Role
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError, WrongStateError
from conpaassql.manager.api import ManagerApi, RegisterParams
from conpaassql.manager.leases import Leases, last_confirmations
from conpaassql.mysql.connection import ConnectInfo
from conpaassql.protocol.agent import MasterRequest
from conpaassql.protocol.report import LeaseHeld, StateReport
from conpaassql.rpc.registry import CallContext, Params, Registry
from conpaassql.rpc.server import RpcApp
from tests.unit.ha_world import drained, make_world, report, slave, unreachable
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
            # Three quarters of the lease went unrenewed by the manager.
            lease.heard(ManagerWord(2.0, slaves, "127.0.0.1:3306"), time.monotonic() - 1.5)
            fences: list[str] = []

            async def self_fence() -> bool:
                fences.append("read_only")
                return True

            keeper = LeaseKeeper(lease, lambda: True, self_fence)
            await keeper.look()
            held = lease.expires > time.monotonic() + 1.0  # renewed from the round
            assert fences == []  # the lease had not run out yet
            if not held:
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


def test_a_lapsed_lease_is_fenced_before_the_slaves_are_asked(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[bool], bool]:
        listeners: list[HealthListener] = []
        try:
            slaves = await slave_ports([following(), following()], tmp_path, listeners)
            lease = Lease(tmp_path / "lease.json")
            lease.heard(ManagerWord(2.0, slaves, "127.0.0.1:3306"), time.monotonic() - 2.5)
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


def test_the_manager_leases_only_to_its_master(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    master, slave, other = (world.add(Role.MASTER), world.add(Role.SLAVE),
                            world.add(Role.NONE))
    failed = world.add(Role.SLAVE, NodeState.FAILED)
    leases = Leases(2.0)
    nodes = world.store.nodes()
    answer = leases.answer(master, nodes)
    assert answer == {"lease": 2.0, "slaves": [f"10.0.0.{slave.id}:60008"],
                      "source": "10.0.0.1:3306"}
    assert leases.lists_of(master, nodes) == [  # not the failed one
        (f"10.0.0.{slave.id}:60008",),
        (f"10.0.0.{slave.id}:60008",)]  # and the store's, until it says what it holds
    leases.heard(master.id, LeaseHeld(seconds=2.0, slaves=[f"10.0.0.{slave.id}:60008"]))
    assert leases.lists_of(master, nodes) == [(f"10.0.0.{slave.id}:60008",)]
    assert f"10.0.0.{failed.id}:60008" not in leases.check_bounded(master, [slave.id], nodes)
    assert leases.answer(slave, nodes) == {"lease": 0}
    assert leases.answer(other, nodes) == {"lease": 0}
    leases.making_master(slave.id)  # a switchover under way: only the new one
    assert leases.answer(master, nodes) == {"lease": 0}
    assert leases.answer(slave, nodes)["lease"] == 2.0
    leases.making_master(master.id)
    leases.revoke(master.id)  # a failover from it begins
    assert leases.answer(master, nodes) == {"lease": 0}
    leases.making_master(master.id)  # made the master again
    assert leases.answer(master, nodes)["lease"] == 2.0


def test_the_wait_runs_from_the_latest_renewal_or_refuses(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    master, one, two = world.add(Role.MASTER), world.add(Role.SLAVE), world.add(Role.SLAVE)
    nodes = world.store.nodes()
    leases = Leases(2.0)
    leases.answer(master, nodes)
    granted = leases.last_grant(master.id)
    for stopped, start in [
        ({one.id: granted - 5}, granted),  # confirmed before the manager's last answer
        ({one.id: granted - 5, two.id: granted + 3}, granted + 3),  # a slave's, later
        ({one.id: granted + 1, 9: granted + 7}, granted + 1),  # 9: never named to it
    ]:
        assert leases.ends_by(master, stopped, nodes) == \
            pytest.approx(rules.promote_after(start, -math.inf, 2.0))
    with pytest.raises(WrongStateError, match=r"node\(s\) 2, 3 did not stop"):
        leases.ends_by(master, {}, nodes)
    alone = Leases(2.0)
    alone.answer(master, [master])
    with pytest.raises(WrongStateError, match="it knew no slave"):
        alone.ends_by(master, {one.id: granted, two.id: granted}, nodes)
    # Not told by this manager (it started again): the store's slaves, from its start.
    fresh = Leases(2.0)
    assert fresh.lists_of(master, nodes) == [("10.0.0.2:60008", "10.0.0.3:60008")]
    assert fresh.last_grant(master.id) == fresh.started


A, B, C, D = (f"10.0.0.{n}:60008" for n in (2, 3, 4, 5))
LISTS = [
    # (what the master said it holds, lists sent after, drained, refused with)
    ([B, C], [[B, C]], {2, 3}, None),
    ([B, C, D], [[B]], {3}, "node(s) 4, 5 did not stop replicating from it in a list"),
    ([B, C, D], [[B]], {3, 4}, None),  # a majority of both lists stopped
    ([], [[B, C]], {3, 4}, "it knew no slave in a list"),  # knew none: keeps it
    (None, [[B, C]], {3, 4}, None),  # never told: it asks nobody
    (None, [], set(), None),
    ([B, C], [[], [B, C, D]], {3, 4, 5}, "it knew no slave"),
    ([B, C], [[B, C, D]], {3}, "node(s) 4, 5 did not stop"),
]


@pytest.mark.parametrize(("held", "sent", "drained_ids", "refused"), LISTS)
def test_the_wait_holds_for_every_list_the_master_may_hold(
        tmp_path: Path, held: list[str] | None, sent: list[list[str]], drained_ids: set[int],
        refused: str | None) -> None:
    world = make_world(tmp_path)
    master = world.add(Role.MASTER)
    for _ in range(4):
        world.add(Role.SLAVE)
    nodes = world.store.nodes()
    leases = Leases(2.0)
    leases.heard(master.id, LeaseHeld(seconds=2.0, slaves=held))
    for slaves in sent:
        leases.lists.setdefault(master.id, [])
        if tuple(slaves) not in leases.lists[master.id]:
            leases.lists[master.id].append(tuple(slaves))
    stopped = dict.fromkeys(drained_ids, leases.last_grant(master.id))
    if refused is None:
        leases.ends_by(master, stopped, nodes)
        return
    with pytest.raises(WrongStateError, match=re.escape(refused)):
        leases.ends_by(master, stopped, nodes)


def test_a_masters_word_of_what_it_holds_drops_the_lists_sent_before(
        tmp_path: Path) -> None:
    """Through the manager's register_node: the report's lease, then its answer."""
    world = make_world(tmp_path, lease=3.0)
    master, one, two = world.add(Role.MASTER), world.add(Role.SLAVE), world.add(Role.SLAVE)
    api = ManagerApi(world.nodes, world.reconciler, world.replication, tmp_path / "log")
    leases = world.replication.leases
    lease = Lease(tmp_path / "lease.json")
    lease.heard(ManagerWord(5.0, ("10.0.0.2:60008",), "10.0.0.1:3306"), time.monotonic())

    async def beat() -> dict[str, Any]:
        state = {"service_id": world.store.service_id, "node_id": master.id,
                 "ip": "10.0.0.1", "port": 60000, "state": "RUNNING",
                 "mysqld": {"answering": True}, "lease": lease.as_held().model_dump()}
        return await api.register_node(RegisterParams(state=state),
                                       CallContext("register_node", principal="node-1"))

    async def run() -> None:
        answer = await beat()
        assert answer["slaves"] == ["10.0.0.2:60008", "10.0.0.3:60008"]
        # The answer lost: it still holds its list, and says so.
        assert leases.lists_of(master, world.store.nodes()) == [
            ("10.0.0.2:60008",), ("10.0.0.2:60008", "10.0.0.3:60008")]
        assert leases.length(master.id) == 5.0  # the longer one it holds
        with pytest.raises(WrongStateError, match=r"node\(s\) 2 did not stop"):
            leases.ends_by(master, {two.id: 0.0}, world.store.nodes())
        lease.heard(ManagerWord.parse(answer), time.monotonic())  # type: ignore[arg-type]
        await beat()
        assert leases.lists_of(master, world.store.nodes()) == [
            ("10.0.0.2:60008", "10.0.0.3:60008")]
        leases.ends_by(master, {two.id: 0.0, one.id: 0.0}, world.store.nodes())

    world.run(run())


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


HEALTHY = {1: report("0-1-10"), 2: report("0-1-10", slave=slave()),
           3: report("0-1-10", slave=slave())}
LOST = {1: None, 2: report("0-1-10", slave=slave(io="Connecting")),
        3: report("0-1-12", slave=slave(io="Connecting", received="0-1-12"))}


@pytest.mark.parametrize(("agent_fences", "slaves_confirmed"),
                         [(False, True), (False, False), (True, True)])
def test_a_failover_through_the_cloud_waits_out_the_lease_and_says_so(
        tmp_path: Path, agent_fences: bool, slaves_confirmed: bool) -> None:
    """Through the cloud, the new master is made writable a lease after the later of
    the manager's last answer to the old one and the slaves' last confirmation (until
    the drain stopped them, or never); fenced by its agent, at once."""
    world = make_world(tmp_path, lease=0.3)
    asked: list[float] = []

    async def ask(nodes: Any, stopped_at: float) -> dict[int, float]:
        asked.append(stopped_at)
        return {node.id: stopped_at if slaves_confirmed else 0.0 for node in nodes}

    world.replication.leases.ask = ask
    for role in (Role.MASTER, Role.SLAVE, Role.SLAVE):
        world.add(role)
    promoted: list[float] = []

    def promote(node: Any, request: Any) -> dict[str, Any]:
        promoted.append(time.monotonic())
        return {"replication": None}

    world.agents.replies.update({"drain_relay_log": drained({2: "0-1-10", 3: "0-1-12"}),
                                 "set_up_replica_master": promote})
    if not agent_fences:
        world.agents.replies["fence"] = unreachable
    leases = world.replication.leases

    async def run() -> str:
        await world.replication.reconcile(world.snapshot(HEALTHY))
        leases.answer(world.nodes.node(1), world.store.nodes())  # its last heartbeat
        outcomes = await world.replication.reconcile(world.snapshot(LOST, {1: 3}))
        return outcomes[0].message

    message = world.run(run())
    granted = leases.last_grant(1)
    assert world.roles()[3] is Role.MASTER
    waits = [e.message for e in world.store.history(limit=50) if "lease to run out" in e.message]
    if agent_fences:  # mysqld stopped by its agent: nothing to wait for
        assert waits == [] and "lease" not in message
        return
    assert len(waits) == 1 and waits[0].startswith("failover: waiting "), waits
    assert "s of it for node 1's lease)" in message
    # The new master made writable only once the old one's lease surely ran out.
    start = max(granted, asked[0]) if slaves_confirmed else granted
    assert promoted[-1] >= start + 0.3 + rules.CHECK_INTERVAL + rules.MARGIN
    assert leases.answer(world.nodes.node(1), world.store.nodes()) == {"lease": 0}


@pytest.mark.parametrize(("lease", "valid"), [
    (None, True), (5.0, True), (0.5, True), (0.0, False), (-1.0, False), (4000.0, False),
    (math.inf, False), (math.nan, False),
])
def test_the_master_is_given_the_managers_lease_length(lease: float | None,
                                                        valid: bool) -> None:
    raw = {"replication_password": "x" * 8, **({} if lease is None else {"lease": lease})}
    if not valid:
        with pytest.raises(InvalidArgumentError, match="lease"):
            MasterRequest.model_validate(raw)
        return
    assert MasterRequest.model_validate(raw).lease == lease


def test_the_agent_renews_for_the_length_the_manager_gave(tmp_path: Path) -> None:
    intent = MasterIntent.in_dir(tmp_path)
    assert intent.lease.seconds == rules.DEFAULT_LEASE
    intent.lease.set_length(7.0)  # set_up_replica_master's lease
    before = time.monotonic()
    intent.set(True)
    assert intent.lease.expires >= before + 7.0
    assert Lease(tmp_path / "lease.json").seconds == 7.0  # kept for a restarted agent


def test_the_manager_sends_its_length_and_waits_with_the_longest_given(
        tmp_path: Path) -> None:
    world = make_world(tmp_path, lease=5.0)
    for role in (Role.MASTER, Role.SLAVE, Role.SLAVE):
        world.add(role)
    world.run(world.replication.reconcile(world.snapshot(HEALTHY)))
    leases = world.replication.leases
    world.run(world.replication._make_master(world.nodes.node(1), semi_sync=False))
    sent = [r for r in world.agents.requests if isinstance(r, MasterRequest)]
    assert sent and all(r.lease == 5.0 for r in sent)
    leases.seconds = 1.0  # a shorter length from now on
    granted = leases.last_grant(1)
    nodes = world.store.nodes()
    assert leases.ends_by(world.nodes.node(1), {2: granted, 3: granted}, nodes) == \
        pytest.approx(rules.promote_after(granted, granted, 5.0))


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


ABORTS = [
    # (what goes wrong, said in the outcome, rebooted by the cloud)
    ("no cloud reference", "no cloud reference", False),
    ("it knew no slave", "it knew no slave", False),  # refused before the reboot
    ("no slave drains", "no slave could take over", True),
]


@pytest.mark.parametrize(("wrong", "said", "rebooted"), ABORTS)
def test_an_aborted_failover_gives_the_master_its_lease_back(
        tmp_path: Path, wrong: str, said: str, rebooted: bool) -> None:
    world = make_world(tmp_path)
    master, _, _ = (world.add(Role.MASTER), world.add(Role.SLAVE), world.add(Role.SLAVE))
    world.agents.replies["fence"] = unreachable
    world.agents.replies["drain_relay_log"] = drained({2: "0-1-10", 3: "0-1-12"})
    leases = world.replication.leases
    if wrong == "no cloud reference":
        world.store.update_node(master.id, cloud_ref=None)
    elif wrong == "it knew no slave":
        leases.answer(world.nodes.node(master.id), [world.nodes.node(master.id)])
    else:
        world.agents.replies["drain_relay_log"] = unreachable

    async def run() -> list[str]:
        await world.replication.reconcile(world.snapshot(HEALTHY))
        outcomes = await world.replication.reconcile(world.snapshot(LOST, {1: 3}))
        return [o.message for o in outcomes]

    messages = world.run(run())
    assert any(said in m for m in messages), messages
    assert world.roles()[master.id] is Role.MASTER
    assert (world.cloud.rebooted == [f"vm-{master.id}"]) is rebooted
    answer = leases.answer(world.nodes.node(master.id), world.store.nodes())
    assert answer["lease"] == leases.seconds  # not revoked: it renews its lease again


def restored_world(tmp_path: Path) -> Any:
    """A master lost (FAILED, its agent unreachable), a slave, a restored node."""
    world = make_world(tmp_path, lease=0.3)
    master, _ = world.add(Role.MASTER, NodeState.FAILED), world.add(Role.SLAVE)
    target = world.add(Role.RESTORED)
    world.store.update_node(target.id, details={"restore": {"state": "done", "backup": "b1"}})
    world.agents.replies.update({"fence": unreachable,
                                 "drain_relay_log": drained({2: "0-1-10"})})
    return world, master, target


def test_a_rollback_over_a_lost_master_waits_out_its_lease(tmp_path: Path) -> None:
    world, master, target = restored_world(tmp_path)
    leases = world.replication.leases
    leases.answer(master, world.store.nodes())  # its last heartbeat

    result = world.run(world.replication.promote_restored(target.id))
    assert result["master"] == target.id
    verbs = world.agents.verbs()
    assert verbs.index(("drain_relay_log", 2)) < verbs.index(("set_up_replica_master",
                                                              target.id))
    assert world.cloud.rebooted == [f"vm-{master.id}"]
    done = [e.message for e in world.store.history(limit=50) if "rollback: node 1 fenced"
            in e.message]
    assert len(done) == 1 and "s waited for its lease" in done[0], done
    assert leases.answer(world.nodes.node(master.id), world.store.nodes()) == {"lease": 0}


def test_a_rollback_that_cannot_fence_the_lost_master_leaves_its_lease(
        tmp_path: Path) -> None:
    world, master, target = restored_world(tmp_path)
    world.store.update_node(master.id, cloud_ref=None)
    leases = world.replication.leases
    with pytest.raises(WrongStateError, match="no cloud reference"):
        world.run(world.replication.promote_restored(target.id))
    assert ("set_up_replica_master", target.id) not in world.agents.verbs()
    assert leases.answer(world.nodes.node(master.id), world.store.nodes())["lease"] == 0.3


@pytest.mark.parametrize("target_answers", [True, False])
def test_a_switchover_rolled_back_fences_a_target_it_cannot_make_read_only(
        tmp_path: Path, target_answers: bool) -> None:
    world = make_world(tmp_path, lease=0.3)
    master, target, _ = (world.add(Role.MASTER), world.add(Role.SLAVE),
                         world.add(Role.SLAVE))

    def status(node: Any, request: Any) -> dict[str, Any]:
        return {"return": {"gtid_current_pos": "0-1-10", **(
            {"slave": slave()} if node.id != master.id else {})}}

    def read_only(node: Any, request: Any) -> Any:
        return unreachable(node, request) if node.id == target.id and not target_answers \
            else {}

    def make_master(node: Any, request: Any) -> Any:
        return unreachable(node, request) if node.id == target.id else {"replication": None}

    world.agents.replies.update({
        "get_replication_status": status, "wait_for_gtid": {"reached": True},
        "set_read_only": read_only, "set_up_replica_master": make_master,
        "fence": lambda node, request: unreachable(node, request) if node.id == target.id
        else {"state": "STOPPED"},
        "drain_relay_log": drained({3: "0-1-10"})})
    with pytest.raises(ConpaasSQLError):
        world.run(world.replication.switchover(target.id))
    verbs = world.agents.verbs()
    assert verbs[-1] == ("set_up_replica_master", master.id)  # the old master back
    fenced = [e.message for e in world.store.history(limit=50)
              if e.message.startswith(f"switchover: node {target.id} fenced")]
    leases = world.replication.leases
    if target_answers:  # read-only again, as confirmed: nothing to wait for
        assert fenced == [] and world.cloud.rebooted == []
        return
    assert world.cloud.rebooted == [f"vm-{target.id}"]
    assert len(fenced) == 1 and "s waited for its lease" in fenced[0], fenced
    assert verbs.index(("drain_relay_log", 3)) < len(verbs) - 1
    assert leases.answer(world.nodes.node(target.id), world.store.nodes()) == {"lease": 0}


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
