"""The reconcile loop: observe every node, diagnose, act, and say what happened.

Each cycle probes the agents in parallel (each with a timeout), then takes one
``Snapshot`` (the store read once, the probes, what agents told since the last
cycle, the clouds' latest lists from ``cloud_watch``). Diagnosis reads the snapshot only;
each situation has its handler in ``NODE_ACTIONS`` (node states) or
``replication.TOPOLOGY_ACTIONS``; the cycle returns a ``CycleResult``.

Agents' heartbeats and API calls only record what they learned (``note_report``)
and wake the loop: node states move here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from conpaassql.domain.diagnosis import TARGET, Observation, Situation, Thresholds, diagnose
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import ConpaasSQLError, IllegalMoveError
from conpaassql.manager.archiving import BinlogArchiving
from conpaassql.manager.cloud_watch import CloudWatch, in_cloud_since
from conpaassql.manager.configuration import ServiceConfiguration
from conpaassql.manager.cycle import Act, CycleResult, Outcome, Snapshot, frozen, tally
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.protocol.report import StateReport, mysqld_answering

log = logging.getLogger(__name__)

PROBED_STATES = frozenset({NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING,
                           NodeState.FAILED})


class Reconciler:
    def __init__(self, runtime: Runtime, nodes: NodeService, replication: Replication,
                 configuration: ServiceConfiguration | None = None,
                 archiving: BinlogArchiving | None = None) -> None:
        self.rt = runtime
        self.nodes = nodes
        nodes.wake_loop = self.wake
        self.replication = replication
        self.configuration = configuration or ServiceConfiguration(nodes, replication)
        self.archiving = archiving
        self.limits = Thresholds(failure_threshold=runtime.config.failure_threshold,
                                 boot_timeout=runtime.config.boot_timeout)
        self.failures: dict[int, int] = {}
        self.silent: dict[int, int] = {}  # consecutive probes its mysqld did not answer
        self.reports: dict[int, StateReport] = {}  # each node's latest report
        self._heard: dict[int, StateReport] = {}  # told since the last snapshot
        self.last: CycleResult | None = None
        self.last_result = "not started"
        self.cycles = 0
        self.watch = CloudWatch(runtime.clouds, runtime.config.cloud_list_interval,
                                nodes.spawn)
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
        if self.archiving is not None:
            await self.archiving.close()

    async def run(self) -> None:
        logged = ""
        while True:
            started = time.monotonic()
            try:
                self.last = await self.cycle()
                line, shown = self.last.log_line, self.last.line
            except ConpaasSQLError as exc:
                line = shown = f"cycle failed: {exc}"
            except Exception:
                log.exception("reconcile cycle crashed")
                line = shown = "cycle crashed"
            if line != logged:
                log.info("reconcile: %s", line)
                logged = line
            self.last_result = shown
            elapsed = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       max(0.0, self.rt.config.probe_interval - elapsed))
            self._wake.clear()

    def wake(self) -> None:
        """Run the next cycle now rather than at the next interval."""
        self._wake.set()

    @property
    def due(self) -> bool:
        """The next cycle runs without waiting out the interval."""
        return self._wake.is_set()

    # -- recording (API handlers and heartbeats) --------------------------

    def note_report(self, node: Node, report: StateReport) -> None:
        """An agent told its state (heartbeat, or a probe for ``get_node_info``):
        keep it for the next snapshot, and wake the loop if it is news.

        Not a reset of the probe failures: that the agent reaches the manager does
        not say the manager, the slaves and the clients reach the node."""
        self.reports[node.id] = report
        self._heard[node.id] = report
        if node.state in PROBED_STATES and _is_news(node, report):
            self.wake()

    # -- the cycle --------------------------------------------------------

    async def cycle(self) -> CycleResult:
        self.cycles += 1
        snapshot = await self.observe()
        outcomes = []
        changed: dict[int, Node] = {}
        for node in snapshot.in_state(*PROBED_STATES):
            outcome, after = self._act(node, snapshot)
            outcomes.append(outcome)
            if after is not node:
                changed[node.id] = after
        if snapshot.listing is not None:
            self.watch.destroy_leftovers(snapshot.listing,
                                         {node.id: node for node in snapshot.nodes})
        # The topology is judged with this cycle's moves: a node found ready just now
        # gets its role in the same cycle.
        outcomes += await self.replication.reconcile(snapshot.with_nodes(changed))
        outcomes += await self.configuration.reconcile(snapshot)
        if self.archiving is not None:
            outcomes += self.archiving.reconcile(snapshot.with_nodes(changed))
        done = [o.message for o in outcomes if o.action.shown]
        self.nodes.refresh_service_state(done[0] if done else "reconcile")
        state, _ = self.rt.store.service_state()
        return CycleResult(state, tuple(outcomes), tally(self.rt.store.nodes()))

    async def observe(self) -> Snapshot:
        """Probe every node, then take the cycle's snapshot (the store read once)."""
        targets = [n for n in self.rt.store.nodes() if n.state in PROBED_STATES]
        answers = await asyncio.gather(*(self._probe(node) for node in targets))
        probes = {node.id: report for node, report in zip(targets, answers, strict=True)}
        heard, self._heard = self._heard, {}
        return Snapshot(
            at=time.time(),
            nodes=tuple(self.rt.store.nodes(include_terminated=True)),
            probes=frozen(probes), heard=frozen(heard),
            failures=frozen(self.failures), silent=frozen(self.silent),
            listing=self.watch.take(), creating=self.nodes.creating,
            seeding=self.replication.seeding)

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
        self.silent[node.id] = 0 if report.mysqld_answering else self.silent.get(node.id, 0) + 1
        self.reports[node.id] = report
        return report

    def _act(self, node: Node, snapshot: Snapshot) -> tuple[Outcome, Node]:
        """Diagnose one node and run its situation's handler; the node after."""
        node = self._note_cloud(node, snapshot)
        situation = diagnose(self._observation(node, snapshot), self.limits)
        outcome = NODE_ACTIONS[situation](self, node, situation, snapshot)
        return outcome, outcome.moved or node

    def _note_cloud(self, node: Node, snapshot: Snapshot) -> Node:
        """Fill in what only the cloud knew (a crash may have lost it)."""
        match = snapshot.cloud_view(node).record
        if match is None:
            return node
        if node.cloud_ref == match.ref and (node.ip or not match.ip):
            return node
        return self.rt.store.update_node(node.id, cloud_ref=match.ref, ip=node.ip or match.ip)

    @staticmethod
    def _observation(node: Node, snapshot: Snapshot) -> Observation:
        view = snapshot.cloud_view(node)
        report = snapshot.report(node.id)
        return Observation(
            state=node.state,
            probed=report is not None,
            mysqld_answering=mysqld_answering(report),
            probe_failures=snapshot.failures.get(node.id, 0),
            in_cloud=view.in_cloud,
            cloud_running=view.running,
            age=snapshot.at - in_cloud_since(node),
            state_age=snapshot.at - node.state_since,
        )

    # -- the handlers, one per situation ----------------------------------

    def _nothing(self, node: Node, situation: Situation, snapshot: Snapshot) -> Outcome:
        return Outcome.nothing(situation, node.id)

    def _move(self, node: Node, situation: Situation, snapshot: Snapshot) -> Outcome:
        target = TARGET[situation]
        if target is node.state:
            return Outcome.nothing(situation, node.id)
        reason = situation.value + _detail(situation, snapshot.report(node.id))
        try:
            moved = self.rt.store.move_node(node.id, target, reason)
        except IllegalMoveError as exc:
            log.warning("%s", exc)
            return Outcome(situation, node.id, Act.NONE, str(exc))
        if target is NodeState.TERMINATED:
            self.nodes.spawn(self.rt.agents.forget(node), f"forget node {node.id}")
        return Outcome(situation, node.id, Act.MOVE, f"node {node.id}: {reason} -> {target}",
                       moved)

    def _ready(self, node: Node, situation: Situation, snapshot: Snapshot) -> Outcome:
        """Up for the first time. Its agent answered: it has run, whether or not its
        heartbeat reached the manager yet (a node that ran is replaced if lost)."""
        outcome = self._move(node, situation, snapshot)
        if node.registered_at is None and outcome.moved is not None:
            moved = self.rt.store.update_node(node.id, registered_at=snapshot.at)
            outcome = replace(outcome, moved=moved)
        return outcome

    def _mysqld_down(self, node: Node, situation: Situation, snapshot: Snapshot) -> Outcome:
        if node.id in snapshot.seeding:
            return Outcome.held(situation, node.id,
                                "its mysqld is stopped while the master's copy goes in")
        if self.configuration.expects_down(node.id):
            return Outcome.held(situation, node.id,
                                "its mysqld restarts with the service's options")
        return self._move(node, situation, snapshot)

    def _gone(self, node: Node, situation: Situation, snapshot: Snapshot) -> Outcome:
        outcome = self._move(node, situation, snapshot)
        if outcome.action is Act.MOVE:
            self.nodes.spawn(self.nodes.replace_lost(node), f"replace node {node.id}")
        return outcome


