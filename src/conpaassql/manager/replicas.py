"""The nodes as the topology diagnosis sees them: each one's latest probe made a
``Replica``, and why a new service's first election waits."""

from __future__ import annotations

from collections.abc import Sequence

from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.domain.topology import Replica
from conpaassql.manager.cycle import Snapshot
from conpaassql.protocol.report import StateReport

FIRST_MASTER_GRACE = 8.0  # seconds a new service's election waits for a lower node id


def _position(text: str | None) -> GtidPosition:
    try:
        return GtidPosition.parse(text)
    except ValueError:
        return GtidPosition()


def replica_of(node: Node, report: StateReport | None, failures: int,
               crashed: bool, busy: bool) -> Replica:
    """What one node's latest probe says, as the topology diagnosis wants it."""
    if report is None:
        return Replica(node.id, node.state, node.role, reachable=False, answering=False,
                       failures=failures, ip=node.ip, busy=busy)
    status = report.replication
    slave = report.slave
    return Replica(
        id=node.id, state=node.state, role=node.role, reachable=True,
        answering=report.mysqld_answering, failures=failures,
        read_only=status.read_only if status is not None else None,
        position=_position(status.gtid_current_pos if status is not None else None),
        received=_position(slave.gtid_io_pos) if slave else None,
        master_host=slave.master_host if slave else None,
        io_running=slave.io_running if slave else None,
        sql_running=slave.sql_running if slave else None,
        io_errno=(slave.last_io_errno or 0) if slave else 0,
        sql_errno=(slave.last_sql_errno or 0) if slave else 0,
        seconds_behind=slave.seconds_behind_master if slave else None,
        crashed=crashed,
        mysqld_stopped=report.state == "STOPPED",
        ip=node.ip, busy=busy,
    )


def first_master_wait(snapshot: Snapshot, healthy: Sequence[Replica]) -> str | None:
    """Why a new service's first election waits, if it does: the first master is the
    lowest-numbered node (node 1 of ``add_nodes 3``, whatever boots first), so it
    waits, up to ``FIRST_MASTER_GRACE`` seconds after a node is ready, for a node with
    a lower id that is not ready yet (and has not failed)."""
    if not healthy:
        return None
    lowest = min(r.id for r in healthy)
    # A lower node not healthy yet: asked of its cloud, booting, or running but not
    # seen answering by this cycle's probe (its heartbeat moved it).
    booting = [n for n in snapshot.live if n.id < lowest and n.state is not NodeState.FAILED]
    if not booting:
        return None
    ready_since = min(node.state_since for r in healthy
                      if (node := snapshot.node(r.id)) is not None)
    if snapshot.at - ready_since >= FIRST_MASTER_GRACE:
        return None
    return (f"the first master is the lowest-numbered node: waiting up to "
            f"{FIRST_MASTER_GRACE:.0f} s for node {booting[0].id} to be ready")
