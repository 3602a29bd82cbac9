"""The manager's durable state: the service, its nodes and their history.

SQLite in WAL mode with full sync, one writer (the manager's event loop). Every
state change is written with its time and reason in the same transaction as the
change itself, so a manager killed at any moment restarts from a consistent
picture.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState, can_move

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    cloud TEXT NOT NULL,
    state TEXT NOT NULL,
    role TEXT NOT NULL,
    ip TEXT,
    agent_port INTEGER NOT NULL,
    mysql_port INTEGER NOT NULL,
    cloud_ref TEXT,
    created_at REAL NOT NULL,
    state_since REAL NOT NULL,
    registered_at REAL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    subject TEXT NOT NULL,
    node_id INTEGER,
    from_state TEXT,
    to_state TEXT,
    message TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class HistoryEntry:
    seq: int
    at: float
    subject: str  # "service" or "node"
    node_id: int | None
    from_state: str | None
    to_state: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": self.at,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "subject": self.subject,
            "message": self.message,
        }
        if self.node_id is not None:
            entry["node"] = self.node_id
        if self.to_state is not None:
            entry["from"] = self.from_state
            entry["to"] = self.to_state
        return entry


class Store:
    """Typed access to the manager's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        with self._transaction():
            if self._meta("service_id") is None:
                now = time.time()
                self._set_meta("service_id", secrets.token_hex(4))
                self._set_meta("state", ServiceState.INIT.value)
                self._set_meta("state_since", repr(now))
                self._set_meta("next_node_id", "1")
                self._add_history(now, "service", None, None, ServiceState.INIT.value,
                                  "service created")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _add_history(self, at: float, subject: str, node_id: int | None,
                     from_state: str | None, to_state: str | None, message: str) -> None:
        self._db.execute(
            "INSERT INTO history (at, subject, node_id, from_state, to_state, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, subject, node_id, from_state, to_state, message),
        )

    # -- the service ------------------------------------------------------

    @property
    def service_id(self) -> str:
        value = self._meta("service_id")
        assert value is not None
        return value

    def service_state(self) -> tuple[ServiceState, float]:
        return ServiceState(self._meta("state") or "INIT"), float(self._meta("state_since") or 0)

    def set_service_state(self, state: ServiceState, reason: str) -> bool:
        """Move the service to ``state``; False if it was there already."""
        with self._transaction():
            current = ServiceState(self._meta("state") or "INIT")
            if current is state:
                return False
            now = time.time()
            self._set_meta("state", state.value)
            self._set_meta("state_since", repr(now))
            self._add_history(now, "service", None, current.value, state.value, reason)
        return True

    def server_options(self) -> dict[str, str]:
        """The service's server configuration (option name to value)."""
        found = json.loads(self._meta("server_options") or "{}")
        return {str(k): str(v) for k, v in found.items()}

    def set_server_options(self, options: dict[str, str], reason: str) -> None:
        """Replace the service's server configuration, with a history entry."""
        with self._transaction():
            self._set_meta("server_options", json.dumps(options, sort_keys=True))
            self._add_history(time.time(), "service", None, None, None, reason)

    # -- nodes ------------------------------------------------------------

    def new_node(self, name_prefix: str, cloud: str, agent_port: int,
                 mysql_port: int, role: Role = Role.NONE) -> Node:
        """Allocate an id and insert a PENDING node; ids are never reused."""
        with self._transaction():
            node_id = int(self._meta("next_node_id") or 1)
            self._set_meta("next_node_id", str(node_id + 1))
            now = time.time()
            node = Node(node_id, f"{name_prefix}-{node_id}", cloud, NodeState.PENDING, role,
                        None, agent_port, mysql_port, None, now, now)
            self._write_node(node)
            self._add_history(now, "node", node_id, None, NodeState.PENDING.value,
                              f"node {node_id} requested from cloud {cloud}")
        return node

    def _write_node(self, node: Node) -> None:
        self._db.execute(
            "INSERT INTO nodes (id, name, cloud, state, role, ip, agent_port, mysql_port, "
            "cloud_ref, created_at, state_since, registered_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, cloud=excluded.cloud, state=excluded.state, "
            "role=excluded.role, ip=excluded.ip, agent_port=excluded.agent_port, "
            "mysql_port=excluded.mysql_port, cloud_ref=excluded.cloud_ref, "
            "state_since=excluded.state_since, registered_at=excluded.registered_at, "
            "details=excluded.details",
            (node.id, node.name, node.cloud, node.state.value, node.role.value, node.ip,
             node.agent_port, node.mysql_port, node.cloud_ref, node.created_at,
             node.state_since, node.registered_at, json.dumps(node.details)),
        )

    def update_node(self, node_id: int, **changes: Any) -> Node:
        """Change some fields of a node (not its state: see ``move_node``)."""
        allowed = {"name", "role", "ip", "agent_port", "mysql_port", "cloud_ref",
                   "registered_at", "details"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        values = {key: _column(value) for key, value in changes.items()}
        with self._transaction():
            if values:
                assignments = ", ".join(f"{key} = ?" for key in values)
                self._db.execute(f"UPDATE nodes SET {assignments} WHERE id = ?",
                                 (*values.values(), node_id))
            node = self.get_node(node_id)
        if node is None:
            raise KeyError(node_id)
        return node

    def move_node(self, node_id: int, state: NodeState, reason: str) -> Node:
        """Move a node to ``state``, recording the transition and its reason."""
        now = time.time()
        with self._transaction():
            current = self.get_node(node_id)
            if current is None:
                raise KeyError(node_id)
            if current.state is not state and not can_move(current.state, state):
                log.warning("node %d: no move from %s to %s (%s)", node_id, current.state,
                            state, reason)
                return current
            if current.state is not state:
                self._db.execute("UPDATE nodes SET state = ?, state_since = ? WHERE id = ?",
                                 (state.value, now, node_id))
                self._add_history(now, "node", node_id, current.state.value, state.value,
                                  reason)
                current = current.with_state(state, now)
        return current

    def get_node(self, node_id: int) -> Node | None:
        row = self._db.execute("SELECT * FROM nodes WHERE id = ?", (node_id,)).fetchone()
        return None if row is None else _node_of(row)

    def nodes(self, *, include_terminated: bool = False) -> list[Node]:
        rows = self._db.execute("SELECT * FROM nodes ORDER BY id").fetchall()
        nodes = [_node_of(row) for row in rows]
        if include_terminated:
            return nodes
        return [node for node in nodes if node.state is not NodeState.TERMINATED]

    def rename_cloud(self, old: str, new: str) -> int:
        """Move every node stored as on cloud ``old`` to cloud ``new``; how many."""
        with self._transaction():
            moved = self._db.execute("UPDATE nodes SET cloud = ? WHERE cloud = ?",
                                     (new, old)).rowcount
            if moved:
                self._add_history(time.time(), "service", None, None, None,
                                  f"{moved} node(s) of cloud {old!r} now on cloud {new!r}")
        return int(moved)

    # -- history ----------------------------------------------------------

    def record_event(self, message: str, node_id: int | None = None) -> None:
        with self._transaction():
            self._add_history(time.time(), "node" if node_id else "service", node_id,
                              None, None, message)

    def history(self, limit: int = 50, node_id: int | None = None) -> list[HistoryEntry]:
        if node_id is None:
            rows = self._db.execute(
                "SELECT * FROM history ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM history WHERE node_id = ? ORDER BY seq DESC LIMIT ?",
                (node_id, limit)).fetchall()
        return [HistoryEntry(row["seq"], row["at"], row["subject"], row["node_id"],
                             row["from_state"], row["to_state"], row["message"])
                for row in reversed(rows)]


def _column(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    if hasattr(value, "value"):  # an enum
        return value.value
    return value


def _node_of(row: sqlite3.Row) -> Node:
    return Node(
        id=row["id"], name=row["name"], cloud=row["cloud"], state=NodeState(row["state"]),
        role=Role(row["role"]), ip=row["ip"], agent_port=row["agent_port"],
        mysql_port=row["mysql_port"], cloud_ref=row["cloud_ref"],
        created_at=row["created_at"], state_since=row["state_since"],
        registered_at=row["registered_at"], details=json.loads(row["details"] or "{}"),
    )
