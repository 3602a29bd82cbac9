"""How the manager shows nodes, the service and its performance to callers.

Result shapes keep the seed's keys (``serviceNode``, ``id``, ``ip``, ``state``,
``name``, ``isRunningMySQL``) and add ours beside them.
"""

from __future__ import annotations

import time
from typing import Any

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState


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
