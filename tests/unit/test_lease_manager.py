"""The master's lease, the manager's side: to whom it is given, which slave lists the
manager counts with, the length it gives and waits with, and the topology changes
that wait it out (a failover through the cloud, an aborted one, a rollback over a lost
master, a switchover rolled back)."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conpaassql.agent.lease import Lease, ManagerWord
from conpaassql.agent.role import MasterIntent
from conpaassql.domain import lease as rules
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError, WrongStateError
from conpaassql.manager.api import ManagerApi, RegisterParams
from conpaassql.manager.leases import Leases
from conpaassql.protocol.agent import MasterRequest
from conpaassql.protocol.report import LeaseHeld
from conpaassql.rpc.registry import CallContext
from tests.unit.ha_world import drained, make_world, report, slave, unreachable


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


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.inf, math.nan, 4000.0])
def test_a_lease_length_the_manager_would_wait_forever_on_is_refused(seconds: float) -> None:
    with pytest.raises(ValidationError):
        LeaseHeld(seconds=seconds, slaves=[])


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
