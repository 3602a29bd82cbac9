"""The reconcile loop's decisions on node states, whole cycles at a time, and its
handlers' split: heartbeats and ``get_node_info`` record and wake the loop, the loop
moves states (``ha_world``: the real store, typed client and loop, a fake transport).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conpaassql.domain.diagnosis import Situation
from conpaassql.domain.states import NodeState, Role
from conpaassql.manager.api import ManagerApi, RegisterParams
from conpaassql.manager.cycle import Act, CycleResult
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.registry import CallContext
from tests.unit.ha_world import Reply, drained, make_world, report, slave, unreachable

# -- the node states, whole cycles ------------------------------------------------


@dataclass(frozen=True)
class NodeCase:
    name: str
    state: NodeState
    probes: list[Reply]  # one get_server_state answer per cycle (an error: no answer)
    moves: list[NodeState]  # its state after each cycle
    situation: Situation  # the last cycle's
    action: Act  # the last cycle's


NODE_CASES = [
    NodeCase("booting, mysqld answers: RUNNING", NodeState.BOOTING, [report()],
             [NodeState.RUNNING], Situation.READY, Act.MOVE),
    NodeCase("booting, no agent yet: waits", NodeState.BOOTING, [unreachable],
             [NodeState.BOOTING], Situation.WAITING_FOR_AGENT, Act.NONE),
    NodeCase("running, mysqld down: FAILED", NodeState.RUNNING, [report(answering=False)],
             [NodeState.FAILED], Situation.MYSQLD_DOWN, Act.MOVE),
    NodeCase("running, agent unreachable: FAILED at the third failed probe",
             NodeState.RUNNING, [unreachable] * 3,
             [NodeState.RUNNING, NodeState.RUNNING, NodeState.FAILED], Situation.AGENT_LOST,
             Act.MOVE),
    NodeCase("running, one failed probe: still healthy", NodeState.RUNNING, [unreachable],
             [NodeState.RUNNING], Situation.HEALTHY, Act.NONE),
    NodeCase("failed, mysqld answers again: RUNNING", NodeState.FAILED, [report()],
             [NodeState.RUNNING], Situation.RECOVERED, Act.MOVE),
    NodeCase("failed, still down: stays", NodeState.FAILED, [report(answering=False)],
             [NodeState.FAILED], Situation.STILL_FAILED, Act.NONE),
]


@pytest.mark.parametrize("case", NODE_CASES, ids=[case.name for case in NODE_CASES])
def test_node_state_decision(tmp_path: Path, case: NodeCase) -> None:
    world = make_world(tmp_path)
    node = world.add(Role.NONE, case.state)
    seen = []

    async def run() -> CycleResult:
        result = None
        for answer in case.probes:
            world.agents.states[node.id] = answer
            result = await world.reconciler.cycle()
            seen.append(world.store.get_node(node.id).state)  # type: ignore[union-attr]
        assert result is not None
        return result

    result = world.run(run())
    assert seen == case.moves
    [outcome] = [o for o in result.outcomes if isinstance(o.situation, Situation)]
    assert (outcome.situation, outcome.action) == (case.situation, case.action)


def test_a_node_found_ready_is_given_its_role_in_the_same_cycle(tmp_path: Path) -> None:
    """Found ready by the probe before its heartbeat came: it has run all the same (were
    its cloud to lose it, it would be replaced)."""
    world = make_world(tmp_path)
    node = world.add(Role.NONE, NodeState.BOOTING, registered=None)
    world.agents.states[node.id] = report()
    result = world.run(world.reconciler.cycle())
    assert world.agents.calls == [("get_server_state", 1), ("set_up_replica_master", 1)]
    assert world.roles() == {1: Role.MASTER}
    assert world.nodes.node(1).registered_at is not None
    assert result.line == ("RUNNING: node 1: agent registered and mysqld answering -> "
                           "RUNNING; node 1 elected master (1 running)")


def test_a_heartbeat_moves_no_state_and_the_next_cycle_does(tmp_path: Path) -> None:
    """An agent the manager cannot reach yet told it is up: recorded, the loop woken,
    and the node moved by the loop (from what it told) rather than by its call."""
    world = make_world(tmp_path)
    node = world.add(Role.NONE, NodeState.BOOTING)
    world.agents.states[node.id] = unreachable
    world.reconciler.note_report(node, StateReport.model_validate(report()))
    assert world.reconciler.due
    assert world.store.get_node(node.id) == node
    world.run(world.reconciler.cycle())
    assert world.store.get_node(node.id).state is NodeState.RUNNING  # type: ignore[union-attr]
    assert world.roles() == {1: Role.NONE}  # its role waits for a probe that answers


def test_a_heartbeat_that_says_nothing_new_does_not_wake_the_loop(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    node = world.add(Role.MASTER)
    world.reconciler.note_report(node, StateReport.model_validate(report()))
    assert not world.reconciler.due
    world.reconciler.note_report(node, StateReport.model_validate(
        {**report(), "event": "mysqld restarted"}))
    assert world.reconciler.due


def test_a_node_being_copied_is_not_failed_for_its_stopped_mysqld(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.MASTER)
    world.add(Role.NONE)
    world.agents.states = {1: report(), 2: report("0-2-1")}
    world.agents.hold["seed_from"] = asyncio.Event()

    async def run() -> CycleResult:
        await world.reconciler.cycle()  # starts the copy into node 2
        world.agents.states[2] = report(answering=False)
        result = await world.reconciler.cycle()
        world.agents.hold["seed_from"].set()
        await world.settle()
        return result

    result = world.run(run())
    assert world.store.get_node(2).state is NodeState.RUNNING  # type: ignore[union-attr]
    assert "node 2: held: its mysqld is stopped while the master's copy goes in" in \
        result.log_line
    assert "node 2" not in result.line  # neither failed nor acted on


# -- handlers record, the loop acts -----------------------------------------------


def test_a_heartbeat_is_answered_in_the_middle_of_a_failover(tmp_path: Path) -> None:
    """The cycle waits on the old master's fence; an agent's heartbeat is answered at
    once, changes no state, and wakes the loop when it is news."""
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.SLAVE, Role.NONE):
        world.add(role, NodeState.RUNNING)
    world.store.move_node(3, NodeState.FAILED, "set up by the test")
    world.agents.states = {1: report(), 2: report(slave=slave()), 3: report(answering=False)}
    world.agents.replies["drain_relay_log"] = drained({2: "0-1-10"})
    world.agents.hold["fence"] = asyncio.Event()
    world.agents.started["fence"] = asyncio.Event()
    api = ManagerApi(world.nodes, world.reconciler, world.replication, tmp_path / "log")
    heartbeat = {"service_id": world.store.service_id, "node_id": 3, "ip": "10.0.0.3",
                 **report()}

    async def run() -> tuple[dict[str, Any], NodeState, bool]:
        await world.reconciler.cycle()
        world.agents.states[1] = report(restarts=1)
        cycle = asyncio.create_task(world.reconciler.cycle())
        await world.agents.started["fence"].wait()
        assert not world.reconciler.due
        answer = await api.register_node(RegisterParams(state=heartbeat),
                                         CallContext("register_node", principal="node-3"))
        state = world.store.get_node(3).state  # type: ignore[union-attr]
        woken = world.reconciler.due
        assert not cycle.done()  # the failover is still waiting on the fence
        world.agents.hold["fence"].set()
        await cycle
        return answer, state, woken

    answer, state_during, woken = world.run(run())
    assert answer == {"result": "OK", "lease": 0}  # not the master: no lease
    assert state_during is NodeState.FAILED  # the loop moves it, not the heartbeat
    assert woken
    assert world.reconciler.reports[3].mysqld_answering
    assert world.roles()[2] is Role.MASTER
