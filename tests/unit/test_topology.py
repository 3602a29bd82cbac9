"""GTID positions and the diagnosis of a replication topology (pure logic)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conpaassql.domain.gtid import GtidPosition, most_advanced
from conpaassql.domain.states import NodeState, Role
from conpaassql.domain.topology import (
    Replica,
    Topology,
    diagnose,
    promotion_candidate,
)


def pos(text: str) -> GtidPosition:
    return GtidPosition.parse(text)


# -- GTID positions -------------------------------------------------------------------


def test_parse_and_render() -> None:
    assert str(pos("1-3-9, 0-1-57")) == "0-1-57,1-3-9"
    assert pos("").last == ()
    assert pos("0-1-5").sequence(0) == 5
    assert pos("0-1-5").sequence(7) == 0


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "0-1-5,0-2-6", "-1-1-1"])
def test_parse_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        GtidPosition.parse(bad)


def test_contains_and_behind() -> None:
    assert pos("0-1-10").contains(pos("0-1-9"))
    assert pos("0-2-10").contains(pos("0-1-10"))  # the server id does not matter
    assert not pos("0-1-9").contains(pos("0-1-10"))
    assert not pos("0-1-10").contains(pos("0-1-10,1-4-1"))  # a domain it never saw
    assert pos("0-1-7").behind(pos("0-1-10,1-2-3")) == 6
    assert pos("0-1-12").behind(pos("0-1-10")) == 0


@given(st.dictionaries(st.integers(0, 5), st.integers(0, 10**6), max_size=4),
       st.dictionaries(st.integers(0, 5), st.integers(0, 10**6), max_size=4))
def test_contains_is_per_domain_order(a: dict[int, int], b: dict[int, int]) -> None:
    left = pos(",".join(f"{d}-1-{s}" for d, s in a.items()))
    right = pos(",".join(f"{d}-2-{s}" for d, s in b.items()))
    expected = all(a.get(d, 0) >= s for d, s in b.items())
    assert left.contains(right) is expected
    assert (left.behind(right) == 0) is expected
    assert left.contains(left)


def test_most_advanced() -> None:
    assert most_advanced({}) is None
    assert most_advanced({1: pos("0-1-5"), 2: pos("0-1-9"), 3: pos("0-1-7")}) == 2
    assert most_advanced({4: pos("0-1-9"), 2: pos("0-1-9")}) == 2  # ties: smallest id
    # No position holds all the others: the largest total wins.
    assert most_advanced({1: pos("0-1-5,1-1-9"), 2: pos("0-1-9,1-1-1")}) == 1


# -- the topology -----------------------------------------------------------------------


def node(node_id: int, role: Role, **changes: object) -> Replica:
    base = Replica(node_id, NodeState.RUNNING, role, reachable=True, answering=True,
                   read_only=role is not Role.MASTER, position=pos("0-1-10"),
                   ip=f"10.0.0.{node_id}")
    if role is Role.SLAVE:
        base = replace(base, master_host="10.0.0.1", io_running="Yes", sql_running="Yes",
                       received=pos("0-1-10"), seconds_behind=0)
    return replace(base, **changes)  # type: ignore[arg-type]


def situations(replicas: list[Replica], threshold: int = 3) -> list[tuple[Topology, int | None]]:
    return [(f.situation, f.node) for f in diagnose(replicas, threshold)]


def test_healthy_service() -> None:
    assert situations([node(1, Role.MASTER), node(2, Role.SLAVE), node(3, Role.SLAVE)]) == \
        [(Topology.HEALTHY, None)]


def test_first_node_is_elected() -> None:
    assert situations([node(1, Role.NONE)]) == [(Topology.NO_MASTER, None)]
    assert situations([node(1, Role.NONE, answering=False)]) == []


def test_new_node_attached_once_the_master_is_healthy() -> None:
    assert situations([node(1, Role.MASTER), node(2, Role.NONE)]) == \
        [(Topology.NEW_NODE, 2)]
    assert situations([node(1, Role.MASTER), node(2, Role.NONE, busy=True)]) == \
        [(Topology.HEALTHY, None)]


def test_a_restored_node_is_left_alone() -> None:
    """Never seeded, repointed nor elected, whatever it replicates or not."""
    restored = node(3, Role.RESTORED, position=pos("0-1-99"))
    assert situations([node(1, Role.MASTER), node(2, Role.SLAVE), restored]) == \
        [(Topology.HEALTHY, None)]
    assert situations([restored]) == []
    assert situations([node(1, Role.MASTER, reachable=False, failures=5), restored]) == \
        [(Topology.MASTER_UNREACHABLE, 1)]
    assert promotion_candidate([node(2, Role.SLAVE), restored]) == 2


def test_crashed_master_is_reported_before_anything_else() -> None:
    replicas = [node(1, Role.MASTER, crashed=True), node(2, Role.SLAVE), node(3, Role.NONE)]
    assert situations(replicas) == [(Topology.MASTER_CRASHED, 1)]
    # mysqld not answering (the agent is fine): only after the failure threshold.
    down = [node(1, Role.MASTER, answering=False, silent=2), node(2, Role.SLAVE)]
    assert situations(down) == [(Topology.MASTER_SUSPECT, 1)]
    down[0] = replace(down[0], silent=3)
    assert situations(down) == [(Topology.MASTER_CRASHED, 1)]


def test_unreachable_master_needs_the_slaves_to_agree() -> None:
    lost = node(1, Role.MASTER, reachable=False, answering=False, failures=3)
    cut = node(2, Role.SLAVE, io_running="Connecting")
    assert situations([lost, cut]) == [(Topology.MASTER_UNREACHABLE, 1)]
    # A slave still reads the master's binlog: only the manager is cut off.
    assert situations([lost, cut, node(3, Role.SLAVE)]) == [(Topology.MASTER_HIDDEN, 1)]
    # Not before the failure threshold.
    assert situations([replace(lost, failures=2), cut]) == [(Topology.MASTER_SUSPECT, 1)]


def test_read_only_master_is_made_writable() -> None:
    assert situations([node(1, Role.MASTER, read_only=True), node(2, Role.SLAVE)]) == \
        [(Topology.MASTER_READ_ONLY, 1)]


def test_slave_situations() -> None:
    master = node(1, Role.MASTER)
    assert situations([master, node(2, Role.SLAVE, master_host="10.0.0.9")]) == \
        [(Topology.SLAVE_UNCONFIGURED, 2)]
    assert situations([master, node(2, Role.SLAVE, io_running=None)]) == \
        [(Topology.SLAVE_UNCONFIGURED, 2)]
    assert situations([master, node(2, Role.SLAVE, io_running="No", sql_running="No")]) == \
        [(Topology.SLAVE_UNCONFIGURED, 2)]
    assert situations([master, node(2, Role.SLAVE, io_running="No")]) == \
        [(Topology.SLAVE_UNCONFIGURED, 2)]
    assert situations([master, node(2, Role.SLAVE, io_running="No", io_errno=1236)]) == \
        [(Topology.SLAVE_BROKEN, 2)]
    assert situations([master, node(2, Role.SLAVE, sql_running="No", sql_errno=1062)]) == \
        [(Topology.SLAVE_BROKEN, 2)]
    fenced = node(2, Role.SLAVE, state=NodeState.FAILED, answering=False, mysqld_stopped=True)
    assert situations([master, fenced]) == [(Topology.SLAVE_STOPPED, 2)]


def test_promotion_candidate_prefers_what_was_received() -> None:
    replicas = [
        node(1, Role.MASTER),
        node(2, Role.SLAVE, position=pos("0-1-8"), received=pos("0-1-12")),
        node(3, Role.SLAVE, position=pos("0-1-11"), received=pos("0-1-11")),
        node(4, Role.SLAVE, position=pos("0-1-20"), sql_running="No", sql_errno=1062),
        node(5, Role.SLAVE, position=pos("0-1-30"), answering=False),
    ]
    assert promotion_candidate(replicas, exclude=1) == 2
    assert promotion_candidate([replicas[0]], exclude=1) is None
