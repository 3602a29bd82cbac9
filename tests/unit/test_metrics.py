"""The manager's /metrics: names, types and labels read from a real store and real
reports, the counters kept across a restart, the figures asked of the agents once for
several scrapes, the access rule, and the shipped rules and dashboard naming only
metrics that exist.

The manager's real store, node service, reconciler and token store; the agents are
reports built here (an agent's own are tested with real servers in the integration
tests), and the performance figures come from a stand-in for the agents' client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.routing import Route
from starlette.testclient import TestClient

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import UnreachableError
from conpaassql.manager import events
from conpaassql.manager.api_security import token_gate
from conpaassql.manager.loop_monitor import LoopMonitor
from conpaassql.manager.metrics import (
    ManagerMetrics,
    PerformanceCache,
    exposed_names,
)
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService
from conpaassql.manager.tokens import TokenStore
from conpaassql.protocol.agent import PerformanceReply
from conpaassql.protocol.report import MysqldStatus, ReplicationStatus, SlaveStatus, StateReport
from conpaassql.rpc.registry import Registry
from conpaassql.rpc.server import Gate, RpcApp
from tests.unit.test_node_service import service

REPO = Path(__file__).resolve().parents[2]


class Agents:
    """The agents' client as far as the figures go: answers, or fails, per node."""

    def __init__(self, answers: dict[int, PerformanceReply | Exception]) -> None:
        self.answers = answers
        self.calls: list[int] = []
        self.release = asyncio.Event()

    async def get_server_performance(self, node: Node, *, timeout: float | None = None
                                     ) -> PerformanceReply:
        self.calls.append(node.id)
        await self.release.wait()
        answer = self.answers[node.id]
        if isinstance(answer, Exception):
            raise answer
        return answer


def report(node: Node, gtid: str, *, lag: int | None = None, slave: bool = False,
           answering: bool = True, restarts: int = 0) -> StateReport:
    status = SlaveStatus(master_host="127.0.0.1", io_running="Yes",
                         sql_running="Yes" if lag is not None else "No",
                         seconds_behind_master=lag) if slave else None
    return StateReport(node_id=node.id, state="RUNNING", mysqld=MysqldStatus(
        answering=answering, restarts=restarts, uptime=42.0, version="11.8.3-MariaDB"),
        replication=ReplicationStatus(gtid_current_pos=gtid, slave=status))


def running(nodes: NodeService, role: Role) -> Node:
    node = asyncio.run(nodes.add_nodes(1))[0]
    nodes.rt.store.update_node(node.id, ip=f"127.0.0.{node.id + 1}", role=role)
    return nodes.rt.store.move_node(node.id, NodeState.RUNNING, "agent registered")


def a_service(tmp_path: Path) -> tuple[NodeService, Reconciler, Replication]:
    nodes, _ = service(tmp_path)
    replication = Replication(nodes)
    return nodes, Reconciler(nodes.rt, nodes, replication), replication


def scrape(metrics: ManagerMetrics, token: str | None = None,
           accept: str | None = None) -> Any:
    app = RpcApp(Registry()).asgi(routes=[Route("/metrics", metrics.serve, methods=["GET"])])
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    if accept is not None:
        headers["Accept"] = accept
    with TestClient(app) as client:
        return client.get("/metrics", headers=headers)


