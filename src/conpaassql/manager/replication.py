"""Keeps one master and its slaves replicating: election, seeding, repointing, failover.

The reconcile loop hands over each cycle's probes; ``Replication.reconcile``
turns them into ``Replica`` views, diagnoses the topology (domain.topology) and
acts on each finding. Long work (copying the master to a new slave) runs in the
background, one per node; topology changes (promotion, failover, switchover)
run one at a time under a lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState
from conpaassql.domain.topology import (
    Finding,
    Replica,
    Topology,
    diagnose,
    promotion_candidate,
)
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.manager.service import NodeService
from conpaassql.protocol.agent import (
    CopyMethod,
    DrainRequest,
    MasterRequest,
    ReadOnlyRequest,
    RelayLogDrained,
    ReplicaHostsRequest,
    SeedRequest,
    SlaveRequest,
    SourceRequest,
    WaitRequest,
)
from conpaassql.protocol.report import MysqldStatus, ReplicationStatus, StateReport
from conpaassql.rpc.grants import make_grant

log = logging.getLogger(__name__)

APPLY_TIMEOUT = 30.0  # seconds a candidate may take to apply what it received
SEED_TIMEOUT = 3600.0


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


class Replication:
    """The manager's side of replication for one service."""

    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self.topology_lock = asyncio.Lock()
        self._restarts: dict[int, int] = {}  # mysqld restarts last seen per node
        self._silent: dict[int, int] = {}  # consecutive probes its mysqld did not answer
        self._seeding: set[int] = set()
        self._pushed_hosts: list[str] | None = None  # the master's replication hosts
        #: Whether semi-sync is on, as this manager last set it, per master; a commit
        #: waits for a slave's acknowledgement only once a slave follows.
        self._semi_sync: dict[int, bool] = {}
        self.last_failover: dict[str, Any] | None = None

    # -- observing --------------------------------------------------------

    def replicas(self, reports: Mapping[int, StateReport | None],
                 failures: Mapping[int, int]) -> list[Replica]:
        views = []
        for node in self.nodes.live_nodes():
            report = reports.get(node.id)
            crashed = False
            if report is not None:
                restarts = report.mysqld.restarts
                seen = self._restarts.setdefault(node.id, restarts)
                crashed = restarts > seen
                answering = report.mysqld_answering
                self._silent[node.id] = 0 if answering else self._silent.get(node.id, 0) + 1
            view = replica_of(node, report, failures.get(node.id, 0), crashed,
                              node.id in self._seeding)
            views.append(replace(view, silent=self._silent.get(node.id, 0)))
        return views

    def _acknowledge_restarts(self, reports: Mapping[int, StateReport | None]) -> None:
        for node_id, report in reports.items():
            if report is not None:
                self._restarts[node_id] = report.mysqld.restarts

    # -- the cycle --------------------------------------------------------

    async def reconcile(self, reports: Mapping[int, StateReport | None],
                        failures: Mapping[int, int]) -> list[str]:
        """Diagnose the topology from this cycle's probes and act; what was done."""
        if self.topology_lock.locked():
            return []
        replicas = self.replicas(reports, failures)
        findings = diagnose(replicas, self.rt.config.failure_threshold)
        done = []
        async with self.topology_lock:
            for finding in findings:
                outcome = await self._act(finding, replicas)
                if outcome:
                    done.append(outcome)
            if all(finding.situation is Topology.HEALTHY for finding in findings):
                outcome = await self._sync_replica_hosts()
                if outcome:
                    done.append(outcome)
        self._acknowledge_restarts(reports)
        return done

    async def _sync_replica_hosts(self) -> str | None:
        """Keep the replication account to the nodes there are: a node removed loses it
        (and its connections) on the master. With no slave left, semi-sync goes off
        first: the next commit would wait out the whole timeout for nobody."""
        master = self.nodes.master()
        if master is None or master.state is not NodeState.RUNNING:
            return None
        if not self._has_slaves() and self._semi_sync.get(master.id) is not False:
            try:
                await self._make_master(master, semi_sync=False)
            except ConpaasSQLError as exc:
                log.warning("could not turn semi-sync off on the master: %s", exc)
                return None
            return f"node {master.id}: semi-sync off, no slave left"
        hosts = self._replica_hosts()
        if hosts == self._pushed_hosts:
            return None
        try:
            answer = await self.rt.agents.set_replica_hosts(master, ReplicaHostsRequest(
                replication_password=self.rt.secrets.replication_password,
                replica_hosts=hosts), timeout=30)
        except ConpaasSQLError as exc:
            log.warning("could not update the replication account's hosts: %s", exc)
            return None
        self._pushed_hosts = hosts
        removed = answer.removed
        return f"replication account hosts dropped: {', '.join(removed)}" if removed else None

    async def _act(self, finding: Finding, replicas: list[Replica]) -> str | None:
        by_id = {r.id: r for r in replicas}
        node = by_id.get(finding.node) if finding.node is not None else None
        situation = finding.situation
        try:
            if situation is Topology.NO_MASTER:
                return await self._elect(replicas)
            if situation in (Topology.MASTER_CRASHED, Topology.MASTER_UNREACHABLE):
                assert node is not None
                return await self._master_lost(node, replicas, finding)
            if situation is Topology.MASTER_READ_ONLY:
                assert node is not None
                await self._make_master(self.nodes.node(node.id), semi_sync=self._has_slaves())
                return f"node {node.id}: master made writable again"
            if situation in (Topology.NEW_NODE, Topology.SLAVE_BROKEN):
                assert node is not None
                if self._start_seeding(node.id, situation.value):
                    return f"node {node.id}: {situation.value}: copying the master"
                return None
            if situation is Topology.SLAVE_STOPPED:
                assert node is not None
                await self.rt.agents.start_server(self.nodes.node(node.id), timeout=120)
                return f"node {node.id}: restarted read-only to rejoin as a slave"
            if situation is Topology.SLAVE_UNCONFIGURED:
                assert node is not None
                await self._point_at_master(self.nodes.node(node.id), None)
                return f"node {node.id}: now replicating from the master"
        except ConpaasSQLError as exc:
            log.warning("%s: acting on %r failed: %s", situation.value, finding.node, exc)
            return f"{situation.value}: failed: {str(exc)[:200]}"
        return None

    # -- masters ----------------------------------------------------------

    def _has_slaves(self) -> bool:
        return any(n.role is Role.SLAVE for n in self.nodes.live_nodes())

    def _replica_hosts(self) -> list[str]:
        """Where slaves connect from: every live node (any may be a slave), at its
        address and wherever it said its connections come from."""
        live = self.nodes.live_nodes()
        return sorted({n.ip for n in live if n.ip} |
                      {str(n.details["source_address"]) for n in live
                       if n.details.get("source_address")})

    async def _make_master(self, node: Node, *, semi_sync: bool) -> None:
        await self.rt.agents.set_up_replica_master(node, MasterRequest(
            replication_password=self.rt.secrets.replication_password,
            semi_sync=semi_sync and self.rt.config.semi_sync,
            semi_sync_timeout=self.rt.config.semi_sync_timeout,
            replica_hosts=self._replica_hosts(),
        ), timeout=30)
        self._pushed_hosts = self._replica_hosts()
        self._semi_sync[node.id] = semi_sync and self.rt.config.semi_sync

    async def _elect(self, replicas: list[Replica]) -> str | None:
        """No master: the slave that applied the most becomes it (after draining what it
        received); with no slave at all, the first healthy node (a new service).

        Not while a node is being removed: a removed master may still take writes
        until it is destroyed.
        """
        if any(n.state is NodeState.TERMINATING for n in self.rt.store.nodes()):
            return None
        healthy = [r for r in replicas if r.healthy_server and not r.busy]
        slaves = [r for r in healthy if r.role is Role.SLAVE]
        if any(r.role is Role.SLAVE for r in replicas):
            candidates = await self._drain(slaves) if slaves else []
        else:
            candidates = [_as_slave(r) for r in healthy]
        chosen = promotion_candidate(candidates)
        if chosen is None:
            return None
        node = self.nodes.node(chosen)
        # Semi-sync once a slave follows it: before that, the first commit (the
        # replication account's) would wait out the timeout for nobody.
        await self._make_master(node, semi_sync=False)
        self.rt.store.update_node(node.id, role=Role.MASTER)
        self.rt.store.record_event(f"node {node.id} is the master", node.id)
        return f"node {node.id} elected master"

    async def _master_lost(self, dead: Replica, replicas: list[Replica],
                           finding: Finding) -> str | None:
        if promotion_candidate(replicas, exclude=dead.id) is None or \
                not self.rt.config.auto_failover:
            return None  # nobody to take over: the agent restarts mysqld, writes resume
        return await self.failover(dead.id, finding.situation.value, replicas)

    async def failover(self, dead_id: int, reason: str, replicas: list[Replica]) -> str:
        """Fence the lost master, promote the slave that received the most, repoint the rest."""
        started = time.monotonic()
        old = self.nodes.node(dead_id)
        self.rt.store.set_service_state(ServiceState.ADAPTING,
                                        f"failover: master node {dead_id} lost ({reason})")
        fencing = await self._fence(old)
        self.rt.store.record_event(f"failover: node {dead_id} fenced ({fencing})", dead_id)
        drained = await self._drain([r for r in replicas if r.id != dead_id])
        candidate_id = promotion_candidate(drained)
        if candidate_id is None:
            raise WrongStateError(detail="no slave could take over")
        candidate = self.nodes.node(candidate_id)
        # Writable at once; semi-sync again once the other slaves follow it (before
        # that, a commit would wait for an acknowledgement nobody can send yet).
        await self._make_master(candidate, semi_sync=False)
        self.rt.store.update_node(old.id, role=Role.SLAVE)
        self.rt.store.update_node(candidate.id, role=Role.MASTER)
        elapsed = time.monotonic() - started
        self.last_failover = {"from": dead_id, "to": candidate_id, "reason": reason,
                              "seconds": round(elapsed, 3), "at": time.time()}
        self.rt.store.record_event(
            f"failover: node {candidate_id} is the master (was node {dead_id}: {reason}); "
            f"writes resumed after {elapsed:.2f} s", candidate_id)
        await self._repoint_all(exclude={candidate_id, dead_id})
        self.nodes.refresh_service_state("failover done")
        return f"failover: node {dead_id} -> node {candidate_id} in {elapsed:.2f} s"

    async def _drain(self, replicas: list[Replica]) -> list[Replica]:
        """Every healthy slave stops receiving and applies what it has; their views after."""
        slaves = [r for r in replicas
                  if r.role is Role.SLAVE and r.healthy_server and not r.busy and not r.broken]
        answers = await asyncio.gather(
            *(self.rt.agents.drain_relay_log(self.nodes.node(r.id),
                                             DrainRequest(timeout=APPLY_TIMEOUT),
                                             timeout=APPLY_TIMEOUT + 10)
              for r in slaves), return_exceptions=True)
        views = []
        for replica, answer in zip(slaves, answers, strict=True):
            if not isinstance(answer, RelayLogDrained):
                log.warning("node %d could not drain its relay log: %s", replica.id, answer)
                continue
            if not answer.drained:
                # Promoting it would throw away what it received and has not applied.
                log.warning("node %d did not apply its relay log in time: not a candidate",
                            replica.id)
                continue
            node = self.nodes.node(replica.id)
            view = replica_of(node, StateReport(mysqld=MysqldStatus(answering=True),
                                                replication=answer.replication),
                              0, False, False)
            views.append(replace(view, received=None))  # ranked by what it applied
        return views

    async def _fence(self, node: Node) -> str:
        """Make sure the old master takes no write: its agent stops mysqld, or the
        cloud powers the node off (and boots it again, read-only)."""
        try:
            await self.rt.agents.fence(node, timeout=self.rt.config.probe_timeout + 3)
            return "mysqld stopped by its agent"
        except ConpaasSQLError as exc:
            log.warning("node %d's agent cannot fence: %s; powering it off", node.id, exc)
        if node.cloud_ref is None:
            raise WrongStateError(detail=f"cannot fence node {node.id}: no cloud reference")
        await self.rt.clouds.get(node.cloud).reboot_node(node.cloud_ref)
        return "powered off and booted again by the cloud"

    # -- slaves -----------------------------------------------------------

    async def _point_at_master(self, node: Node, gtid_position: str | None) -> None:
        master = self.nodes.master()
        if master is None or master.ip is None:
            raise WrongStateError(detail="there is no master to replicate from")
        # The master's replication account must know the slave's address first: the
        # one its connections come from (a NAT or one host's loopback is not its own).
        answer = await self.rt.agents.source_address(node, SourceRequest(host=master.ip),
                                                     timeout=10)
        address = answer.address
        if address != node.details.get("source_address"):
            node = self.rt.store.update_node(
                node.id, details={**node.details, "source_address": address})
        await self.rt.agents.set_replica_hosts(master, ReplicaHostsRequest(
            replication_password=self.rt.secrets.replication_password,
            replica_hosts=self._replica_hosts()), timeout=30)
        self._pushed_hosts = self._replica_hosts()
        await self.rt.agents.set_up_replica_slave(node, SlaveRequest(
            master_host=master.ip, master_port=master.mysql_port,
            replication_password=self.rt.secrets.replication_password,
            semi_sync=self.rt.config.semi_sync, gtid_position=gtid_position,
        ), timeout=30)
        if node.role is not Role.SLAVE:
            self.rt.store.update_node(node.id, role=Role.SLAVE)
        if self.rt.config.semi_sync and not self._semi_sync.get(master.id):
            await self._make_master(master, semi_sync=True)  # a slave follows it now

    async def _repoint_all(self, exclude: set[int]) -> None:
        """Point every running slave at the current master."""
        for node in self.nodes.live_nodes():
            if node.id in exclude or node.role is not Role.SLAVE or \
                    node.state is not NodeState.RUNNING or node.id in self._seeding:
                continue
            try:
                await self._point_at_master(node, None)
            except ConpaasSQLError as exc:
                log.warning("repointing node %d failed: %s", node.id, exc)

    def _start_seeding(self, node_id: int, why: str) -> bool:
        """Copy the master into the node in the background; one copy at a time."""
        if self._seeding:
            return False
        self._seeding.add(node_id)
        self.nodes.spawn(self._seed(node_id, why), f"seed node {node_id}")
        return True

    async def _seed(self, node_id: int, why: str) -> None:
        """Copy the master into the node (physically, streamed agent to agent), then
        make it replicate from the copy's position."""
        try:
            master = self.nodes.master()
            node = self.nodes.node(node_id)
            if master is None or master.agent_url is None:
                raise WrongStateError(detail="no master to copy")
            self.rt.store.record_event(f"node {node_id}: {why}: copying node {master.id}",
                                       node_id)
            started = time.monotonic()
            answer = await self.rt.agents.seed_from(node, SeedRequest(
                source=master.agent_url, method=cast(CopyMethod, self.rt.config.seed_method),
                grant=make_grant(self.rt.authority.grant_key, master.id, node.id,
                                 node.ip or "")), timeout=SEED_TIMEOUT)
            async with self.topology_lock:
                current = self.nodes.master()
                if current is None or current.id != master.id:
                    raise WrongStateError(detail="the master changed during the copy")
                await self._point_at_master(node, answer.gtid_position)
            self.rt.store.record_event(
                f"node {node_id} is a slave of node {master.id} (copy of "
                f"{answer.bytes} bytes in {time.monotonic() - started:.1f} s, "
                f"{answer.method})",
                node_id)
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"node {node_id}: copying the master failed: "
                                       f"{str(exc)[:300]}", node_id)
            raise
        finally:
            self._seeding.discard(node_id)

    # -- planned changes (API) --------------------------------------------

    async def switchover(self, target_id: int) -> dict[str, Any]:
        """Make the healthy slave ``target_id`` the master without losing a transaction:
        the old master goes read-only, the target applies everything, then takes writes."""
        if self.topology_lock.locked():
            raise BusyError(detail="busy: a topology change is in progress")
        async with self.topology_lock:
            master = self.nodes.master()
            target = self.nodes.node(target_id)
            if master is None or master.state is not NodeState.RUNNING:
                raise WrongStateError(detail="there is no running master to switch from")
            if target.id == master.id:
                raise WrongStateError(detail=f"node {target_id} is the master already")
            if target.role is not Role.SLAVE or target.state is not NodeState.RUNNING \
                    or target.id in self._seeding:
                raise WrongStateError(detail=f"node {target_id} is not a healthy slave")
            status = await self._status(target)
            slave = status.slave if status is not None else None
            if slave is None or not slave.replicating:
                raise WrongStateError(detail=f"node {target_id} is not replicating "
                                      f"(io {slave and slave.io_running}, "
                                      f"sql {slave and slave.sql_running})")
            self.rt.store.set_service_state(ServiceState.ADAPTING,
                                            f"switchover to node {target_id}")
            blocked_at = time.monotonic()
            await self.rt.agents.set_read_only(master, ReadOnlyRequest(read_only=True),
                                               timeout=10)
            try:
                master_status = await self._status(master)
                position = master_status.gtid_current_pos if master_status is not None else ""
                answer = await self.rt.agents.wait_for_gtid(target, WaitRequest(
                    gtid_position=position or "0-0-0", timeout=APPLY_TIMEOUT),
                    timeout=APPLY_TIMEOUT + 10)
                if not answer.reached:
                    raise WrongStateError(detail=f"node {target_id} did not catch up with "
                                          f"{position} in {APPLY_TIMEOUT:.0f} s")
                await self._make_master(target, semi_sync=False)
            except ConpaasSQLError:
                # The target may have become writable before the failure: make sure it
                # is not before the old master takes writes again.
                await self.rt.agents.set_read_only(target, ReadOnlyRequest(read_only=True),
                                                   timeout=10)
                await self._make_master(master, semi_sync=self._has_slaves())
                self.nodes.refresh_service_state("switchover abandoned")
                raise
            blocked = time.monotonic() - blocked_at
            self.rt.store.update_node(master.id, role=Role.SLAVE)
            self.rt.store.update_node(target.id, role=Role.MASTER)
            self.rt.store.record_event(
                f"switchover: node {target_id} is the master (was node {master.id}); "
                f"writes blocked for {blocked:.3f} s", target_id)
            await self._repoint_all(exclude={target_id})
            self.nodes.refresh_service_state("switchover done")
            return {"master": target_id, "previous": master.id,
                    "write_block_seconds": round(blocked, 3), "position": position}

    def reseed(self, node_id: int) -> dict[str, Any]:
        """Make ``node_id`` a slave of the master from a fresh copy of it."""
        node = self.nodes.node(node_id)
        master = self.nodes.master()
        if master is not None and master.id == node_id:
            raise WrongStateError(detail=f"node {node_id} is the master: use "
                                  "set_up_replica_master on another node first")
        if node.state is not NodeState.RUNNING:
            raise WrongStateError(detail=f"node {node_id} is {node.state}, not RUNNING")
        if self._seeding:
            raise BusyError(detail=f"busy: node {', '.join(map(str, self._seeding))} is "
                            "being copied")
        self._start_seeding(node_id, "asked to become a slave")
        return {"serviceNode": node_id, "state": "copying the master"}

    async def _status(self, node: Node) -> ReplicationStatus | None:
        return await self.rt.agents.get_replication_status(node, timeout=10)

    @property
    def seeding(self) -> frozenset[int]:
        return frozenset(self._seeding)


def _as_slave(replica: Replica) -> Replica:
    """A view that ranks any healthy node as a promotion candidate."""
    return replace(replica, role=Role.SLAVE)
