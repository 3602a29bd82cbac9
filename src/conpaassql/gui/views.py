"""What the pages show, read from the manager's API and shaped for the templates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conpaassql.errors import ConpaasSQLError, RemoteError
from conpaassql.rpc.client import RpcClient

HISTORY_LIMIT = 200
#: How far back in a node's history its reason for failing is looked for.
REASON_LOOKBACK = 50


@dataclass
class NodeRow:
    """One line of the nodes table."""

    id: int
    name: str
    cloud: str
    ip: str
    port: int | None
    role: str
    state: str
    running_mysql: bool | None = None
    lag: float | None = None
    lag_trx: int | None = None
    gtid: str = ""
    copying: bool = False
    replicating: str = ""
    last_error: str | None = None
    info_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        if not self.ip:
            return ""
        return f"{self.ip}:{self.port}" if self.port else self.ip

    @property
    def promotable(self) -> bool:
        return self.role == "slave" and self.state == "RUNNING" and not self.copying

    @property
    def removable(self) -> bool:
        return self.state not in ("TERMINATING", "TERMINATED")


def _row(summary: Mapping[str, Any], info: Mapping[str, Any] | None,
         error: str | None) -> NodeRow:
    source = {**summary, **(info or {})}
    port = source.get("port")
    row = NodeRow(
        id=int(source["id"]), name=str(source.get("name") or ""),
        cloud=str(source.get("cloud") or ""), ip=str(source.get("ip") or ""),
        port=port if isinstance(port, int) else None, role=str(source.get("role") or "none"),
        state=str(source.get("state") or "?"), info_error=error)
    if info is None:
        return row
    replication = info.get("replication") or {}
    row.running_mysql = bool(info.get("isRunningMySQL"))
    row.lag = replication.get("seconds_behind_master")
    row.lag_trx = replication.get("lag_transactions")
    row.gtid = str(replication.get("gtid_position") or "")
    row.copying = bool(replication.get("copying"))
    io, sql = replication.get("io_running"), replication.get("sql_running")
    if io or sql:
        row.replicating = f"io {io or '-'}, sql {sql or '-'}"
    row.last_error = replication.get("last_error")
    return row


async def node_rows(client: RpcClient) -> list[NodeRow]:
    """``list_nodes``, with each node's ``get_node_info`` asked for at once."""
    listed = await client.get("list_nodes")
    summaries = [n for n in listed.get("nodes", []) if isinstance(n, Mapping)]
    answers = await asyncio.gather(
        *(client.get("get_node_info", serviceNodeId=n["id"]) for n in summaries),
        return_exceptions=True)
    rows = []
    for summary, answer in zip(summaries, answers, strict=True):
        if isinstance(answer, ConpaasSQLError):
            rows.append(_row(summary, None, str(answer)))
        elif isinstance(answer, BaseException):
            raise answer
        else:
            rows.append(_row(summary, answer.get("serviceNode"), None))
    return sorted(rows, key=lambda row: row.id)


async def node_states(client: RpcClient) -> list[dict[str, Any]]:
    """The short record of every node (id, state, role...), for watching them change."""
    listed = await client.get("list_nodes")
    return [dict(n) for n in listed.get("nodes", []) if isinstance(n, Mapping)]


async def failure_reason(client: RpcClient, node_id: int) -> str:
    """Why a node is FAILED: the reason of its last move to FAILED in its history
    ("" when the manager keeps none, or the node has gone meanwhile)."""
    try:
        answer = await client.get("get_service_history", serviceNodeId=node_id,
                                  limit=REASON_LOOKBACK)
    except RemoteError as exc:
        if exc.http_status in (401, 403):
            raise
        return ""
    entries = [e for e in answer.get("history", []) if isinstance(e, Mapping)]
    return next((str(e.get("message") or "") for e in reversed(entries)
                 if e.get("to") == "FAILED"), "")


async def watched_states(client: RpcClient) -> list[dict[str, Any]]:
    """``node_states``, a FAILED node's with its ``reason``."""
    nodes = await node_states(client)
    failed = [node for node in nodes if node.get("state") == "FAILED"]
    reasons = await asyncio.gather(*(failure_reason(client, node["id"]) for node in failed))
    for node, reason in zip(failed, reasons, strict=True):
        node["reason"] = reason
    return nodes


