"""The reconcile loop: observe every node, diagnose, act, and say what happened.

Each cycle probes the agents in parallel (each with a timeout), reads every cloud's
list of nodes when due, diagnoses each node into a named situation, moves nodes
whose situation calls for it, and returns a one-line result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from conpaassql.cloud.base import CloudNode, CloudNodeState
from conpaassql.domain.diagnosis import TARGET, Observation, Situation, Thresholds, diagnose
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import ConpaasSQLError
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime

log = logging.getLogger(__name__)

PROBED_STATES = frozenset({NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING,
                           NodeState.FAILED})

#: What each cloud listed this cycle, by cloud name then by the cloud's node ref;
#: a cloud whose list could not be read is absent.
Listing = dict[str, dict[str, CloudNode]]


class Reconciler:
    def __init__(self, runtime: Runtime, nodes: NodeService, replication: Replication) -> None:
        self.rt = runtime
        self.nodes = nodes
        self.replication = replication
        self.limits = Thresholds(failure_threshold=runtime.config.failure_threshold,
                                 boot_timeout=runtime.config.boot_timeout)
        self.failures: dict[int, int] = {}
        self.reports: dict[int, dict[str, Any]] = {}
        self.last_result = "not started"
        self.cycles = 0
        self._last_cloud_list = 0.0
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
            listing = await self._cloud_list_if_due()
            nodes = [n for n in self.rt.store.nodes() if n.state in PROBED_STATES]
            reports = await asyncio.gather(*(self._probe(node) for node in nodes))
            actions = []
            for observed, report in zip(nodes, reports, strict=True):
                fresh = self.rt.store.get_node(observed.id)  # may have moved meanwhile
                if fresh is None or fresh.state not in PROBED_STATES:
                    continue
                listed = None if listing is None else listing.get(fresh.cloud)
                in_cloud, cloud_running = _cloud_view(fresh, listed)
                node = fresh if listed is None else self._note_cloud(fresh, listed)
                action = self._apply(node, report, in_cloud, cloud_running)
                if action:
                    actions.append(action)
            if listing is not None:
                await self._destroy_leftovers(listing)
            probed = {node.id: report for node, report in zip(nodes, reports, strict=True)}
            actions += await self.replication.reconcile(probed, self.failures)
            self.nodes.refresh_service_state(actions[0] if actions else "reconcile")
            return self._summary(actions)

    async def on_report(self, node: Node, report: dict[str, Any]) -> None:
        """An agent pushed its state: act on it now rather than next cycle."""
        async with self._lock:
            current = self.rt.store.get_node(node.id)
            if current is None or current.state not in PROBED_STATES:
                return
            # Not a reset of the probe failures: that the agent reaches the manager
            # does not say the manager, the slaves and the clients reach the node.
            self.reports[node.id] = report
            self._apply(current, report, None, False)
            self.nodes.refresh_service_state(f"node {node.id} reported")
            after = self.rt.store.get_node(node.id)
            if current.state is not NodeState.RUNNING and after is not None and \
                    after.state is NodeState.RUNNING:
                self._wake.set()  # a node just came up: give it its role at once

    async def _probe(self, node: Node) -> dict[str, Any] | None:
        if node.ip is None:
            return None
        try:
            report = await self.rt.agents.server_state(node, self.rt.config.probe_timeout)
        except ConpaasSQLError:
            self.failures[node.id] = self.failures.get(node.id, 0) + 1
            return None
        self.failures[node.id] = 0
        self.reports[node.id] = report
        return report

    async def _cloud_list_if_due(self) -> Listing | None:
        """Every cloud's nodes, when a listing is due (clouds listed in parallel)."""
        now = time.monotonic()
        if self._last_cloud_list and now - self._last_cloud_list < \
                self.rt.config.cloud_list_interval:
            return None
        self._last_cloud_list = now
        drivers = list(self.rt.clouds)
        answers = await asyncio.gather(*(driver.list_nodes() for driver in drivers),
                                       return_exceptions=True)
        listing: Listing = {}
        for driver, answer in zip(drivers, answers, strict=True):
            if isinstance(answer, ConpaasSQLError):
                log.warning("cannot list the nodes of cloud %s: %s", driver.cloud_name, answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                listing[driver.cloud_name] = {node.ref: node for node in answer}
        return listing

    def _note_cloud(self, node: Node, cloud: dict[str, CloudNode]) -> Node:
        """Fill in what only the cloud knew (a crash may have lost it)."""
        match = _find(node, cloud)
        if match is None:
            return node
        if node.cloud_ref == match.ref and (node.ip or not match.ip):
            return node
        return self.rt.store.update_node(node.id, cloud_ref=match.ref, ip=node.ip or match.ip)

    def _apply(self, node: Node, report: dict[str, Any] | None, in_cloud: bool | None,
               cloud_running: bool) -> str | None:
        now = time.time()
        seen = Observation(
            state=node.state,
            probed=report is not None,
            mysqld_answering=bool(report and report.get("mysqld", {}).get("answering")),
            probe_failures=self.failures.get(node.id, 0),
            in_cloud=in_cloud,
            cloud_running=cloud_running,
            age=now - node.created_at,
            state_age=now - node.state_since,
        )
        situation = diagnose(seen, self.limits)
        if situation is Situation.MYSQLD_DOWN and node.id in self.replication.seeding:
            return None  # its mysqld is stopped while the master's copy goes in
        target = TARGET.get(situation)
        if target is None or target is node.state:
            return None
        reason = situation.value + _detail(situation, report)
        self.rt.store.move_node(node.id, target, reason)
        if target is NodeState.TERMINATED:
            self.nodes.spawn(self.rt.agents.forget(node), f"forget node {node.id}")
        if situation is Situation.GONE_FROM_CLOUD:
            self.nodes.spawn(self.nodes.replace_lost(node), f"replace node {node.id}")
        return f"node {node.id}: {reason} -> {target}"

    async def _destroy_leftovers(self, listing: Listing) -> None:
        """Destroy cloud nodes the store has finished with (a crash mid-destroy)."""
        known = {node.id: node for node in self.rt.store.nodes(include_terminated=True)}
        for cloud_name, listed in listing.items():
            for item in listed.values():
                node = known.get(item.node_id) if item.node_id is not None else None
                if node is None or node.state is not NodeState.TERMINATED or \
                        item.state is CloudNodeState.TERMINATED:
                    continue
                log.info("destroying leftover node %s of cloud %s (terminated node %s)",
                         item.ref, cloud_name, node.id)
                try:
                    await self.rt.clouds.get(cloud_name).destroy_node(item.ref)
                except ConpaasSQLError as exc:
                    log.warning("could not destroy leftover %s: %s", item.ref, exc)

    def _summary(self, actions: list[str]) -> str:
        counts: dict[str, int] = {}
        for node in self.rt.store.nodes():
            counts[node.state.value] = counts.get(node.state.value, 0) + 1
        state, _ = self.rt.store.service_state()
        tally = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no nodes"
        if actions:
            return f"{state}: " + "; ".join(actions) + f" ({tally})"
        return f"{state}: no action ({tally})"


def _find(node: Node, cloud: dict[str, CloudNode]) -> CloudNode | None:
    if node.cloud_ref and node.cloud_ref in cloud:
        return cloud[node.cloud_ref]
    for item in cloud.values():
        if item.node_id == node.id:
            return item
    return None


def _cloud_view(node: Node, cloud: dict[str, CloudNode] | None) -> tuple[bool | None, bool]:
    if cloud is None:
        return None, False
    match = _find(node, cloud)
    if match is None or match.state is CloudNodeState.TERMINATED:
        return False, False
    return True, match.state is CloudNodeState.RUNNING


def _detail(situation: Situation, report: dict[str, Any] | None) -> str:
    if situation is Situation.MYSQLD_DOWN and report:
        last = report.get("mysqld", {}).get("last_exit")
        if last:
            return f" ({last})"
    return ""
