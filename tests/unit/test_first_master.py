"""A new service's first master, and writes that arrive while it is being chosen."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from conpaassql.domain.states import NodeState, Role
from conpaassql.domain.topology import Topology
from conpaassql.manager.cycle import Act, Snapshot, frozen
from conpaassql.manager.replicas import FIRST_MASTER_GRACE
from conpaassql.protocol.report import StateReport
from tests.unit.ha_world import World, make_world, report


def snapshot_at(world: World, at: float, unprobed: tuple[int, ...] = ()) -> Snapshot:
    probes = {node.id: StateReport.model_validate(report("0-0-0"))
              for node in world.store.nodes()
              if node.state is NodeState.RUNNING and node.id not in unprobed}
    return Snapshot(at=at, nodes=tuple(world.store.nodes(include_terminated=True)),
                    probes=frozen(probes), failures=frozen(None), silent=frozen(None),
                    seeding=world.replication.seeding)


def test_the_first_master_waits_for_a_lower_node_still_booting(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.NONE, NodeState.BOOTING)
    world.add(Role.NONE)
    outcomes = world.run(world.replication.reconcile(snapshot_at(world, time.time())))
    assert [(o.situation, o.action) for o in outcomes] == [(Topology.NO_MASTER, Act.HOLD)]
    assert "waiting up to" in outcomes[0].message and "node 1" in outcomes[0].message
    assert world.agents.verbs() == []
    assert Role.MASTER not in world.roles().values()


def test_it_waits_too_for_a_lower_node_running_but_not_probed_yet(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.NONE)  # its heartbeat moved it; this cycle's probe did not see it
    world.add(Role.NONE)
    outcomes = world.run(world.replication.reconcile(
        snapshot_at(world, time.time(), unprobed=(1,))))
    assert [o.action for o in outcomes] == [Act.HOLD]
    assert Role.MASTER not in world.roles().values()


def test_past_the_grace_the_first_ready_node_is_elected(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.NONE, NodeState.BOOTING)
    world.add(Role.NONE)
    later = time.time() + FIRST_MASTER_GRACE + 1
    outcomes = world.run(world.replication.reconcile(snapshot_at(world, later)))
    assert [(o.situation, o.action) for o in outcomes] == [(Topology.NO_MASTER, Act.ELECT)]
    assert world.agents.verbs() == [("set_up_replica_master", 2)]
    assert world.roles()[2] is Role.MASTER


def test_the_lowest_ready_node_is_the_first_master(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for _ in range(3):
        world.add(Role.NONE)
    world.run(world.replication.reconcile(snapshot_at(world, time.time())))
    assert world.roles() == {1: Role.MASTER, 2: Role.NONE, 3: Role.NONE}


def test_a_write_waits_for_the_election_and_wakes_the_loop(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    node = world.add(Role.NONE)
    assert world.nodes.master_due()

    async def elect_soon() -> None:
        await asyncio.sleep(0.2)
        world.store.update_node(node.id, role=Role.MASTER)

    async def write() -> bool:
        election = asyncio.create_task(elect_soon())
        await world.nodes.await_master(timeout=30)
        await election
        return world.reconciler.due

    assert world.run(write()) is True  # the loop was asked for a cycle
    assert world.nodes.master() is not None and not world.nodes.master_due()


def test_no_wait_without_a_node_or_once_shut_down(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    assert not world.nodes.master_due()
    world.add(Role.NONE, NodeState.FAILED)
    assert not world.nodes.master_due()  # nothing on its way
    world.add(Role.NONE)

    async def shut_down() -> bool:
        world.nodes.shutdown()
        return world.nodes.master_due()

    assert world.run(shut_down()) is False


def test_a_write_gives_up_after_its_wait(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.NONE)
    world.run(world.nodes.await_master(timeout=0.2))
    assert world.nodes.master_due()  # still none: the caller refuses the write
