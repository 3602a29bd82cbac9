"""Keeps one master and its slaves replicating: election, repointing, failover.

The reconcile loop hands over each cycle's snapshot; ``Replication.reconcile``
turns it into ``Replica`` views, diagnoses the topology (domain.topology) and runs
each finding's handler (``TOPOLOGY_ACTIONS``). Copying the master to a new slave
runs in the background (``manager.seeding``); topology changes run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

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
from conpaassql.manager import events, restore_from
from conpaassql.manager.cycle import Act, Outcome, Snapshot
from conpaassql.manager.leases import Leases
from conpaassql.manager.replicas import first_master_wait, replica_of
from conpaassql.manager.seeding import Seeder
from conpaassql.manager.service import NodeService
from conpaassql.protocol.agent import (
    DrainRequest,
    MasterRequest,
    ReadOnlyRequest,
    RelayLogDrained,
    ReplicaHostsRequest,
    SlaveRequest,
    SourceRequest,
    WaitRequest,
)
from conpaassql.protocol.report import MysqldStatus, ReplicationStatus, StateReport

log = logging.getLogger(__name__)

APPLY_TIMEOUT = 30.0  # seconds a candidate may take to apply what it received


class Replication:
    """The manager's side of replication for one service."""

    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self.topology_lock = asyncio.Lock()
        self._restarts: dict[int, int] = {}  # mysqld restarts last acknowledged per node
        self.seeder = Seeder(nodes, self.topology_lock, self._point_at_master)
        self._pushed_hosts: list[str] | None = None  # the master's replication hosts
        #: Whether semi-sync is on, as this manager last set it, per master; a commit
        #: waits for a slave's acknowledgement only once a slave follows.
        self._semi_sync: dict[int, bool] = {}
        self.last_failover: dict[str, Any] | None = None
        self.leases = Leases(self.rt.config.lease)

    # -- observing --------------------------------------------------------

    def replicas(self, snapshot: Snapshot) -> list[Replica]:
        """Each live node as this cycle's probes show it (a node first seen now has
        not crashed: its restarts are acknowledged after the cycle)."""
        views = []
        for node in snapshot.live:
            report = snapshot.probes.get(node.id)
            crashed = False
            if report is not None:
                restarts = report.mysqld.restarts
                crashed = restarts > self._restarts.get(node.id, restarts)
            view = replica_of(node, report, snapshot.failures.get(node.id, 0), crashed,
                              node.id in snapshot.seeding)
            views.append(replace(view, silent=snapshot.silent.get(node.id, 0)))
        return views

    def _acknowledge_restarts(self, snapshot: Snapshot) -> None:
        for node_id, report in snapshot.probes.items():
            if report is not None:
                self._restarts[node_id] = report.mysqld.restarts

    # -- the cycle --------------------------------------------------------

    async def reconcile(self, snapshot: Snapshot) -> list[Outcome]:
        """Diagnose the topology from the cycle's snapshot and run each finding's
        handler; what came of each."""
        if self.topology_lock.locked():
            return [Outcome.held(None, None, "a topology change is in progress")]
        replicas = self.replicas(snapshot)
        findings = diagnose(replicas, self.rt.config.failure_threshold)
        outcomes = []
        async with self.topology_lock:
            for finding in findings:
                outcomes.append(await self._act(finding, snapshot, replicas))
        self._acknowledge_restarts(snapshot)
        return outcomes

    async def _act(self, finding: Finding, snapshot: Snapshot,
                   replicas: Sequence[Replica]) -> Outcome:
        situation = finding.situation
        try:
            return await TOPOLOGY_ACTIONS[situation](self, finding, snapshot, replicas)
        except ConpaasSQLError as exc:
            log.warning("%s: acting on %r failed: %s", situation.value, finding.node, exc)
            return Outcome(situation, finding.node, Act.FAILED,
                           f"{situation.value}: failed: {str(exc)[:200]}")

    # -- the handlers, one per situation ----------------------------------

    async def _sync_replica_hosts(self, finding: Finding, snapshot: Snapshot,
                                  replicas: Sequence[Replica]) -> Outcome:
        """Keep the replication account to the nodes there are: a node removed loses it
        (and its connections) on the master. With no slave left, semi-sync goes off
        first: the next commit would wait out the whole timeout for nobody."""
        healthy = Outcome.nothing(finding.situation, None)
        master = snapshot.master
        if master is None or master.state is not NodeState.RUNNING:
            return healthy
        if not snapshot.has_slaves and self._semi_sync.get(master.id) is not False:
            try:
                await self._make_master(master, semi_sync=False, hosts=snapshot.replica_hosts)
            except ConpaasSQLError as exc:
                log.warning("could not turn semi-sync off on the master: %s", exc)
                return healthy
            return Outcome(finding.situation, master.id, Act.SYNC_HOSTS,
                           f"node {master.id}: semi-sync off, no slave left")
        hosts = snapshot.replica_hosts
        if hosts == self._pushed_hosts:
            return healthy
        try:
            answer = await self.rt.agents.set_replica_hosts(master, ReplicaHostsRequest(
                replication_password=self.rt.secrets.replication_password,
                replica_hosts=hosts), timeout=30)
        except ConpaasSQLError as exc:
            log.warning("could not update the replication account's hosts: %s", exc)
            return healthy
        self._pushed_hosts = hosts
        removed = answer.removed
        if not removed:
            return healthy
        return Outcome(finding.situation, master.id, Act.SYNC_HOSTS,
                       f"replication account hosts dropped: {', '.join(removed)}")

    async def _hold_suspect(self, finding: Finding, snapshot: Snapshot,
                            replicas: Sequence[Replica]) -> Outcome:
        """Not failed yet: one missed probe is no reason to fence a master."""
        return Outcome.held(finding.situation, finding.node, (
            f"master not failed yet ({finding.detail or 'agent unreachable'}; "
            f"{self.rt.config.failure_threshold} failed probes make it so)"))

    async def _hold_hidden(self, finding: Finding, snapshot: Snapshot,
                           replicas: Sequence[Replica]) -> Outcome:
        """The manager lost the master, its slaves did not: the manager's link is the
        likelier fault, and a failover would fence a master that serves."""
        return Outcome.held(finding.situation, finding.node,
                            "the slaves still reach the master: no failover on the "
                            "manager's view alone")

    async def _make_writable(self, finding: Finding, snapshot: Snapshot,
                             replicas: Sequence[Replica]) -> Outcome:
        node = _node_of(finding, snapshot)
        await self._make_master(node, semi_sync=snapshot.has_slaves,
                                hosts=snapshot.replica_hosts)
        return Outcome(finding.situation, node.id, Act.MAKE_WRITABLE,
                       f"node {node.id}: master made writable again")

    async def _copy_master(self, finding: Finding, snapshot: Snapshot,
                           replicas: Sequence[Replica]) -> Outcome:
        node = _node_of(finding, snapshot)
        situation = finding.situation
        if not self.seeder.start(node.id, situation.value):
            copying = ", ".join(map(str, sorted(self.seeding)))
            return Outcome.held(situation, node.id,
                                f"one copy at a time (node {copying} is being copied)")
        return Outcome(situation, node.id, Act.SEED,
                       f"node {node.id}: {situation.value}: copying the master")

    async def _restart_slave(self, finding: Finding, snapshot: Snapshot,
                             replicas: Sequence[Replica]) -> Outcome:
        node = _node_of(finding, snapshot)
        await self.rt.agents.start_server(node, timeout=120)
        return Outcome(finding.situation, node.id, Act.RESTART,
                       f"node {node.id}: restarted read-only to rejoin as a slave")

    async def _repoint(self, finding: Finding, snapshot: Snapshot,
                       replicas: Sequence[Replica]) -> Outcome:
        node = _node_of(finding, snapshot)
        await self._point_at_master(node, None, snapshot.master)
        return Outcome(finding.situation, node.id, Act.REPOINT,
                       f"node {node.id}: now replicating from the master")

    # -- masters ----------------------------------------------------------

    def _has_slaves(self) -> bool:
        return self._now().has_slaves

    def _replica_hosts(self) -> list[str]:
        return self._now().replica_hosts

    def _now(self) -> Snapshot:
        """The nodes as the store has them now (outside a cycle, or after a change)."""
        return Snapshot(time.time(), tuple(self.rt.store.nodes()))

    async def _make_master(self, node: Node, *, semi_sync: bool,
                           hosts: list[str] | None = None) -> None:
        hosts = self._replica_hosts() if hosts is None else hosts
        self.leases.making_master(node.id)
        try:
            await self.rt.agents.set_up_replica_master(node, MasterRequest(
                replication_password=self.rt.secrets.replication_password,
                semi_sync=semi_sync and self.rt.config.semi_sync,
                semi_sync_timeout=self.rt.config.semi_sync_timeout,
                replica_hosts=hosts,
                lease=self.leases.seconds,
            ), timeout=30)
        finally:  # the agent holds a lease from when it took the call
            self.leases.note_grant(node.id)
        self._pushed_hosts = hosts
        self._semi_sync[node.id] = semi_sync and self.rt.config.semi_sync

    async def _elect(self, finding: Finding, snapshot: Snapshot,
                     replicas: Sequence[Replica]) -> Outcome:
        """No master: the slave that applied the most becomes it (after draining what it
        received); with no slave at all, the first healthy node (a new service).

        Not while a node is being removed: a removed master may still take writes
        until it is destroyed.
        """
        situation = finding.situation
        if restore_from.pending(self.rt):
            return Outcome.held(situation, None, "restore_from: the first node is the one "
                                "restored from the backup; no other is elected")
        leaving = snapshot.in_state(NodeState.TERMINATING)
        if leaving:
            return Outcome.held(situation, None, f"no election while node {leaving[0].id} "
                                "is being removed (it may still take writes)")
        healthy = [r for r in replicas
                   if r.healthy_server and not r.busy and r.role is not Role.RESTORED]
        slaves = [r for r in healthy if r.role is Role.SLAVE]
        if any(r.role is Role.SLAVE for r in replicas):
            candidates = await self._drain(slaves, snapshot) if slaves else []
        else:
            waiting = first_master_wait(snapshot, healthy)
            if waiting is not None:
                return Outcome.held(situation, None, waiting)
            candidates = [_as_slave(r) for r in healthy]
        node = snapshot.node(promotion_candidate(candidates))
        if node is None:
            return Outcome.held(situation, None, "no healthy node to elect")
        # Semi-sync once a slave follows it: before that, the first commit (the
        # replication account's) would wait out the timeout for nobody.
        await self._make_master(node, semi_sync=False, hosts=snapshot.replica_hosts)
        self.rt.store.update_node(node.id, role=Role.MASTER)
        self.rt.store.record_event(f"node {node.id} is the master", node.id)
        return Outcome(situation, node.id, Act.ELECT, f"node {node.id} elected master")

    async def _master_lost(self, finding: Finding, snapshot: Snapshot,
                           replicas: Sequence[Replica]) -> Outcome:
        dead = _node_of(finding, snapshot)
        if not self.rt.config.auto_failover:
            return Outcome.held(finding.situation, dead.id, "auto_failover is off")
        if promotion_candidate(replicas, exclude=dead.id) is None:
            # Nobody to take over: the agent restarts mysqld, writes resume.
            return Outcome.held(finding.situation, dead.id, "no healthy slave to promote")
        message = await self.failover(dead, finding.situation.value, replicas, snapshot)
        return Outcome(finding.situation, dead.id, Act.FAILOVER, message)

    async def failover(self, old: Node, reason: str, replicas: Sequence[Replica],
                       snapshot: Snapshot) -> str:
        """Fence the lost master, promote the slave that received the most, repoint the rest.

        A master fenced by the cloud (its agent unreachable) may still hold its lease:
        the new master takes writes only once that surely ran out. A failover that
        aborts before another node is made the master gives the old one its lease back."""
        started = time.monotonic()
        dead_id = old.id
        if promotion_candidate(replicas, exclude=dead_id) is None:
            raise WrongStateError(detail="no slave could take over")
        self.rt.store.set_service_state(ServiceState.ADAPTING,
                                        f"failover: master node {dead_id} lost ({reason})")
        holder = self.leases.revoke(dead_id)
        try:
            candidate, by_agent, waited = await self._take_over(old, replicas, snapshot)
        except BaseException:
            self.leases.restore(dead_id, holder)
            raise
        candidate_id = candidate.id
        # Writable at once; semi-sync again once the other slaves follow it (before
        # that, a commit would wait for an acknowledgement nobody can send yet).
        await self._make_master(candidate, semi_sync=False, hosts=snapshot.replica_hosts)
        self.rt.store.update_node(old.id, role=Role.SLAVE)
        candidate = self.rt.store.update_node(candidate.id, role=Role.MASTER)
        elapsed = time.monotonic() - started
        self.last_failover = {"from": dead_id, "to": candidate_id, "reason": reason,
                              "seconds": round(elapsed, 3), "at": time.time()}
        self.rt.store.record_event(events.failover_done(candidate_id, dead_id, reason, elapsed),
                                   candidate_id)
        await self._repoint_all(snapshot.live, candidate, exclude={candidate_id, dead_id})
        self.nodes.refresh_service_state("failover done")
        lease = f" ({waited:.2f} s of it for node {dead_id}'s lease)" if not by_agent else ""
        return f"failover: node {dead_id} -> node {candidate_id} in {elapsed:.2f} s{lease}"

    async def _take_over(self, old: Node, replicas: Sequence[Replica],
                         snapshot: Snapshot) -> tuple[Node, bool, float]:
        """Fence ``old``, drain its slaves, wait out its lease if its agent did not fence
        it: the candidate, whether its agent fenced it, the seconds waited."""
        dead_id = old.id
        others = [r for r in replicas if r.id != dead_id]
        fencing, by_agent = await self._fence(
            old, [node.id for _, node in self._drainable(others, snapshot)])
        self.rt.store.record_event(f"failover: node {dead_id} fenced ({fencing})", dead_id)
        drained = await self._drain(others, snapshot)
        slaves_stopped = time.monotonic()
        candidate = snapshot.node(promotion_candidate(drained))
        if candidate is None:
            raise WrongStateError(detail="no slave could take over")
        waited = 0.0 if by_agent else await self._outlive_lease(
            old, {r.id for r in drained}, slaves_stopped, snapshot.live)
        return candidate, by_agent, waited

    async def _retire(self, old: Node) -> str:
        """The master changes without ``old``'s demotion confirmed: its lease revoked,
        itself fenced and, if its agent could not do it, its slaves stopped receiving
        and its lease waited out. What was done (the revoke is the caller's to undo)."""
        self.leases.revoke(old.id)
        nodes = self.nodes.live_nodes()
        slaves = [n for n in nodes if n.id != old.id and n.role is Role.SLAVE
                  and n.state is NodeState.RUNNING]
        fencing, by_agent = await self._fence(old, [n.id for n in slaves])
        if by_agent:
            return fencing
        answers = await asyncio.gather(
            *(self.rt.agents.drain_relay_log(node, DrainRequest(timeout=APPLY_TIMEOUT),
                                             timeout=APPLY_TIMEOUT + 10) for node in slaves),
            return_exceptions=True)
        stopped = {node.id for node, answer in zip(slaves, answers, strict=True)
                   if isinstance(answer, RelayLogDrained)}  # its IO thread stopped
        waited = await self._outlive_lease(old, stopped, time.monotonic(), nodes)
        return f"{fencing}; {waited:.2f} s waited for its lease"

    async def _outlive_lease(self, old: Node, ids: set[int],
                             slaves_stopped: float, nodes: Sequence[Node]) -> float:
        """Wait until the lost master's lease surely ran out (its agent did not fence
        it, and the cloud's reboot may not have happened yet); the seconds waited.
        ``ids``: the slaves stopped by ``slaves_stopped``."""
        stopped = await self.leases.ask([n for n in nodes if n.id in ids and n.ip],
                                        slaves_stopped)
        until = self.leases.ends_by(old, stopped, nodes)
        wait = max(0.0, until - time.monotonic())
        self.rt.store.record_event(f"failover: waiting {wait:.2f} s for node {old.id}'s "
                                   "lease to run out (its agent could not fence it)", old.id)
        await asyncio.sleep(wait)
        return wait

    @staticmethod
    def _drainable(replicas: Sequence[Replica],
                   snapshot: Snapshot) -> list[tuple[Replica, Node]]:
        return [(r, node) for r in replicas
                if r.role is Role.SLAVE and r.healthy_server and not r.busy and not r.broken
                and (node := snapshot.node(r.id)) is not None]

    async def _drain(self, replicas: Sequence[Replica], snapshot: Snapshot) -> list[Replica]:
        """Every healthy slave stops receiving and applies what it has; their views after."""
        slaves = self._drainable(replicas, snapshot)
        answers = await asyncio.gather(
            *(self.rt.agents.drain_relay_log(node, DrainRequest(timeout=APPLY_TIMEOUT),
                                             timeout=APPLY_TIMEOUT + 10)
              for _, node in slaves), return_exceptions=True)
        views = []
        for (replica, node), answer in zip(slaves, answers, strict=True):
            if not isinstance(answer, RelayLogDrained):
                log.warning("node %d could not drain its relay log: %s", replica.id, answer)
                continue
            if not answer.drained:
                # Promoting it would throw away what it received and has not applied.
                log.warning("node %d did not apply its relay log in time: not a candidate",
                            replica.id)
                continue
            view = replica_of(node, StateReport(mysqld=MysqldStatus(answering=True),
                                                replication=answer.replication),
                              0, False, False)
            views.append(replace(view, received=None))  # ranked by what it applied
        return views

    async def _fence(self, node: Node, draining: Sequence[int] = ()) -> tuple[str, bool]:
        """Make sure the old master takes no write: its agent stops mysqld, or the
        cloud powers the node off (and boots it again, read-only). Also whether its
        agent did it. Not through the cloud when its lease could not be waited out even
        if every slave ``draining`` stopped (refused before the node is touched)."""
        try:
            await self.rt.agents.fence(node, timeout=self.rt.config.probe_timeout + 3)
            return "mysqld stopped by its agent", True
        except ConpaasSQLError as exc:
            log.warning("node %d's agent cannot fence: %s; powering it off", node.id, exc)
        if node.cloud_ref is None:
            raise WrongStateError(detail=f"cannot fence node {node.id}: no cloud reference")
        self.leases.check_bounded(node, draining, self.rt.store.nodes(), did="cannot stop")
        await self.rt.clouds.get(node.cloud).reboot_node(node.cloud_ref)
        return "powered off and booted again by the cloud", False

    # -- slaves -----------------------------------------------------------

    async def _point_at_master(self, node: Node, gtid_position: str | None,
                               master: Node | None = None) -> None:
        """Make ``node`` replicate from ``master`` (the store's master if not given)."""
        master = master or self.nodes.master()
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

    async def _repoint_all(self, nodes: Sequence[Node], master: Node | None,
                           exclude: set[int]) -> None:
        """Point every running slave of ``nodes`` at ``master`` (the store's if None)."""
        for node in nodes:
            if node.id in exclude or node.role is not Role.SLAVE or \
                    node.state is not NodeState.RUNNING or node.id in self.seeding:
                continue
            try:
                await self._point_at_master(node, None, master)
            except ConpaasSQLError as exc:
                log.warning("repointing node %d failed: %s", node.id, exc)

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
                    or target.id in self.seeding:
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
                await self._roll_back(master, target)
                raise
            blocked = time.monotonic() - blocked_at
            self.rt.store.update_node(master.id, role=Role.SLAVE)
            self.rt.store.update_node(target.id, role=Role.MASTER)
            self.rt.store.record_event(events.switchover_done(target_id, master.id, blocked),
                                       target_id)
            await self._repoint_all(self.nodes.live_nodes(), None, exclude={target_id})
            self.nodes.refresh_service_state("switchover done")
            return {"master": target_id, "previous": master.id,
                    "write_block_seconds": round(blocked, 3), "position": position}

    async def _roll_back(self, master: Node, target: Node) -> None:
        """A switchover failed: the target may have become writable before the failure;
        make sure it is not (read-only, or else fenced and its lease waited out) before
        the old master takes writes again."""
        try:
            try:
                await self.rt.agents.set_read_only(target, ReadOnlyRequest(read_only=True),
                                                   timeout=10)
            except ConpaasSQLError as exc:
                log.warning("node %d not read-only again (%s): fencing it", target.id, exc)
                done = await self._retire(target)
                self.rt.store.record_event(
                    f"switchover: node {target.id} fenced ({done}), not read-only again",
                    target.id)
            await self._make_master(master, semi_sync=self._has_slaves())
        finally:
            self.nodes.refresh_service_state("switchover abandoned")

    async def promote_restored(self, target_id: int) -> dict[str, Any]:
        """Make the restored node ``target_id`` the master: the service rolled back to
        its backup. The old master goes read-only at once; it and every slave lose
        their role, and the controller copies the new master into each of them."""
        if self.topology_lock.locked():
            raise BusyError(detail="busy: a topology change is in progress")
        async with self.topology_lock:
            target = self.nodes.node(target_id)
            restore = target.details.get("restore") or {}
            if target.role is not Role.RESTORED or target.state is not NodeState.RUNNING \
                    or restore.get("state") != "done":
                raise WrongStateError(detail=f"node {target_id} is not a restored node "
                                      "holding its backup")
            master = self.nodes.master()
            self.rt.store.set_service_state(ServiceState.ADAPTING,
                                            f"rollback to the data of node {target_id}")
            if master is not None and master.state is NodeState.RUNNING:
                await self.rt.agents.set_read_only(master, ReadOnlyRequest(read_only=True),
                                                   timeout=10)
            elif master is not None:  # it may still take writes, cut off: as a failover
                holder = self.leases.holder
                try:
                    done = await self._retire(master)
                except BaseException:
                    self.leases.restore(master.id, holder)
                    raise
                self.rt.store.record_event(f"rollback: node {master.id} fenced ({done})",
                                           master.id)
            await self._make_master(target, semi_sync=False)
            others = [n for n in self.nodes.live_nodes()
                      if n.id != target_id and n.role in (Role.MASTER, Role.SLAVE)]
            for node in others:
                self.rt.store.update_node(node.id, role=Role.NONE)
            self.rt.store.update_node(target_id, role=Role.MASTER)
            self.rt.store.record_event(
                f"rollback: node {target_id} is the master, holding backup "
                f"{restore.get('backup')}; node(s) {', '.join(str(n.id) for n in others) or '-'}"
                " are copied from it anew", target_id)
            self.nodes.refresh_service_state("rollback done")
            return {"master": target_id, "previous": master.id if master else None,
                    "recopied": [n.id for n in others]}

    async def _status(self, node: Node) -> ReplicationStatus | None:
        return await self.rt.agents.get_replication_status(node, timeout=10)

    @property
    def seeding(self) -> frozenset[int]:
        return self.seeder.copying


