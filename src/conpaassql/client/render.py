"""How the client shows a result: JSON, the raw log, or readable tables.

JSON keeps the manager's key order. ``tables_for`` picks the tables of a method
from whatever shape its result has; ``None`` means "no table fits, show JSON".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

from rich.table import Table
from rich.text import Text

from conpaassql.rpc.units import human_bytes

NODE_COLUMNS = ("id", "name", "cloud", "ip", "state", "role")
MAX_DEPTH = 4
LOG_METHODS = frozenset({"getLog", "get_agent_log"})
"""The methods whose result is a log, printed as raw text."""

Record = Mapping[str, Any]


def format_json(result: Any) -> str:
    """The result as pretty JSON, in the order the manager sent it."""
    return json.dumps(result, indent=2, ensure_ascii=False)


def log_text(result: Any) -> str | None:
    """The text of a log result: ``{"log": text, ...}`` or a bare string."""
    if isinstance(result, str):
        return result
    if isinstance(result, Mapping) and isinstance(result.get("log"), str):
        text: str = result["log"]
        return text
    return None


def cell(value: Any) -> str:
    """One value as table text: scalars as is, containers as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str | int):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def text(value: Any) -> Text:
    """A cell, taken literally (a server's ``[red]`` is not rich markup)."""
    return Text(value if isinstance(value, str) else cell(value))


def _is_records(value: Any) -> TypeGuard[list[Record]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, Mapping) for item in value)
    )


def key_value_table(title: str, data: Record) -> Table:
    table = Table(title=text(title))
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(text(str(key)), text(value))
    return table


def records_table(title: str, records: Sequence[Record],
                  columns: Sequence[str] | None = None) -> Table:
    """A table of records; the columns default to every key, in order of appearance."""
    if columns is None:
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(str(key) for key in record))
        columns = list(seen)
    table = Table(title=text(title))
    for column in columns:
        table.add_column(text(column))
    for record in records:
        table.add_row(*(text(record.get(column)) for column in columns))
    return table


def nodes_tables(result: Any) -> list[Table] | None:
    """``list_nodes``: the node details if present, else the ids of every list."""
    if not isinstance(result, Mapping):
        return None
    details = result.get("nodes")
    if _is_records(details):
        return [records_table("nodes", details, NODE_COLUMNS)]
    groups = {str(key): value for key, value in result.items() if isinstance(value, list)}
    if not groups:
        return None
    if any(_is_records(items) for items in groups.values()):
        rows = [
            {"list": key, **(item if isinstance(item, Mapping) else {"id": item})}
            for key, items in groups.items()
            for item in items
        ]
        columns = ("list", *NODE_COLUMNS) if len(groups) > 1 else NODE_COLUMNS
        return [records_table("nodes", rows, columns)]
    table = Table(title="nodes")
    table.add_column("id", justify="right")
    if len(groups) > 1:
        table.add_column("list")
    for key, items in groups.items():
        for item in items:
            table.add_row(text(item), *([text(key)] if len(groups) > 1 else []))
    return [table]


def node_tables(result: Any) -> list[Table] | None:
    """``get_node_info``: key/value rows of the node (``{"serviceNode": {...}}``)."""
    if not isinstance(result, Mapping):
        return None
    node: Record = result
    if len(result) == 1:
        only = next(iter(result.values()))
        if isinstance(only, Mapping):
            node = only
    return [key_value_table("node", node)]


def service_tables(result: Any) -> list[Table] | None:
    """``get_service_info``: key/value rows, then a table per list of records
    (the state transitions, the nodes...)."""
    if not isinstance(result, Mapping):
        return None
    scalars = {key: value for key, value in result.items()
               if not _is_records(value) and key != "endpoints"}
    tables = [key_value_table("service", scalars)]
    endpoints = endpoints_table(result.get("endpoints"))
    if endpoints is not None:
        tables.append(endpoints)
    for key, value in result.items():
        if _is_records(value):
            columns = NODE_COLUMNS if key == "nodes" else None
            tables.append(records_table(str(key), value, columns))
    return tables


def connect_line(host: str, port: Any, user: str = "USER") -> str:
    """The ``mariadb`` command line to copy for an address (TLS checked against the
    service's CA; the password asked)."""
    return f"mariadb --ssl --ssl-ca=ca.crt -h {host} -P {port} -u {user} -p"


