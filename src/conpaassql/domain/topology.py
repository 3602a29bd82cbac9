"""Diagnose the replication topology into named situations, each with the node to act on.

The manager builds one ``Replica`` per live node from its latest probe, then
``diagnose`` names what is wrong, most urgent first: a dead master before a
read-only one, a master question before any slave's. Pure logic: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from conpaassql.domain.gtid import GtidPosition, most_advanced
from conpaassql.domain.states import NodeState, Role

#: Replication errors after which a slave cannot go on and is copied anew:
#: 1236 the master lacks the slave's position (errant or purged GTIDs),
#: 1950 an out-of-order GTID in strict mode.
FATAL_IO_ERRORS = frozenset({1236, 1950})


class Topology(StrEnum):
    HEALTHY = "healthy"
    NO_MASTER = "no master"
    MASTER_CRASHED = "master's mysqld crashed"
    MASTER_UNREACHABLE = "master unreachable and its slaves lost it"
    MASTER_HIDDEN = "master unreachable from the manager only"
    MASTER_SUSPECT = "master not answering (not failed yet)"
    MASTER_READ_ONLY = "master is read-only"
    NEW_NODE = "new node to attach as a slave"
    SLAVE_STOPPED = "fenced node to restart as a slave"
    SLAVE_UNCONFIGURED = "slave not replicating from the master"
    SLAVE_BROKEN = "slave's replication broke"


@dataclass(frozen=True)
class Replica:
    """What the manager last saw of one node."""

    id: int
    state: NodeState
    role: Role
    reachable: bool  # its agent answered the latest probe
    answering: bool  # its mysqld answered
    failures: int = 0  # consecutive failed probes
    silent: int = 0  # consecutive probes its mysqld did not answer (agent reachable)
    read_only: bool | None = None
    position: GtidPosition = field(default_factory=GtidPosition)
    received: GtidPosition | None = None  # a slave's Gtid_IO_Pos
    master_host: str | None = None
    io_running: str | None = None  # "Yes", "No", "Connecting"; None: not a slave
    sql_running: str | None = None
    io_errno: int = 0
    sql_errno: int = 0
    seconds_behind: int | None = None
    crashed: bool = False  # mysqld died since the manager last looked
    mysqld_stopped: bool = False  # the agent keeps mysqld stopped (fenced)
    ip: str | None = None
    busy: bool = False  # a long action (seeding) is running on it

    @property
    def healthy_server(self) -> bool:
        return self.state is NodeState.RUNNING and self.reachable and self.answering

    @property
    def broken(self) -> bool:
        return (self.sql_running == "No" and self.sql_errno != 0) or \
            self.io_errno in FATAL_IO_ERRORS

    def lost_master(self) -> bool:
        """This slave's IO thread is not connected to its master."""
        return self.io_running != "Yes"


@dataclass(frozen=True)
class Finding:
    situation: Topology
    node: int | None = None
    detail: str = ""


def diagnose(replicas: Sequence[Replica], failure_threshold: int) -> list[Finding]:
    """Name every situation needing action, master first; ``[HEALTHY]`` if none."""
    # A node restored from a backup stands apart: nothing here concerns it.
    live = [r for r in replicas if r.state.is_live and r.role is not Role.RESTORED]
    masters = [r for r in live if r.role is Role.MASTER]
    if not masters:
        return [Finding(Topology.NO_MASTER)] if any(r.healthy_server for r in live) else []
    master = masters[0]
    findings = _master_findings(master, live, failure_threshold)
    if findings:
        return findings
    for replica in live:
        if replica.id == master.id or replica.busy:
            continue
        finding = _slave_finding(replica, master)
        if finding is not None:
            findings.append(finding)
    return findings or [Finding(Topology.HEALTHY)]


def _master_findings(master: Replica, live: Sequence[Replica],
                     failure_threshold: int) -> list[Finding]:
    slaves = [r for r in live if r.role is Role.SLAVE and r.reachable and r.answering]
    if master.reachable and master.crashed:
        return [Finding(Topology.MASTER_CRASHED, master.id)]
    if master.reachable and not master.answering and not master.mysqld_stopped:
        if master.silent < failure_threshold:
            return [Finding(Topology.MASTER_SUSPECT, master.id, "mysqld not answering")]
        return [Finding(Topology.MASTER_CRASHED, master.id, "mysqld not answering")]
    if master.reachable and master.mysqld_stopped:
        return [Finding(Topology.MASTER_CRASHED, master.id, "mysqld stopped")]
    if not master.reachable:
        if master.failures < failure_threshold:
            return [Finding(Topology.MASTER_SUSPECT, master.id)]
        if slaves and all(s.lost_master() for s in slaves):
            return [Finding(Topology.MASTER_UNREACHABLE, master.id)]
        if not slaves:
            return [Finding(Topology.MASTER_UNREACHABLE, master.id, "no slave to ask")]
        return [Finding(Topology.MASTER_HIDDEN, master.id)]
    if master.answering and master.read_only:
        return [Finding(Topology.MASTER_READ_ONLY, master.id)]
    return []


def _slave_finding(replica: Replica, master: Replica) -> Finding | None:
    if replica.state is not NodeState.RUNNING and not (
            replica.state is NodeState.FAILED and replica.reachable):
        return None
    if replica.role is Role.NONE:
        if replica.healthy_server and master.healthy_server:
            return Finding(Topology.NEW_NODE, replica.id)
        return None
    if not replica.reachable:
        return None
    if replica.mysqld_stopped:
        return Finding(Topology.SLAVE_STOPPED, replica.id)
    if not replica.answering or not master.healthy_server:
        return None
    if replica.broken:
        return Finding(Topology.SLAVE_BROKEN, replica.id,
                       f"io errno {replica.io_errno}, sql errno {replica.sql_errno}")
    idle = replica.io_running == "No"  # stopped (e.g. drained for a failover that failed)
    if replica.io_running is None or replica.master_host != master.ip or idle:
        return Finding(Topology.SLAVE_UNCONFIGURED, replica.id)
    return None


def promotion_candidate(replicas: Sequence[Replica], exclude: int | None = None) -> int | None:
    """The healthy slave holding the most transactions (received, else applied)."""
    positions = {
        r.id: r.received if r.received is not None and r.received.last else r.position
        for r in replicas
        if r.role is Role.SLAVE and r.healthy_server and not r.broken and r.id != exclude
        and not r.busy
    }
    return most_advanced(positions)