def _as_slave(replica: Replica) -> Replica:
    """A view that ranks any healthy node as a promotion candidate."""
    return replace(replica, role=Role.SLAVE)


def _node_of(finding: Finding, snapshot: Snapshot) -> Node:
    node = snapshot.node(finding.node)
    if node is None:
        raise WrongStateError(detail=f"{finding.situation.value}: no node {finding.node}")
    return node


TopologyHandler = Callable[[Replication, Finding, Snapshot, Sequence[Replica]],
                           Awaitable[Outcome]]

#: What the manager does in each situation of the replication topology.
TOPOLOGY_ACTIONS: Mapping[Topology, TopologyHandler] = {
    Topology.HEALTHY: Replication._sync_replica_hosts,
    Topology.NO_MASTER: Replication._elect,
    Topology.MASTER_CRASHED: Replication._master_lost,
    Topology.MASTER_UNREACHABLE: Replication._master_lost,
    Topology.MASTER_HIDDEN: Replication._hold_hidden,
    Topology.MASTER_SUSPECT: Replication._hold_suspect,
    Topology.MASTER_READ_ONLY: Replication._make_writable,
    Topology.NEW_NODE: Replication._copy_master,
    Topology.SLAVE_BROKEN: Replication._copy_master,
    Topology.SLAVE_STOPPED: Replication._restart_slave,
    Topology.SLAVE_UNCONFIGURED: Replication._repoint,
}