def endpoints_table(endpoints: Any) -> Table | None:
    """``get_service_info``'s ``endpoints``: the writer and readers addresses, each
    with its connection line."""
    if not isinstance(endpoints, Mapping) or not endpoints:
        return None
    table = Table(title=text("endpoints"))
    table.add_column("endpoint")
    table.add_column("connect (the address in -h and -P)", no_wrap=True)  # kept whole, to copy
    for name, where in endpoints.items():
        if isinstance(where, Mapping) and where.get("host"):
            table.add_row(text(name), text(connect_line(str(where["host"]), where.get("port"))))
    return table


def figures(data: Record, prefix: str = "", depth: int = 0) -> dict[str, int | float]:
    """The numeric values of ``data``, nested mappings flattened to ``a.b`` names."""
    found: dict[str, int | float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            found[name] = value
        elif isinstance(value, Mapping) and depth < MAX_DEPTH:
            found.update(figures(value, f"{name}.", depth + 1))
    return found


def _per_node(result: Record) -> list[tuple[str, dict[str, int | float]]]:
    """The per-node figures of a performance result, as (node id, figures)."""
    nodes = result.get("nodes")
    if _is_records(nodes):
        return [
            (cell(record.get("id", index)),
             {k: v for k, v in figures(record).items() if k != "id"})
            for index, record in enumerate(nodes, start=1)
        ]
    source = nodes if isinstance(nodes, Mapping) else result
    return [
        (str(key), figures(value))
        for key, value in source.items()
        if isinstance(value, Mapping) and figures(value)
    ]


PERFORMANCE_COLUMNS = {
    "queries_per_second": "qps",
    "com_select_per_second": "select/s",
    "com_insert_per_second": "insert/s",
    "com_update_per_second": "update/s",
    "com_delete_per_second": "delete/s",
    "connections": "conns",
    "threads_running": "running",
    "lag_seconds": "lag s",
    "slow_queries": "slow",
    "uptime": "uptime s",
}
"""The per-node figures a performance table shows (with short headers), when present."""


def performance_tables(result: Any) -> list[Table] | None:
    """``get_service_performance``: service-wide figures, then one row per node."""
    if not isinstance(result, Mapping):
        return None
    tables: list[Table] = []
    overall = {
        key: value for key, value in result.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if overall:
        tables.append(key_value_table("service", overall))
    total = result.get("total")
    if isinstance(total, Mapping):
        shown = {k: v for k, v in figures(total).items() if k != "at"}
        tables.append(key_value_table("service total", shown))
    rows = _per_node(result)
    if rows:
        columns: dict[str, None] = {}
        for _, found in rows:
            columns.update(dict.fromkeys(found))
        headers = {column: column for column in columns}
        preferred = {c: h for c, h in PERFORMANCE_COLUMNS.items() if c in columns}
        if preferred:  # a readable few rather than every counter
            headers = preferred
        table = Table(title="nodes")
        table.add_column("node")
        for header in headers.values():
            table.add_column(text(header), justify="right")
        for node, found in rows:
            table.add_row(text(node), *(text(_rounded(found.get(column)))
                                        for column in headers))
        tables.append(table)
    return tables or None


def _rounded(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def _node_records(result: Any, key: str) -> list[tuple[Record, list[Any]]] | None:
    """The nodes of a per-node result (``{"nodes": [{..., key: [...]}]}``), each with
    its list under ``key``; ``None`` if the result has another shape."""
    nodes = result.get("nodes") if isinstance(result, Mapping) else None
    if not _is_records(nodes):
        return None
    found: list[tuple[Record, list[Any]]] = []
    for node in nodes:
        items = node.get(key)
        if not isinstance(items, list):
            return None
        found.append((node, items))
    return found


def _node_cell(node: Record) -> Text:
    role = node.get("role")
    return text(f"{cell(node.get('id'))} ({role})" if role else node.get("id"))


def users_tables(result: Any) -> list[Table] | None:
    """``get_users``: one row per node and user; a node without users has a row of its own."""
    nodes = _node_records(result, "users")
    if nodes is None:
        return None
    table = Table(title="users")
    for column in ("node", "user", "host", "can_login", "grants"):
        table.add_column(column)
    for node, users in nodes:
        for user in users or [{}]:
            record: Record = user if isinstance(user, Mapping) else {"username": user}
            grants = record.get("grants")
            shown = "\n".join(map(cell, grants)) if isinstance(grants, list) else grants
            table.add_row(_node_cell(node), text(record.get("username")),
                          text(record.get("host")), text(record.get("can_login")),
                          text(shown))
    return [table]


def databases_tables(result: Any) -> list[Table] | None:
    """``list_databases``: one row per node and database, sizes readable."""
    nodes = _node_records(result, "databases")
    if nodes is None:
        return None
    table = Table(title="databases")
    table.add_column("node")
    table.add_column("database")
    table.add_column("size", justify="right")
    table.add_column("tables", justify="right")
    for node, databases in nodes:
        for database in databases or [{}]:
            record: Record = database if isinstance(database, Mapping) else {"name": database}
            size = record.get("size_bytes")
            readable = (human_bytes(size) if isinstance(size, int | float)
                        and not isinstance(size, bool) else size)
            table.add_row(_node_cell(node), text(record.get("name")), text(readable),
                          text(record.get("tables")))
    return [table]


HISTORY_COLUMNS = ("time", "node", "from", "to", "message")


def history_tables(result: Any) -> list[Table] | None:
    """``get_service_history``: one row per transition or event, oldest first."""
    entries = result.get("history") if isinstance(result, Mapping) else None
    if entries == []:
        return [records_table("history", [], HISTORY_COLUMNS)]
    if not _is_records(entries):
        return None
    return [records_table("history", entries, HISTORY_COLUMNS)]


CONFIGURATION_COLUMNS = ("node", "role", "option", "wanted", "effective", "restart pending")


def configuration_tables(result: Any) -> list[Table] | None:
    """``get_server_configuration``: the options, then one row per node and option."""
    if not isinstance(result, Mapping) or not isinstance(result.get("options"), Mapping):
        return None
    options: Record = result["options"]
    tables = [key_value_table("server configuration", options)]
    rows = []
    for node in result.get("nodes") or []:
        if not isinstance(node, Mapping):
            return None
        pending = node.get("pending_restart") or []
        effective = node.get("effective") or {}
        for name in sorted(set(options) | set(pending)):
            rows.append({"node": node.get("id"), "role": node.get("role"), "option": name,
                         "wanted": options.get(name), "effective": effective.get(name),
                         "restart pending": "yes" if name in pending else ""})
    tables.append(records_table("nodes", rows, CONFIGURATION_COLUMNS))
    restart = result.get("restart")
    if isinstance(restart, Mapping):
        tables.append(key_value_table("last rolling restart", restart))
    return tables


BACKUP_COLUMNS = ("id", "kind", "state", "started", "finished", "gtid", "size", "node",
                  "parent", "verified")


def _verified(verified: Any) -> Any:
    """A backup's ``verified``: ``ok, 12 tables``, ``FAILED: ...``, ``running`` or nothing
    (``list_backups`` without ``--table`` has the time and the whole error)."""
    if not isinstance(verified, Mapping):
        return verified
    if verified.get("state") == "running":
        return "running"
    if verified.get("ok"):
        return f"ok, {verified.get('tables')} tables"
    return f"FAILED: {verified.get('error')}"[:60]


def _utc(at: Any) -> Any:
    """Epoch seconds as ``2026-12-07 10:30:00`` (UTC); anything else as it is."""
    if isinstance(at, int | float) and not isinstance(at, bool):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return at


def backups_tables(result: Any) -> list[Table] | None:
    """``list_backups``: one row per backup (times in UTC), then the restorable window."""
    if not isinstance(result, Mapping) or not isinstance(result.get("backups"), list):
        return None
    backups = result["backups"]
    if backups and not _is_records(backups):
        return None
    rows = []
    for backup in backups:
        size = backup.get("bytes")
        rows.append({**backup, "started": _utc(backup.get("started")),
                     "finished": _utc(backup.get("finished")),
                     "size": human_bytes(size) if isinstance(size, int) else size,
                     "verified": _verified(backup.get("verified"))})
    tables = [records_table("backups (UTC)", rows, BACKUP_COLUMNS)]
    window = result.get("restorable")
    if isinstance(window, Mapping):
        tables.append(key_value_table("restorable (UTC)",
                                      {key: _utc(at) for key, at in window.items()}))
    return tables


TABLES: dict[str, Callable[[Any], list[Table] | None]] = {
    "list_nodes": nodes_tables,
    "get_node_info": node_tables,
    "get_service_info": service_tables,
    "get_service_performance": performance_tables,
    "get_users": users_tables,
    "list_databases": databases_tables,
    "get_service_history": history_tables,
    "get_server_configuration": configuration_tables,
    "list_backups": backups_tables,
}
"""The table renderer of each manager method; the others are shown as JSON."""


def tables_for(method: str, result: Any) -> list[Table] | None:
    """The tables showing ``result`` of ``method``, or ``None`` to show JSON."""
    renderer = TABLES.get(method)
    return renderer(result) if renderer is not None else None
