"""The reconcile loop: observe every node, diagnose, act, and say what happened.

Each cycle probes the agents in parallel (each with a timeout), takes the clouds'
latest lists of nodes (``cloud_watch``), diagnoses each node into a named situation,
moves nodes whose situation calls for it, and returns a one-line result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from conpaassql.cloud.base import CloudNode
from conpaassql.domain.diagnosis import TARGET, Observation, Situation, Thresholds, diagnose
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import ConpaasSQLError, IllegalMoveError
from conpaassql.manager.cloud_watch import CloudView, CloudWatch, in_cloud_since
from conpaassql.manager.configuration import ServiceConfiguration
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.protocol.report import StateReport, mysqld_answering

log = logging.getLogger(__name__)

PROBED_STATES = frozenset({NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING,
                           NodeState.FAILED})


class Reconciler:
    def __init__(self, runtime: Runtime, nodes: NodeService, replication: Replication,
                 configuration: ServiceConfiguration | None = None) -> None:
        self.rt = runtime
        self.nodes = nodes
        self.replication = replication
        self.configuration = configuration or ServiceConfiguration(nodes, replication)
        self.limits = Thresholds(failure_threshold=runtime.config.failure_threshold,
                                 boot_timeout=runtime.config.boot_timeout)
        self.failures: dict[int, int] = {}
        self.reports: dict[int, StateReport] = {}
        self.last_result = "not started"
        self.cycles = 0
        self.watch = CloudWatch(runtime.clouds, runtime.config.cloud_list_interval,
                                nodes.spawn)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()  # a cycle is due now, not at the next interval

    async def start(self) -> None:
        """First contact after a (re)start: adopt or drop the previous nodes."""
        if not self.rt.config.find_existing_agents:
            for node in self.nodes.live_nodes():
                self.nodes.remove_node(node.id, "not re-adopted: find_existing_agents is off")
        for node in self.rt.store.nodes():
            if node.state is NodeState.TERMINATING:
                self.nodes.ensure_destroying(node)

    async def close(self) -> None:
        await self.watch.close()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                result = await self.cycle()
            except ConpaasSQLError as exc:
                result = f"cycle failed: {exc}"
            except Exception:
                log.exception("reconcile cycle crashed")
                result = "cycle crashed"
            if result != self.last_result:
                log.info("reconcile: %s", result)
            self.last_result = result
            elapsed = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       max(0.0, self.rt.config.probe_interval - elapsed))
            self._wake.clear()

    async def cycle(self) -> str:
        async with self._lock:
            self.cycles += 1
            listing = self.watch.take()
            nodes = [n for n in self.rt.store.nodes() if n.state in PROBED_STATES]
            reports = await asyncio.gather(*(self._probe(node) for node in nodes))
            actions = []
            for observed, report in zip(nodes, reports, strict=True):
                fresh = self.rt.store.get_node(observed.id)  # may have moved meanwhile
                if fresh is None or fresh.state not in PROBED_STATES:
                    continue
                view = CloudView(None) if listing is None else \
                    listing.view(fresh, fresh.id in self.nodes.creating)
                node = self._note_cloud(fresh, view.record)
                action = self._apply(node, report, view)
                if action:
                    actions.append(action)
            if listing is not None:
                self.watch.destroy_leftovers(listing, {
                    node.id: node for node in self.rt.store.nodes(include_terminated=True)})
            probed = {node.id: report for node, report in zip(nodes, reports, strict=True)}
            actions += await self.replication.reconcile(probed, self.failures)
            actions += await self.configuration.reconcile(probed)
            self.nodes.refresh_service_state(actions[0] if actions else "reconcile")
            return self._summary(actions)

    async def on_report(self, node: Node, report: StateReport) -> None:
        """An agent pushed its state: act on it now rather than next cycle."""
        async with self._lock:
            current = self.rt.store.get_node(node.id)
            if current is None or current.state not in PROBED_STATES:
                return
            # Not a reset of the probe failures: that the agent reaches the manager
            # does not say the manager, the slaves and the clients reach the node.
            self.reports[node.id] = report
            self._apply(current, report, CloudView(None))
            self.nodes.refresh_service_state(f"node {node.id} reported")
            after = self.rt.store.get_node(node.id)
            if current.state is not NodeState.RUNNING and after is not None and \
                    after.state is NodeState.RUNNING:
                self._wake.set()  # a node just came up: give it its role at once

    async def _probe(self, node: Node) -> StateReport | None:
        if node.ip is None:
            return None
        try:
            report = await self.rt.agents.get_server_state(
                node, timeout=self.rt.config.probe_timeout)
        except ConpaasSQLError:
            self.failures[node.id] = self.failures.get(node.id, 0) + 1
            return None
        self.failures[node.id] = 0
        self.reports[node.id] = report
        return report

    def _note_cloud(self, node: Node, match: CloudNode | None) -> Node:
        """Fill in what only the cloud knew (a crash may have lost it)."""
        if match is None:
            return node
        if node.cloud_ref == match.ref and (node.ip or not match.ip):
            return node
        return self.rt.store.update_node(node.id, cloud_ref=match.ref, ip=node.ip or match.ip)

    def _apply(self, node: Node, report: StateReport | None, view: CloudView) -> str | None:
        now = time.time()
        seen = Observation(
            state=node.state,
            probed=report is not None,
            mysqld_answering=mysqld_answering(report),
            probe_failures=self.failures.get(node.id, 0),
            in_cloud=view.in_cloud,
            cloud_running=view.running,
            age=now - in_cloud_since(node),
            state_age=now - node.state_since,
        )
        situation = diagnose(seen, self.limits)
        if situation is Situation.MYSQLD_DOWN and (
                node.id in self.replication.seeding or self.configuration.expects_down(node.id)):
            return None  # its mysqld is stopped while the master's copy goes in, or restarts
        target = TARGET.get(situation)
        if target is None or target is node.state:
            return None
        reason = situation.value + _detail(situation, report)
        try:
            self.rt.store.move_node(node.id, target, reason)
        except IllegalMoveError as exc:
            log.warning("%s", exc)
            return None
        if target is NodeState.TERMINATED:
            self.nodes.spawn(self.rt.agents.forget(node), f"forget node {node.id}")
        if situation is Situation.GONE_FROM_CLOUD:
            self.nodes.spawn(self.nodes.replace_lost(node), f"replace node {node.id}")
        return f"node {node.id}: {reason} -> {target}"

    def _summary(self, actions: list[str]) -> str:
        counts: dict[str, int] = {}
        for node in self.rt.store.nodes():
            counts[node.state.value] = counts.get(node.state.value, 0) + 1
        state, _ = self.rt.store.service_state()
        tally = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no nodes"
        if actions:
            return f"{state}: " + "; ".join(actions) + f" ({tally})"
        return f"{state}: no action ({tally})"


def _detail(situation: Situation, report: StateReport | None) -> str:
    if situation is Situation.MYSQLD_DOWN and report is not None and report.mysqld.last_exit:
        return f" ({report.mysqld.last_exit})"
    return ""
