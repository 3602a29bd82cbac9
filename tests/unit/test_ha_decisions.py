"""The replication decisions, table-driven: one snapshot of a service at a time fed
to the real ``Replication`` (``ha_world``: the real store and typed client, a fake
transport that records the calls).

Each case says what the agents must be asked, in order: fence before promote, the
most advanced candidate promoted, the others repointed, nothing on a suspect or
hidden master."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conpaassql.domain.diagnosis import Situation
from conpaassql.domain.states import Role, ServiceState
from conpaassql.domain.topology import Topology
from conpaassql.manager.cycle import Act, Outcome
from conpaassql.manager.reconcile import NODE_ACTIONS
from conpaassql.manager.replication import TOPOLOGY_ACTIONS
from conpaassql.protocol.agent import MasterRequest, SlaveRequest
from tests.unit.ha_world import (
    Reply,
    drained,
    make_world,
    quiet,
    report,
    slave,
    unreachable,
)

# -- the tables are whole ---------------------------------------------------------


def test_every_situation_has_its_handler() -> None:
    assert set(NODE_ACTIONS) == set(Situation)
    assert set(TOPOLOGY_ACTIONS) == set(Topology)


# -- the replication topology, one snapshot at a time -----------------------------


@dataclass(frozen=True)
class Case:
    """Node 1 is the master, 2 and 3 its slaves (unless ``roles`` says otherwise)."""

    name: str
    probes: Mapping[int, dict[str, Any] | None]  # this cycle's reports (None: no answer)
    calls: list[tuple[str, int]]  # what the agents are asked, in order
    action: Act
    situation: Topology
    master_after: int | None = 1
    failures: dict[int, int] = field(default_factory=dict)
    silent: dict[int, int] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    roles: tuple[Role, ...] = (Role.MASTER, Role.SLAVE, Role.SLAVE)
    config: dict[str, Any] = field(default_factory=dict)
    rebooted: tuple[str, ...] = ()  # what the cloud powered off and on


HEALTHY = {1: report("0-1-10"), 2: report("0-1-10", slave=slave()),
           3: report("0-1-10", slave=slave())}
#: What the new master is asked after a failover to node 3, and what node 2 is.
REPOINT_2_AT_3 = [("source_address", 2), ("set_replica_hosts", 3),
                  ("set_up_replica_slave", 2), ("set_up_replica_master", 3)]
LOST_MASTER = {**HEALTHY, 2: report("0-1-10", slave=slave(io="Connecting")),
               3: report("0-1-12", slave=slave(io="Connecting", received="0-1-12"))}

CASES = [
    Case("master crashed: fence, drain both, promote the most advanced, repoint",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3,
         replies={"drain_relay_log": drained({2: "0-1-11", 3: "0-1-12"})}),
    Case("the candidate is the one that applied the most, whatever its id",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 2), ("source_address", 3), ("set_replica_hosts", 2),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 2)],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=2,
         replies={"drain_relay_log": drained({2: "0-1-15", 3: "0-1-12"})}),
    Case("a candidate that cannot apply what it received is passed over",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3,
         replies={"drain_relay_log": drained({3: "0-1-12"})}),
    Case("master's mysqld silent past the threshold: failover",
         {**HEALTHY, 1: report(answering=False)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3, silent={1: 3},
         replies={"drain_relay_log": drained({2: "0-1-10", 3: "0-1-11"})}),
    Case("master unreachable, slaves lost it too: its agent cannot fence, the cloud does",
         {**LOST_MASTER, 1: None},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_UNREACHABLE, master_after=3, failures={1: 3},
         replies={"fence": unreachable,
                  "drain_relay_log": drained({2: "0-1-10", 3: "0-1-12"})},
         rebooted=("vm-1",), config={"lease": 0.3}),  # then waits out the lease
    Case("master hidden (unreachable from the manager only): nothing done",
         {**HEALTHY, 1: None}, [], Act.HOLD, Topology.MASTER_HIDDEN, failures={1: 3}),
    Case("master suspect (not enough failed probes): nothing done",
         {**LOST_MASTER, 1: None}, [], Act.HOLD, Topology.MASTER_SUSPECT, failures={1: 2}),
    Case("master's mysqld silent once: suspect, nothing done",
         {**HEALTHY, 1: report(answering=False)}, [], Act.HOLD, Topology.MASTER_SUSPECT,
         silent={1: 1}),
    Case("master lost with no slave fit to take over: held, its agent restarts mysqld",
         {1: report(restarts=1), 2: report(slave=slave(io_errno=1236)),
          3: report(answering=False)},
         [], Act.HOLD, Topology.MASTER_CRASHED),
    Case("master lost, auto_failover off: held",
         {**HEALTHY, 1: report(restarts=1)}, [], Act.HOLD, Topology.MASTER_CRASHED,
         config={"auto_failover": False}),
    Case("master read-only: made writable (semi-sync on: it has slaves)",
         {**HEALTHY, 1: report(read_only=True)}, [("set_up_replica_master", 1)],
         Act.MAKE_WRITABLE, Topology.MASTER_READ_ONLY),
    Case("no master, a new service: the first healthy node is elected, no drain",
         {1: report("0-1-3"), 2: report("0-2-3"), 3: None}, [("set_up_replica_master", 1)],
         Act.ELECT, Topology.NO_MASTER, roles=(Role.NONE, Role.NONE, Role.NONE)),
    Case("no master among slaves: drained, the one that applied the most is elected",
         {1: report("0-1-10", slave=slave(3)), 2: report("0-1-12", slave=slave(3)),
          3: report("0-1-12")},
         [("drain_relay_log", 1), ("drain_relay_log", 2), ("set_up_replica_master", 2)],
         Act.ELECT, Topology.NO_MASTER, master_after=2,
         roles=(Role.SLAVE, Role.SLAVE, Role.NONE),
         replies={"drain_relay_log": drained({1: "0-1-11", 2: "0-1-14"})}),
    Case("a new node: the master is copied into it, then it replicates",
         {**HEALTHY, 3: report("0-3-1")},
         [("seed_from", 3), ("source_address", 3), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 1)],
         Act.SEED, Topology.NEW_NODE, roles=(Role.MASTER, Role.SLAVE, Role.NONE)),
    Case("a slave with errant GTIDs (the master lacks its position): copied anew",
         {**HEALTHY, 2: report("0-1-10,0-2-4", slave=slave(io="No", io_errno=1236))},
         [("seed_from", 2), ("source_address", 2), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 2), ("set_up_replica_master", 1)],
         Act.SEED, Topology.SLAVE_BROKEN),
    Case("a diverged old master (ahead on its own server id) rejoining: copied anew",
         {3: report("0-3-20"), 2: report("0-3-20", slave=slave(3)),
          1: report("0-1-25,0-3-18", slave=slave(3, io="No", io_errno=1236))},
         [("seed_from", 1), ("source_address", 1), ("set_replica_hosts", 3),
          ("set_up_replica_slave", 1), ("set_up_replica_master", 3)],
         Act.SEED, Topology.SLAVE_BROKEN, master_after=3,
         roles=(Role.SLAVE, Role.SLAVE, Role.MASTER),
         replies={"seed_from": {"gtid_position": "0-3-20"}}),
    Case("a broken slave (its SQL thread stopped on an error): copied anew",
         {**HEALTHY, 3: report(slave=slave(sql="No", sql_errno=1062))},
         [("seed_from", 3), ("source_address", 3), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 1)],
         Act.SEED, Topology.SLAVE_BROKEN),
    Case("a fenced old master (mysqld stopped by its agent): restarted read-only",
         {3: report("0-3-20"), 2: report("0-3-20", slave=slave(3)),
          1: report(answering=False, stopped=True)},
         [("start_server", 1)], Act.RESTART, Topology.SLAVE_STOPPED, master_after=3,
         roles=(Role.SLAVE, Role.SLAVE, Role.MASTER)),
    Case("a stopped slave (left drained by a failover that failed): repointed",
         {**HEALTHY, 2: report(slave=slave(io="No", sql="No"))},
         [("source_address", 2), ("set_replica_hosts", 1), ("set_up_replica_slave", 2),
          ("set_up_replica_master", 1)],
         Act.REPOINT, Topology.SLAVE_UNCONFIGURED),
    Case("a slave replicating from an old master: repointed",
         {**HEALTHY, 3: report(slave=slave(master=9))},
         [("source_address", 3), ("set_replica_hosts", 1), ("set_up_replica_slave", 3),
          ("set_up_replica_master", 1)],
         Act.REPOINT, Topology.SLAVE_UNCONFIGURED),
    Case("healthy: nothing asked", HEALTHY, [], Act.NONE, Topology.HEALTHY),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_topology_decision(tmp_path: Path, case: Case) -> None:
    world = make_world(tmp_path, **case.config)
    for role in case.roles:
        world.add(role)
    world.agents.replies.update(case.replies)

    async def run() -> list[Outcome]:
        await world.replication.reconcile(world.snapshot(quiet(case.roles)))
        world.agents.calls.clear()
        outcomes = await world.replication.reconcile(
            world.snapshot(case.probes, case.failures, case.silent))
        await world.settle()
        return outcomes

    outcomes = world.run(run())
    assert [(o.situation, o.action) for o in outcomes] == [(case.situation, case.action)]
    assert world.agents.verbs() == case.calls
    assert tuple(world.cloud.rebooted) == case.rebooted
    masters = [node for node, role in world.roles().items() if role is Role.MASTER]
    assert masters == ([] if case.master_after is None else [case.master_after])
    if case.action is Act.HOLD:
        assert "held: " in outcomes[0].message


def test_failover_records_its_steps_and_the_service_comes_back(tmp_path: Path) -> None:
    case = CASES[0]
    world = make_world(tmp_path)
    for role in case.roles:
        world.add(role)
    world.agents.replies.update(case.replies)

    async def run() -> None:
        await world.replication.reconcile(world.snapshot(HEALTHY))
        await world.replication.reconcile(world.snapshot(case.probes))

    world.run(run())
    assert world.roles() == {1: Role.SLAVE, 2: Role.SLAVE, 3: Role.MASTER}
    calls, requests = world.agents.calls, world.agents.requests
    promotion = requests[calls.index(("set_up_replica_master", 3))]
    assert isinstance(promotion, MasterRequest)
    assert promotion.semi_sync is False  # writable at once: no slave follows it yet
    repointed = requests[calls.index(("set_up_replica_slave", 2))]
    assert isinstance(repointed, SlaveRequest)
    assert (repointed.master_host, repointed.gtid_position) == ("10.0.0.3", None)
    messages = [entry.message for entry in world.store.history(limit=50)]
    fenced = messages.index("failover: node 1 fenced (mysqld stopped by its agent)")
    promoted = next(i for i, m in enumerate(messages)
                    if m.startswith("failover: node 3 is the master (was node 1"))
    assert fenced < promoted
    assert world.replication.last_failover is not None
    assert world.replication.last_failover["to"] == 3
    assert world.store.service_state()[0] is not ServiceState.ADAPTING


def test_a_failover_that_finds_no_candidate_after_draining_fails_and_says_so(
        tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.SLAVE):
        world.add(role)
    world.agents.replies["drain_relay_log"] = drained({})

    async def run() -> list[Outcome]:
        await world.replication.reconcile(world.snapshot(quiet((Role.MASTER, Role.SLAVE))))
        world.agents.calls.clear()
        return await world.replication.reconcile(world.snapshot(
            {1: report(restarts=1), 2: report(slave=slave())}))

    [outcome] = world.run(run())
    assert outcome.action is Act.FAILED
    assert outcome.message.startswith("master's mysqld crashed: failed: ")
    assert world.agents.verbs() == [("fence", 1), ("drain_relay_log", 2)]
    assert world.roles() == {1: Role.MASTER, 2: Role.SLAVE}  # no promotion


def test_a_second_new_node_waits_for_the_first_copy(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.NONE, Role.NONE):
        world.add(role)
    world.agents.hold["seed_from"] = asyncio.Event()

    async def run() -> list[Outcome]:
        outcomes = await world.replication.reconcile(world.snapshot(
            {1: report(), 2: report("0-2-1"), 3: report("0-3-1")}))
        world.agents.hold["seed_from"].set()
        await world.settle()
        return outcomes

    outcomes = world.run(run())
    assert [(o.node, o.action) for o in outcomes] == [(2, Act.SEED), (3, Act.HOLD)]
    assert outcomes[1].message == "node 3: held: one copy at a time (node 2 is being copied)"