async def history(client: RpcClient, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The service's history (a manager without ``get_service_history`` gives the
    transitions of ``get_service_info``)."""
    try:
        answer = await client.get("get_service_history", limit=limit)
    except RemoteError as exc:
        if exc.http_status != 404:
            raise
        answer = {"history": (await client.get("get_service_info")).get("transitions", [])}
    return [dict(entry) for entry in answer.get("history", []) if isinstance(entry, Mapping)]


def clouds(info: Mapping[str, Any]) -> list[str]:
    """The clouds nodes may be added to."""
    listed = info.get("clouds")
    if isinstance(listed, list) and listed:
        return [str(name) for name in listed]
    cloud = info.get("cloud")
    if isinstance(cloud, Mapping) and cloud.get("cloud"):
        return [str(cloud["cloud"])]
    return []


def connect_command(endpoint: Mapping[str, Any] | None, user: str = "USER") -> str | None:
    """The ``mariadb`` command line to reach an endpoint (TLS; the password asked)."""
    if not endpoint or not endpoint.get("ip"):
        return None
    port = endpoint.get("port") or 3306
    return f"mariadb --ssl -h {endpoint['ip']} -P {port} -u {user} -p"


def endpoint_commands(endpoints: Any, user: str = "USER") -> list[tuple[str, str, str]]:
    """``get_service_info``'s ``endpoints`` (the router's addresses): each name, its
    ``host:port`` and the ``mariadb`` line to copy."""
    if not isinstance(endpoints, Mapping):
        return []
    found = []
    for name in ("writer", "readers"):
        where = endpoints.get(name)
        if isinstance(where, Mapping) and where.get("host") and where.get("port"):
            host, port = where["host"], where["port"]
            found.append((name, f"{host}:{port}",
                          f"mariadb --ssl --ssl-ca=ca.crt -h {host} -P {port} -u {user} -p"))
    return found


async def metrics(client: RpcClient) -> dict[str, Any]:
    """One sample for the charts: per running node, queries per second, connections
    and (for slaves) seconds behind the master."""
    performance = await client.get("get_service_performance")
    figures = [n for n in performance.get("nodes", []) if isinstance(n, Mapping)]
    infos = await asyncio.gather(
        *(client.get("get_node_info", serviceNodeId=n["id"]) for n in figures),
        return_exceptions=True)
    nodes = []
    for node, info in zip(figures, infos, strict=True):
        lag = None
        if isinstance(info, Mapping):
            replication = (info.get("serviceNode") or {}).get("replication") or {}
            lag = replication.get("seconds_behind_master")
        elif isinstance(info, BaseException) and not isinstance(info, ConpaasSQLError):
            raise info
        nodes.append({"id": node["id"], "role": node.get("role"),
                      "qps": node.get("queries_per_second"),
                      "connections": node.get("connections"),
                      "lag": lag if node.get("role") == "slave" else None})
    return {"at": time.time(), "nodes": nodes,
            "unreachable": performance.get("unreachable", [])}


def _first_node(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """The master's part of a per-node answer (the manager lists it first)."""
    nodes = [n for n in answer.get("nodes", []) if isinstance(n, Mapping)]
    return nodes[0] if nodes else {}


async def users(client: RpcClient) -> list[dict[str, Any]]:
    """The accounts, as the master has them (the slaves get them from it)."""
    node = _first_node(await client.get("get_users"))
    found = [dict(u) for u in node.get("users", []) if isinstance(u, Mapping)]
    return sorted(found, key=lambda u: (bool(u.get("reserved")), str(u.get("username")),
                                        str(u.get("host"))))


async def databases(client: RpcClient) -> list[dict[str, Any]]:
    """The user databases, as the master has them."""
    node = _first_node(await client.get("list_databases"))
    found = [dict(d) for d in node.get("databases", []) if isinstance(d, Mapping)]
    return sorted(found, key=lambda d: str(d.get("database")))

