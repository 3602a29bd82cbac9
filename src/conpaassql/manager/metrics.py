"""The manager's Prometheus metrics (``GET /metrics``), read from its state at each scrape.

One registry per manager, made when it starts, holds one collector that reads, at
each scrape: the store (the service and its nodes), the latest report of each node
(the reconcile loop's probes, the agents' heartbeats), the event loop's lag (the
loop monitor's window), and what the scrape fetched just before, off the event
loop: the failovers and switchovers committed to the history since the last scrape
(counted from the whole history at the first, so that the counters survive a
restart of the manager), and the servers' figures (queries per second,
connections), asked of the running nodes' agents in parallel with a short timeout
and kept a second, so that a scrape never waits long and several scrapers do not
multiply the calls.

The endpoint follows the API's rule: open on loopback, an API token beyond it (a
read-only token will do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.domain.states import AgentState, NodeState, Role, ServiceState
from conpaassql.errors import AuthError
from conpaassql.manager import events
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.loop_monitor import LoopMonitor
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService
from conpaassql.manager.store import HistoryEntry, Store
from conpaassql.protocol.agent import PerformanceReply
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.server import Gate

PREFIX = "conpaassql_"
NODE = ("node", "cloud")
#: Longest wait for a node's figures at a scrape; figures younger than MAX_AGE are reused.
PERFORMANCE_TIMEOUT = 2.0
PERFORMANCE_MAX_AGE = 1.0
NODE_STATES = tuple(state for state in NodeState if state is not NodeState.TERMINATED)


@dataclass(frozen=True)
class Family:
    """One metric: its name (less the prefix, and a counter's ``_total``), type and labels."""

    name: str
    kind: str  # "gauge" or "counter"
    doc: str
    labels: tuple[str, ...] = ()

    def empty(self) -> Metric:
        if self.kind == "counter":
            return CounterMetricFamily(PREFIX + self.name, self.doc, labels=self.labels)
        return GaugeMetricFamily(PREFIX + self.name, self.doc, labels=self.labels)


FAMILIES = (
    Family("service_state", "gauge", "1 for the service's state, 0 for the others",
           ("state",)),
    Family("service_nodes", "gauge", "The service's nodes (those being removed left out)"),
    Family("service_writers", "gauge",
           "Nodes that take writes: the master if RUNNING and its mysqld answers"),
    Family("failovers", "counter", "Failovers done (a slave promoted after the master was lost)"),
    Family("switchovers", "counter", "Planned switchovers done"),
    Family("last_failover_duration_seconds", "gauge",
           "How long writes stopped in the last failover"),
    Family("last_failover_timestamp_seconds", "gauge", "When the last failover ended"),
    Family("manager_loop_lag_seconds", "gauge", "How late the manager's event loop ran: "
           "the 0.99 quantile and the maximum (1) of the loop monitor's window", ("quantile",)),
    Family("node_info", "gauge", "1 for each node, with its name, address and server version",
           (*NODE, "name", "ip", "version")),
    Family("node_state", "gauge", "1 for the node's state, 0 for the others", (*NODE, "state")),
    Family("node_role", "gauge", "1 for the node's role, 0 for the others", (*NODE, "role")),
    Family("node_up", "gauge", "1 when the node is RUNNING and its mysqld answered the last "
           "probe", NODE),
    Family("node_copying", "gauge", "1 while the node's data is copied from the master", NODE),
    Family("node_replicating", "gauge", "Slaves: 1 when both replication threads run", NODE),
    Family("node_replication_lag_seconds", "gauge",
           "Slaves: Seconds_Behind_Master (absent while replication is stopped)", NODE),
    Family("node_replication_lag_transactions", "gauge",
           "Slaves: transactions of the master not applied yet (GTID difference)", NODE),
    Family("node_mysqld_restarts", "counter", "Restarts of mysqld by its agent", NODE),
    Family("node_mysqld_uptime_seconds", "gauge", "Time since mysqld started", NODE),
    Family("node_queries_per_second", "gauge",
           "Statements per second over the last seconds (the agent's own left out)", NODE),
    Family("node_connections", "gauge", "Client connections open (the agent's left out)",
           NODE),
    Family("node_threads_running", "gauge", "Statements running now (the agent's left out)",
           NODE),
    Family("node_slow_queries", "counter", "Queries the server counted as slow", NODE),
    Family("binlog_archive_lag_seconds", "gauge",
           "Time since the master's last binlog archive pass that caught up"),
    Family("binlog_archived_timestamp_seconds", "gauge",
           "Commit time of the last transaction in the binlog archive"),
    Family("binlog_archive_gap", "gauge",
           "1 when the binlog archive has a gap that no binlog can fill"),
    Family("last_backup_age_seconds", "gauge",
           "Time since the newest done backup finished (absent when there is none)"),
    Family("backups", "gauge", "Backups in the catalog by state", ("state",)),
)


def exposed_names() -> set[str]:
    """Every sample name the collector may expose (a counter's with ``_total``)."""
    return {PREFIX + f.name + ("_total" if f.kind == "counter" else "") for f in FAMILIES}


def latest_reports(reconciler: Reconciler) -> Mapping[int, StateReport]:
    """Each node's latest report, as the reconcile loop keeps them."""
    return reconciler.reports


@dataclass
class Tally:
    """Failovers and switchovers, counted in the store's history from where it was left."""

    seq: int = 0
    failovers: int = 0
    switchovers: int = 0
    failover_at: float | None = None
    failover_seconds: float | None = None

    async def update(self, store: Store) -> None:
        """Count the entries committed since the last update (read in a thread)."""
        self.add(await asyncio.to_thread(store.events_since, self.seq,
                                         events.FAILOVER_DONE, events.SWITCHOVER_DONE))

    def add(self, entries: list[HistoryEntry]) -> None:
        for entry in entries:
            if entry.seq <= self.seq:
                continue  # counted already, by a scrape that read at the same time
            self.seq = entry.seq
            if events.is_failover(entry.message):
                self.failovers += 1
                self.failover_at = entry.at
                self.failover_seconds = events.failover_seconds(entry.message)
            else:
                self.switchovers += 1


class PerformanceCache:
    """The running nodes' latest figures, asked of their agents in parallel.

    A refresh within ``max_age`` of the last one reuses its figures, and a scrape
    that comes while one is under way waits for that one. A node that does not
    answer within ``timeout`` has no figures this time.
    """

    def __init__(self, agents: AgentLink, timeout: float = PERFORMANCE_TIMEOUT,
                 max_age: float = PERFORMANCE_MAX_AGE) -> None:
        self._agents = agents
        self._timeout = timeout
        self._max_age = max_age
        self._at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.figures: dict[int, PerformanceReply] = {}

    async def refresh(self, nodes: list[Node]) -> None:
        if self._task is None or self._task.done():
            if time.monotonic() - self._at < self._max_age:
                return
            self._task = asyncio.create_task(self._fetch(nodes), name="metrics figures")
        await asyncio.shield(self._task)

    async def _fetch(self, nodes: list[Node]) -> None:
        answers = await asyncio.gather(
            *(self._agents.get_server_performance(node, timeout=self._timeout)
              for node in nodes),
            return_exceptions=True)
        self.figures = {node.id: answer for node, answer in zip(nodes, answers, strict=True)
                        if isinstance(answer, PerformanceReply)
                        and answer.state == AgentState.RUNNING.value}
        self._at = time.monotonic()


class ServiceCollector(Collector):
    """The service's metrics, read from the manager's state when collected."""

    def __init__(self, nodes: NodeService, reports: Callable[[], Mapping[int, StateReport]],
                 copying: Callable[[], frozenset[int]], performance: PerformanceCache,
                 tally: Tally, loop_lag: Callable[[], dict[str, Any]] | None = None,
                 archive: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self._nodes = nodes
        self._store = nodes.rt.store
        self._reports = reports
        self._copying = copying
        self._performance = performance
        self._tally = tally
        self._loop_lag = loop_lag
        self._archive = archive

    def describe(self) -> Iterable[Metric]:
        return [family.empty() for family in FAMILIES]

    def collect(self) -> Iterable[Metric]:
        out = {family.name: family.empty() for family in FAMILIES}
        nodes = self._store.nodes()
        reports = self._reports()
        self._service(out, nodes, reports)
        master = next((n for n in nodes if n.role is Role.MASTER and n.state.is_live), None)
        master_report = reports.get(master.id) if master is not None else None
        copying = self._copying()
        for node in nodes:
            labels = [str(node.id), node.cloud]
            report = reports.get(node.id)
            self._node(out, node, labels, report, node.id in copying)
            if node.role is Role.SLAVE and report is not None:
                self._lag(out, labels, report, master_report)
            figures = self._performance.figures.get(node.id)
            if figures is not None and node.state is NodeState.RUNNING:
                self._figures(out, labels, figures)
        return list(out.values())

    def _service(self, out: dict[str, Metric], nodes: list[Node],
                 reports: Mapping[int, StateReport]) -> None:
        state, _ = self._store.service_state()
        for each in ServiceState:
            _add(out, "service_state", [each.value], each is state)
        _add(out, "service_nodes", [], sum(1 for node in nodes if node.state.is_live))
        _add(out, "service_writers", [], sum(
            1 for node in nodes if node.role is Role.MASTER and _up(node, reports)))
        _add(out, "failovers", [], self._tally.failovers)
        _add(out, "switchovers", [], self._tally.switchovers)
        if self._tally.failover_seconds is not None:
            _add(out, "last_failover_duration_seconds", [], self._tally.failover_seconds)
        if self._tally.failover_at is not None:
            _add(out, "last_failover_timestamp_seconds", [], self._tally.failover_at)
        self._archived(out)
        figures = self._loop_lag() if self._loop_lag is not None else {}
        for quantile, key in (("0.99", "loop_lag_p99_ms"), ("1", "loop_lag_max_ms")):
            if isinstance(figures.get(key), int | float):
                _add(out, "manager_loop_lag_seconds", [quantile], figures[key] / 1000)

    def _archived(self, out: dict[str, Metric]) -> None:
        shown = self._archive() if self._archive is not None else None
        if shown is None:
            return
        if shown.get("archive_lag_seconds") is not None:
            _add(out, "binlog_archive_lag_seconds", [], shown["archive_lag_seconds"])
        if shown.get("archived_to") is not None:
            _add(out, "binlog_archived_timestamp_seconds", [], shown["archived_to"])
        _add(out, "binlog_archive_gap", [], shown.get("gap") is not None)
        if shown.get("last_backup") is not None:
            _add(out, "last_backup_age_seconds", [],
                 max(0.0, time.time() - shown["last_backup"]))
        for state, count in (shown.get("backups_by_state") or {}).items():
            _add(out, "backups", [state], count)

    def _node(self, out: dict[str, Metric], node: Node, labels: list[str],
              report: StateReport | None, copying: bool) -> None:
        version = report.mysqld.version if report is not None else None
        _add(out, "node_info", [*labels, node.name, node.ip or "", version or ""], 1)
        for state in NODE_STATES:
            _add(out, "node_state", [*labels, state.value], state is node.state)
        for role in Role:
            _add(out, "node_role", [*labels, role.value], role is node.role)
        _add(out, "node_up", labels, node.state is NodeState.RUNNING and report is not None
             and report.mysqld_answering)
        _add(out, "node_copying", labels, copying)
        if report is None:
            return
        _add(out, "node_mysqld_restarts", labels, report.mysqld.restarts)
        if report.mysqld.uptime is not None:
            _add(out, "node_mysqld_uptime_seconds", labels, report.mysqld.uptime)

    @staticmethod
    def _lag(out: dict[str, Metric], labels: list[str], report: StateReport,
             master_report: StateReport | None) -> None:
        slave = report.slave
        _add(out, "node_replicating", labels, slave is not None and slave.replicating)
        if slave is not None and slave.seconds_behind_master is not None:
            _add(out, "node_replication_lag_seconds", labels, slave.seconds_behind_master)
        mine = report.replication
        theirs = master_report.replication if master_report is not None else None
        if mine is None or theirs is None or not theirs.gtid_current_pos:
            return
        try:
            behind = GtidPosition.parse(mine.gtid_current_pos).behind(
                GtidPosition.parse(theirs.gtid_current_pos))
        except ValueError:
            return
        _add(out, "node_replication_lag_transactions", labels, behind)

    @staticmethod
    def _figures(out: dict[str, Metric], labels: list[str], figures: PerformanceReply) -> None:
        _add(out, "node_queries_per_second", labels, figures.queries_per_second)
        for name, value in (("node_connections", figures.connections),
                            ("node_threads_running", figures.threads_running),
                            ("node_slow_queries", figures.slow_queries)):
            if value is not None:
                _add(out, name, labels, value)


def _up(node: Node, reports: Mapping[int, StateReport]) -> bool:
    report = reports.get(node.id)
    return node.state is NodeState.RUNNING and report is not None and report.mysqld_answering


def _add(out: dict[str, Metric], name: str, labels: list[str], value: float) -> None:
    metric = out[name]
    assert isinstance(metric, GaugeMetricFamily | CounterMetricFamily)
    metric.add_metric(labels, float(value))


class ManagerMetrics:
    """The manager's registry and its ``/metrics`` endpoint."""

    def __init__(self, nodes: NodeService, reconciler: Reconciler, replication: Replication,
                 gate: Gate | None, monitor: LoopMonitor | None = None,
                 performance: PerformanceCache | None = None,
                 schedule: Callable[[], dict[str, Any]] | None = None) -> None:
        self._nodes = nodes
        self._gate = gate
        self.performance = performance or PerformanceCache(
            nodes.rt.agents, timeout=min(PERFORMANCE_TIMEOUT, nodes.rt.config.probe_timeout))
        self.tally = Tally()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(
            nodes, lambda: latest_reports(reconciler), lambda: replication.seeding,
            self.performance, self.tally, monitor.figures if monitor is not None else None,
            lambda: {**({} if reconciler.archiving is None
                        else reconciler.archiving.service_info()),
                     **(schedule() if schedule is not None else {})}))

    async def serve(self, request: Request) -> Response:
        """``GET /metrics``: the text format (OpenMetrics when the scraper asks for it)."""
        if self._gate is not None:
            try:
                await self._gate(request)
            except AuthError as exc:
                return PlainTextResponse(f"{exc}\n", exc.status,
                                         headers={"WWW-Authenticate": "Bearer"})
        running = [node for node in self._nodes.live_nodes()
                   if node.state is NodeState.RUNNING and node.ip]
        await asyncio.gather(self.performance.refresh(running),
                             self.tally.update(self._nodes.rt.store))
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(self.registry), headers={"Content-Type": content_type})