NodeHandler = Callable[[Reconciler, Node, Situation, Snapshot], Outcome]

#: What the loop does in each situation of a node.
NODE_ACTIONS: Mapping[Situation, NodeHandler] = {
    Situation.HEALTHY: Reconciler._nothing,
    Situation.WAITING_FOR_CLOUD: Reconciler._nothing,
    Situation.WAITING_FOR_AGENT: Reconciler._nothing,
    Situation.STILL_FAILED: Reconciler._nothing,
    Situation.LEAVING: Reconciler._nothing,
    Situation.CLOUD_STARTED: Reconciler._move,
    Situation.READY: Reconciler._ready,
    Situation.RECOVERED: Reconciler._move,
    Situation.AGENT_LOST: Reconciler._move,
    Situation.BOOT_TIMEOUT: Reconciler._move,
    Situation.MYSQLD_DOWN: Reconciler._mysqld_down,
    Situation.GONE_FROM_CLOUD: Reconciler._gone,
}


def _is_news(node: Node, report: StateReport) -> bool:
    """The report says what the node's state does not (or tells of an event)."""
    return bool(report.event) or report.mysqld_answering != (node.state is NodeState.RUNNING)


def _detail(situation: Situation, report: StateReport | None) -> str:
    if situation is Situation.MYSQLD_DOWN and report is not None and report.mysqld.last_exit:
        return f" ({report.mysqld.last_exit})"
    return ""
