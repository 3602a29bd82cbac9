"""How the manager shows nodes, the service and its performance to callers.

Result shapes keep the seed's keys (``serviceNode``, ``id``, ``ip``, ``state``,
``name``, ``isRunningMySQL``) and add ours beside them.
"""

from __future__ import annotations

import time
from typing import Any

from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role


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
    }


def node_details(node: Node, report: dict[str, Any] | None, answering: bool) -> dict[str, Any]:
    agent = report or node.details.get("agent") or {}
    mysqld = agent.get("mysqld", {}) if isinstance(agent, dict) else {}
    return {
        **node_summary(node),
        "isRunningMySQL": answering,
        "agent_port": node.agent_port,
        "cloud_ref": node.cloud_ref,
        "agent_state": agent.get("state") if isinstance(agent, dict) else None,
        "mysqld": {
            "pid": mysqld.get("pid"),
            "restarts": mysqld.get("restarts", 0),
            "last_exit": mysqld.get("last_exit"),
            "uptime": mysqld.get("uptime"),
            "version": mysqld.get("version"),
        },
        "state_since": node.state_since,
        "created_at": node.created_at,
        "registered_at": node.registered_at,
        "last_seen": node.details.get("last_seen"),
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


def _slave_status(report: dict[str, Any] | None) -> dict[str, Any]:
    status = (report or {}).get("replication") or {}
    return status.get("slave") or {}


def readers(nodes: list[Node], reports: dict[int, Any], max_lag: float) -> list[dict[str, Any]]:
    """The slaves fit to serve reads: replicating, at most ``max_lag`` seconds behind."""
    found = []
    for node in nodes:
        if node.role is not Role.SLAVE or node.state is not NodeState.RUNNING:
            continue
        slave = _slave_status(reports.get(node.id))
        lag = slave.get("seconds_behind_master")
        if slave.get("io_running") == "Yes" and slave.get("sql_running") == "Yes" \
                and lag is not None and lag <= max_lag:
            found.append({**(endpoint(node) or {}), "seconds_behind_master": lag})
    return found


def replication_of(node: Node, report: dict[str, Any] | None,
                   master_report: dict[str, Any] | None, seeding: bool) -> dict[str, Any]:
    """A node's replication as shown in ``get_node_info``."""
    status = (report or {}).get("replication") or {}
    slave = status.get("slave") or {}
    mine = status.get("gtid_current_pos") or ""
    theirs = ((master_report or {}).get("replication") or {}).get("gtid_current_pos")
    lag_trx = None
    if theirs is not None:
        try:
            lag_trx = GtidPosition.parse(mine).behind(GtidPosition.parse(theirs))
        except ValueError:
            lag_trx = None
    return {
        "role": node.role.value,
        "read_only": status.get("read_only"),
        "gtid_position": mine,
        "gtid_binlog_pos": status.get("gtid_binlog_pos"),
        "semi_sync_master": status.get("semi_sync_master"),
        "semi_sync_slave": status.get("semi_sync_slave"),
        "master_host": slave.get("master_host"),
        "io_running": slave.get("io_running"),
        "sql_running": slave.get("sql_running"),
        "seconds_behind_master": slave.get("seconds_behind_master"),
        "lag_transactions": lag_trx,
        "last_error": slave.get("last_sql_error") or slave.get("last_io_error") or None,
        "copying": seeding,
    }