def samples(text: str) -> tuple[dict[str, str], list[Sample]]:
    """The type of each metric, and every sample."""
    types: dict[str, str] = {}
    found: list[Sample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        found += family.samples
    return types, found


def value(found: list[Sample], metric: str, /, **labels: str) -> float | None:
    values = [s.value for s in found if s.name == metric and
              all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) <= 1, (metric, labels, values)
    return values[0] if values else None


def test_a_master_a_lagging_slave_and_a_booting_node(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    master = running(nodes, Role.MASTER)
    slave = running(nodes, Role.SLAVE)
    booting = asyncio.run(nodes.add_nodes(1, cloud="aws"))[0]
    reconciler.reports[master.id] = report(master, "0-1-120,1-1-7", restarts=2)
    reconciler.reports[slave.id] = report(slave, "0-1-100,1-1-7", lag=12, slave=True)
    agents = Agents({
        master.id: PerformanceReply(state="RUNNING", queries_per_second=250.5, connections=7,
                                    threads_running=2, slow_queries=3),
        slave.id: UnreachableError(f"node {slave.id}", detail="timed out")})
    agents.release.set()
    monitor = LoopMonitor()
    for lag in (0.002, 0.003, 0.050):
        monitor.record(lag)
    metrics = ManagerMetrics(nodes, reconciler, replication, None, monitor,
                             PerformanceCache(agents, max_age=0))  # type: ignore[arg-type]
    answer = scrape(metrics)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, found = samples(answer.text)

    assert {name for name in types if types[name] == "counter"} == {
        "conpaassql_failovers", "conpaassql_switchovers", "conpaassql_node_mysqld_restarts",
        "conpaassql_node_slow_queries"}
    assert {s.name for s in found} <= exposed_names()
    m, s, b = str(master.id), str(slave.id), str(booting.id)
    assert value(found, "conpaassql_service_state", state="ADAPTING") == 1
    assert value(found, "conpaassql_service_state", state="RUNNING") == 0
    assert value(found, "conpaassql_service_nodes") == 3
    assert value(found, "conpaassql_service_writers") == 1
    assert value(found, "conpaassql_node_role", node=m, cloud="default", role="master") == 1
    assert value(found, "conpaassql_node_role", node=m, role="slave") == 0
    assert value(found, "conpaassql_node_state", node=b, cloud="aws", state="PENDING") == 1
    assert value(found, "conpaassql_node_state", node=b, state="RUNNING") == 0
    assert [value(found, "conpaassql_node_up", node=n) for n in (m, s, b)] == [1, 1, 0]
    assert value(found, "conpaassql_node_replication_lag_seconds", node=s) == 12
    assert value(found, "conpaassql_node_replication_lag_transactions", node=s) == 20
    assert value(found, "conpaassql_node_replicating", node=s) == 1
    assert value(found, "conpaassql_node_replication_lag_seconds", node=m) is None
    assert value(found, "conpaassql_node_mysqld_restarts_total", node=m) == 2
    assert value(found, "conpaassql_node_queries_per_second", node=m, cloud="default") == 250.5
    assert value(found, "conpaassql_node_connections", node=m) == 7
    assert value(found, "conpaassql_node_connections", node=s) is None  # no answer
    assert value(found, "conpaassql_node_slow_queries_total", node=m) == 3
    assert value(found, "conpaassql_node_info", node=m, name=master.name, ip=master.ip or "",
                 version="11.8.3-MariaDB") == 1
    assert value(found, "conpaassql_failovers_total") == 0
    assert value(found, "conpaassql_last_failover_duration_seconds") is None
    assert value(found, "conpaassql_manager_loop_lag_seconds", quantile="1") == 0.05
    assert value(found, "conpaassql_manager_loop_lag_seconds", quantile="0.99") == 0.05

    # The slave stops replicating: no lag in seconds, still one in transactions.
    reconciler.reports[slave.id] = report(slave, "0-1-110,1-1-7", slave=True)
    reconciler.reports[master.id] = report(master, "0-1-120,1-1-7", answering=False)
    _, found = samples(scrape(metrics).text)
    assert value(found, "conpaassql_node_replication_lag_seconds", node=s) is None
    assert value(found, "conpaassql_node_replication_lag_transactions", node=s) == 10
    assert value(found, "conpaassql_node_replicating", node=s) == 0
    assert value(found, "conpaassql_node_up", node=m) == 0
    assert value(found, "conpaassql_service_writers") == 0


def test_failovers_and_switchovers_are_counted_from_the_history(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    store = nodes.rt.store
    store.record_event("failover: node 1 fenced (stopped)", 1)
    store.record_event(events.failover_done(2, 1, "master lost", 1.37), 2)
    store.record_event(events.switchover_done(1, 2, 0.21), 1)
    store.record_event("switchover to node 3 abandoned")
    store.flush()  # counted once committed
    _, found = samples(scrape(ManagerMetrics(nodes, reconciler, replication, None)).text)
    assert value(found, "conpaassql_failovers_total") == 1
    assert value(found, "conpaassql_switchovers_total") == 1
    assert value(found, "conpaassql_last_failover_duration_seconds") == 1.37
    at = store.history(limit=3)[0].at
    assert value(found, "conpaassql_last_failover_timestamp_seconds") == at

    # The manager restarts: a new store on the same file, new metrics; the counts stay,
    # and later failovers add to them.
    store.close()
    again, reconciler, replication = a_service(tmp_path)
    metrics = ManagerMetrics(again, reconciler, replication, None)
    _, found = samples(scrape(metrics).text)
    assert value(found, "conpaassql_failovers_total") == 1
    again.rt.store.record_event(events.failover_done(1, 2, "mysqld down", 0.52), 1)
    again.rt.store.flush()
    _, found = samples(scrape(metrics).text)
    assert value(found, "conpaassql_failovers_total") == 2
    assert value(found, "conpaassql_switchovers_total") == 1
    assert value(found, "conpaassql_last_failover_duration_seconds") == 0.52


def test_figures_are_asked_once_for_scrapes_at_once(tmp_path: Path) -> None:
    nodes, _ = service(tmp_path)
    first, second = running(nodes, Role.MASTER), running(nodes, Role.SLAVE)
    agents = Agents({first.id: PerformanceReply(state="RUNNING", queries_per_second=5.0),
                     second.id: UnreachableError("node 2", detail="timed out")})
    cache = PerformanceCache(agents, max_age=3600)  # type: ignore[arg-type]

    async def scrapes() -> None:
        together = [asyncio.create_task(cache.refresh([first, second])) for _ in range(3)]
        await asyncio.sleep(0)
        agents.release.set()
        await asyncio.gather(*together)
        await cache.refresh([first, second])  # within max_age: the same figures

    asyncio.run(scrapes())
    assert sorted(agents.calls) == [first.id, second.id]
    assert set(cache.figures) == {first.id}
    assert cache.figures[first.id].queries_per_second == 5.0


def test_a_stopped_server_has_no_figures(tmp_path: Path) -> None:
    nodes, _ = service(tmp_path)
    node = running(nodes, Role.MASTER)
    agents = Agents({node.id: PerformanceReply(state="STOPPED")})
    agents.release.set()
    cache = PerformanceCache(agents, max_age=0)  # type: ignore[arg-type]
    asyncio.run(cache.refresh([node]))
    assert agents.calls == [node.id] and cache.figures == {}


def test_a_token_is_needed_when_the_api_needs_one(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    tokens = TokenStore(tmp_path / "secrets")
    _, admin = tokens.create("admin")
    read_record, read = tokens.create("read", "prometheus")
    gate: Gate = token_gate(tokens)
    metrics = ManagerMetrics(nodes, reconciler, replication, gate)
    refused = scrape(metrics)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert "an API token is needed" in refused.text
    assert "conpaassql_" not in refused.text
    assert scrape(metrics, "cqt_wrong").status_code == 401
    for token in (read, admin):
        answer = scrape(metrics, token)
        assert answer.status_code == 200 and "conpaassql_service_nodes 0.0" in answer.text
    tokens.revoke(read_record.id)
    assert scrape(metrics, read).status_code == 401
    # Open (loopback): no token asked.
    assert scrape(ManagerMetrics(nodes, reconciler, replication, None)).status_code == 200


def test_openmetrics_when_the_scraper_asks_for_it(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    answer = scrape(ManagerMetrics(nodes, reconciler, replication, None),
                    accept="application/openmetrics-text; version=1.0.0")
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


@pytest.mark.parametrize("path", ["contrib/prometheus/conpaassql-rules.yml",
                                  "contrib/grafana/conpaassql-dashboard.json"])
def test_the_shipped_rules_and_dashboard_name_real_metrics(path: str) -> None:
    text = (REPO / path).read_text()
    if path.endswith(".json"):
        json.loads(text)
    used = set(re.findall(r"conpaassql_[a-z_]+", text))
    assert used and used <= exposed_names(), used - exposed_names()


def test_the_last_backup_age_and_the_backups_by_state(tmp_path: Path) -> None:
    nodes, reconciler, replication = a_service(tmp_path)
    shown: dict[str, Any] = {"last_backup": None, "backups_by_state": None}
    metrics = ManagerMetrics(nodes, reconciler, replication, None,
                             schedule=lambda: shown)
    _, found = samples(scrape(metrics).text)
    assert value(found, "conpaassql_last_backup_age_seconds") is None  # none yet: absent
    assert value(found, "conpaassql_backups", state="done") is None
    shown.update(last_backup=time.time() - 3600,
                 backups_by_state={"running": 1, "done": 4, "failed": 0})
    _, found = samples(scrape(metrics).text)
    age = value(found, "conpaassql_last_backup_age_seconds")
    assert age is not None and 3600 <= age < 3600 + 600
    assert [value(found, "conpaassql_backups", state=state)
            for state in ("running", "done", "failed")] == [1, 4, 0]
