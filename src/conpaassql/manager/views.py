"""How the manager shows nodes, the service and its performance to callers.

Result shapes keep the seed's keys (``serviceNode``, ``id``, ``ip``, ``state``,
``name``, ``isRunningMySQL``) and add ours beside them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.protocol.report import MysqldStatus, ReplicationStatus, SlaveStatus, StateReport


def node_summary(node: Node) -> dict[str, Any]:
    """The seed's node shape: id, ip, state, name, plus role and cloud."""
    return {
        "id": node.id,
        "ip": node.ip or "",
        "state": node.state.value,
        "name": node.name,
        "role": node.role.value,
        "cloud": node.cloud,
        "port": node.mysql_port,
        "health_port": health_port(node),
    }


#: The agent's health port is its RPC port plus this unless it says otherwise.
HEALTH_PORT_OFFSET = 8


def health_port(node: Node) -> int:
    """The node's plain-HTTP health port: as its agent reports it, else as its context
    gave it, else the default (the agent's port + 8)."""
    agent = node.details.get("agent")
    reported = agent.get("health_port") if isinstance(agent, dict) else None
    for value in (reported, node.details.get("health_port")):
        if isinstance(value, int) and 0 < value < 65536:
            return value
    return node.agent_port + HEALTH_PORT_OFFSET


def node_details(node: Node, report: StateReport | None, answering: bool) -> dict[str, Any]:
    """``report``: the agent's answer now; without one, the last it sent is shown."""
    agent = report if report is not None else StateReport.parse(node.details.get("agent"))
    mysqld = agent.mysqld if agent is not None else MysqldStatus()
    return {
        **node_summary(node),
        "isRunningMySQL": answering,
        "agent_port": node.agent_port,
        "cloud_ref": node.cloud_ref,
        "agent_state": agent.state if agent is not None else None,
        "mysqld": {
            "pid": mysqld.pid,
            "restarts": mysqld.restarts,
            "last_exit": mysqld.last_exit,
            "uptime": mysqld.uptime,
            "version": mysqld.version,
        },
        "state_since": node.state_since,
        "created_at": node.created_at,
        "registered_at": node.registered_at,
        "last_seen": node.details.get("last_seen"),
        # A node made by restore_node: its backup and how its restore goes.
        **({"restore": node.details["restore"]} if "restore" in node.details else {}),
    }


def performance_of(node: Node, figures: dict[str, Any]) -> dict[str, Any]:
    return {"id": node.id, "ip": node.ip, "role": node.role.value, **figures}


def totals(per_node: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("queries_per_second", "connections", "threads_running")
    total: dict[str, Any] = {key: 0 for key in keys}
    for figures in per_node:
        for key in keys:
            value = figures.get(key)
            if isinstance(value, int | float):
                total[key] += value
    total["nodes_reporting"] = len(per_node)
    total["at"] = time.time()
    return total


def count_states(nodes: list[Node]) -> dict[str, int]:
    counts = {state.value: 0 for state in NodeState if state.is_live}
    for node in nodes:
        if node.state.is_live:
            counts[node.state.value] += 1
    return {state: count for state, count in counts.items() if count}


def endpoint(node: Node | None) -> dict[str, Any] | None:
    """Where to connect to a node's server."""
    if node is None or node.ip is None:
        return None
    return {"id": node.id, "ip": node.ip, "port": node.mysql_port}


def readers(nodes: list[Node], reports: Mapping[int, StateReport],
            max_lag: float) -> list[dict[str, Any]]:
    """The slaves fit to serve reads: replicating, at most ``max_lag`` seconds behind."""
    found = []
    for node in nodes:
        if node.role is not Role.SLAVE or node.state is not NodeState.RUNNING:
            continue
        report = reports.get(node.id)
        slave = report.slave if report is not None else None
        if slave is None:
            continue
        lag = slave.seconds_behind_master
        if slave.replicating and lag is not None and lag <= max_lag:
            found.append({**(endpoint(node) or {}), "seconds_behind_master": lag})
    return found


def replication_of(node: Node, report: StateReport | None,
                   master_report: StateReport | None, seeding: bool) -> dict[str, Any]:
    """A node's replication as shown in ``get_node_info``."""
    status = report.replication if report is not None else None
    shown = status or ReplicationStatus()  # None where the agent told nothing
    slave = shown.slave or SlaveStatus()
    mine = shown.gtid_current_pos
    master_status = master_report.replication if master_report is not None else None
    theirs = master_status.gtid_current_pos if master_status is not None else None
    lag_trx = None
    if theirs is not None:
        try:
            lag_trx = GtidPosition.parse(mine).behind(GtidPosition.parse(theirs))
        except ValueError:
            lag_trx = None
    return {
        "role": node.role.value,
        "read_only": shown.read_only,
        "gtid_position": mine,
        "gtid_binlog_pos": status.gtid_binlog_pos if status is not None else None,
        "semi_sync_master": status.semi_sync_master if status is not None else None,
        "semi_sync_slave": status.semi_sync_slave if status is not None else None,
        "master_host": slave.master_host,
        "io_running": slave.io_running,
        "sql_running": slave.sql_running,
        "seconds_behind_master": slave.seconds_behind_master,
        "lag_transactions": lag_trx,
        "last_error": slave.last_error,
        "copying": seeding,
    }
