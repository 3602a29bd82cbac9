"""The manager's durable state: the service, its nodes and their history.

The store holds the authoritative copy in memory: reads never touch the disk,
and a change is made in memory at once, then queued, in order, to one writer
thread that commits it to SQLite (WAL, ``synchronous=FULL``), so that no caller
on the event loop waits for a disk sync. Every change is written with its time
and reason in one transaction, so the database always holds a consistent
picture: the state as of some moment.

What a crash may lose: the changes not committed yet, those of the last
milliseconds (``close``, ``flush`` and ``durable`` wait for them). That is safe:
what the manager records of the world (a node's state, address, agent report)
a restarted manager reads again from its agents and clouds, and a decision that
acts on the world (a node destroyed) is acted on only once it is committed
(``durable``), so a crash forgets at most a decision not yet acted on (a removal
asked for a moment before it, to be asked again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState, can_move
from conpaassql.errors import IllegalMoveError

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


Statement = tuple[str, tuple[Any, ...]]

#: The history kept in memory: the latest entries of the service, and of each node.
HISTORY_KEPT = 1000


class Store:
    """Typed access to the manager's state: in memory, written behind by one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._statements: list[Statement] | None = None  # those of the change being made
        self._meta_values: dict[str, str] = {}
        self._nodes: dict[int, Node] = {}
        self._history: deque[HistoryEntry] = deque(maxlen=HISTORY_KEPT)
        self._node_history: dict[int, deque[HistoryEntry]] = {}
        self._next_seq = 1
        self._load(db)
        self._writer = _Writer(db, path)
        self._writer.start()
        with self._transaction():
            if self._meta("service_id") is None:
                now = time.time()
                self._set_meta("service_id", secrets.token_hex(4))
                self._set_meta("state", ServiceState.INIT.value)
                self._set_meta("state_since", repr(now))
                self._set_meta("next_node_id", "1")
                self._add_history(now, "service", None, None, ServiceState.INIT.value,
                                  "service created")

    def _load(self, db: sqlite3.Connection) -> None:
        for row in db.execute("SELECT key, value FROM meta"):
            self._meta_values[str(row[0])] = str(row[1])
        for row in db.execute("SELECT * FROM nodes ORDER BY id"):
            node = _node_of(row)
            self._nodes[node.id] = node
        rows = db.execute("SELECT * FROM history ORDER BY seq DESC LIMIT ?",
                          (HISTORY_KEPT,)).fetchall()
        for row in reversed(rows):
            self._remember(_entry_of(row))
        for node_id in self._nodes:
            rows = db.execute("SELECT * FROM history WHERE node_id = ? ORDER BY seq DESC "
                              "LIMIT ?", (node_id, HISTORY_KEPT)).fetchall()
            self._node_history[node_id] = deque((_entry_of(row) for row in reversed(rows)),
                                                maxlen=HISTORY_KEPT)
        last = db.execute("SELECT MAX(seq) FROM history").fetchone()[0]
        self._next_seq = int(last or 0) + 1

    def flush(self) -> None:
        """Wait until every change made so far is committed to the database."""
        self._writer.flush()

    async def durable(self) -> None:
        """Wait, without blocking the loop, until every change made so far is committed.

        Awaited before the world is changed on a decision (a node destroyed), so that
        a crash cannot lose the decision once it is acted on."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, written)

        if self._writer.when_written(wake):
            await written

    def close(self) -> None:
        """Commit what is queued, then stop the writer (blocks: a thread off the loop
        may call it)."""
        self._writer.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One change: made in memory under the lock, its statements committed together.

        A change checks what it needs before it touches memory, so a change that
        raises has changed nothing and is not written."""
        with self._lock:
            if self._statements is not None:  # nested: part of the outer change
                yield
                return
            self._statements = []
            try:
                yield
                statements = self._statements
            finally:
                self._statements = None
            if statements:
                self._writer.submit(statements)

    def _write(self, sql: str, *params: Any) -> None:
        assert self._statements is not None, "a write outside a transaction"
        self._statements.append((sql, params))

    def _meta(self, key: str) -> str | None:
        return self._meta_values.get(key)

    def _set_meta(self, key: str, value: str) -> None:
        self._meta_values[key] = value
        self._write("INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", key, value)

    def _add_history(self, at: float, subject: str, node_id: int | None,
                     from_state: str | None, to_state: str | None, message: str) -> None:
        entry = HistoryEntry(self._next_seq, at, subject, node_id, from_state, to_state,
                             message)
        self._next_seq += 1
        self._remember(entry)
        self._write("INSERT INTO history (seq, at, subject, node_id, from_state, to_state, "
                    "message) VALUES (?, ?, ?, ?, ?, ?, ?)", entry.seq, at, subject, node_id,
                    from_state, to_state, message)

    def _remember(self, entry: HistoryEntry) -> None:
        self._history.append(entry)
        if entry.node_id is not None:
            self._node_history.setdefault(
                entry.node_id, deque(maxlen=HISTORY_KEPT)).append(entry)

    # -- the service ------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """A value kept for another part of the manager (by a key of its own)."""
        with self._lock:
            return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._set_meta(key, value)

    @property
    def service_id(self) -> str:
        value = self._meta("service_id")
        assert value is not None
        return value

    def service_state(self) -> tuple[ServiceState, float]:
        with self._lock:
            state, since = self._meta("state"), self._meta("state_since")
        return ServiceState(state or "INIT"), float(since or 0)

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

    def _write_node(self, node: Node) -> Node:
        """Keep ``node`` as it is now (its details copied: the caller's dict is its own)."""
        details = json.dumps(node.details)
        node = replace(node, details=json.loads(details))
        self._nodes[node.id] = node
        self._write(
            "INSERT INTO nodes (id, name, cloud, state, role, ip, agent_port, mysql_port, "
            "cloud_ref, created_at, state_since, registered_at, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "name=excluded.name, cloud=excluded.cloud, state=excluded.state, "
            "role=excluded.role, ip=excluded.ip, agent_port=excluded.agent_port, "
            "mysql_port=excluded.mysql_port, cloud_ref=excluded.cloud_ref, "
            "state_since=excluded.state_since, registered_at=excluded.registered_at, "
            "details=excluded.details",
            node.id, node.name, node.cloud, node.state.value, node.role.value, node.ip,
            node.agent_port, node.mysql_port, node.cloud_ref, node.created_at,
            node.state_since, node.registered_at, details,
        )
        return node

    def update_node(self, node_id: int, **changes: Any) -> Node:
        """Change some fields of a node (not its state: see ``move_node``)."""
        allowed = {"name", "role", "ip", "agent_port", "mysql_port", "cloud_ref",
                   "registered_at", "details"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        with self._transaction():
            node = self._nodes.get(node_id)
            if node is None:
                raise KeyError(node_id)
            if "role" in changes:
                changes["role"] = Role(changes["role"])
            if not changes:
                return node
            return self._write_node(replace(node, **changes))

    def move_node(self, node_id: int, state: NodeState, reason: str) -> Node:
        """Move a node to ``state``, recording the transition and its reason.

        Raises ``IllegalMoveError`` (and changes nothing) if the node may not go
        from its state to ``state``; a move to the state it is in records nothing.
        """
        with self._transaction():
            current = self._nodes.get(node_id)
            if current is None:
                raise KeyError(node_id)
            if current.state is state:
                return current
            if not can_move(current.state, state):
                raise IllegalMoveError(detail=f"node {node_id} cannot move from "
                                       f"{current.state} to {state} ({reason})")
            now = time.time()
            moved = current.with_state(state, now)
            self._nodes[node_id] = moved
            self._write("UPDATE nodes SET state = ?, state_since = ? WHERE id = ?",
                        state.value, now, node_id)
            self._add_history(now, "node", node_id, current.state.value, state.value, reason)
        return moved

    def get_node(self, node_id: int) -> Node | None:
        return self._nodes.get(node_id)

    def nodes(self, *, include_terminated: bool = False) -> list[Node]:
        with self._lock:
            nodes = sorted(self._nodes.values(), key=lambda node: node.id)
        if include_terminated:
            return nodes
        return [node for node in nodes if node.state is not NodeState.TERMINATED]

    def rename_cloud(self, old: str, new: str) -> int:
        """Move every node stored as on cloud ``old`` to cloud ``new``; how many."""
        with self._transaction():
            renamed = [node for node in self._nodes.values() if node.cloud == old]
            for node in renamed:
                self._nodes[node.id] = replace(node, cloud=new)
            moved = len(renamed)
            if moved:
                self._write("UPDATE nodes SET cloud = ? WHERE cloud = ?", new, old)
                self._add_history(time.time(), "service", None, None, None,
                                  f"{moved} node(s) of cloud {old!r} now on cloud {new!r}")
        return moved

    # -- history ----------------------------------------------------------

    def record_event(self, message: str, node_id: int | None = None) -> None:
        with self._transaction():
            self._add_history(time.time(), "node" if node_id else "service", node_id,
                              None, None, message)

    def history(self, limit: int = 50, node_id: int | None = None) -> list[HistoryEntry]:
        """The latest ``limit`` entries (``HISTORY_KEPT`` at most), oldest first."""
        with self._lock:
            kept = self._history if node_id is None else self._node_history.get(node_id, ())
            entries = list(kept)
        return entries[-limit:] if limit > 0 else []

    def events_since(self, seq: int, *patterns: str) -> list[HistoryEntry]:
        """The committed entries after ``seq`` whose message is ``LIKE`` one of
        ``patterns``, oldest first. Read from the database (the whole history, not only
        the ``HISTORY_KEPT`` in memory): it blocks, so call it from a thread."""
        if not patterns:
            return []
        matching = " OR ".join("message LIKE ?" for _ in patterns)
        db = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                f"SELECT * FROM history WHERE seq > ? AND ({matching}) ORDER BY seq",
                (seq, *patterns)).fetchall()
        finally:
            db.close()
        return [_entry_of(row) for row in rows]


class _Writer:
    """The one thread that writes the store's changes to SQLite, in order.

    Changes queued while it commits are committed together (one sync for all),
    each one whole. A change that cannot be written is logged as an error and
    dropped: the manager goes on from its memory, and the database holds the
    picture from before that change.
    """

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._queue: queue.Queue[list[Statement] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="store writer", daemon=True)
        self._closed = False
        self._through = threading.Condition()
        self._submitted = 0  # changes queued so far
        self._written = 0  # changes the thread is through with (committed, or failed)
        self._waiters: list[tuple[int, Callable[[], None]]] = []

    def start(self) -> None:
        self._thread.start()

    def submit(self, statements: list[Statement]) -> None:
        if self._closed:
            log.error("store closed: a change was not written to %s", self._path)
            return
        with self._through:
            self._submitted += 1
        self._queue.put(statements)

    def flush(self) -> None:
        with self._through:
            target = self._submitted
            self._through.wait_for(lambda: self._written >= target)

    def when_written(self, callback: Callable[[], None]) -> bool:
        """Have ``callback`` called (in the writer thread) once the changes queued so
        far are written; False, and no call, if they are already."""
        with self._through:
            if self._written >= self._submitted:
                return False
            self._waiters.append((self._submitted, callback))
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        self._db.close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while batch[-1] is not None:
                    batch.append(self._queue.get_nowait())
            changes = [change for change in batch if change is not None]
            try:
                self._commit(changes)
            finally:
                self._through_with(len(changes))
            if batch[-1] is None:
                return

    def _through_with(self, count: int) -> None:
        with self._through:
            self._written += count
            ready = [call for ticket, call in self._waiters if ticket <= self._written]
            self._waiters = [(ticket, call) for ticket, call in self._waiters
                             if ticket > self._written]
            self._through.notify_all()
        for call in ready:
            call()

    def _commit(self, changes: list[list[Statement]]) -> None:
        if not changes:
            return
        try:
            self._apply([statement for change in changes for statement in change])
        except sqlite3.Error:
            for change in changes:  # one at a time, to lose only the one that fails
                try:
                    self._apply(change)
                except sqlite3.Error as exc:
                    log.error("STORE WRITE FAILED: a change of the manager's state was not "
                              "written to %s (%s: %s); it is kept in memory only",
                              self._path, type(exc).__name__, exc)

    def _apply(self, statements: list[Statement]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self._db.execute(sql, params)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _node_of(row: sqlite3.Row) -> Node:
    return Node(
        id=row["id"], name=row["name"], cloud=row["cloud"], state=NodeState(row["state"]),
        role=Role(row["role"]), ip=row["ip"], agent_port=row["agent_port"],
        mysql_port=row["mysql_port"], cloud_ref=row["cloud_ref"],
        created_at=row["created_at"], state_since=row["state_since"],
        registered_at=row["registered_at"], details=json.loads(row["details"] or "{}"),
    )


def _entry_of(row: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(row["seq"], row["at"], row["subject"], row["node_id"],
                        row["from_state"], row["to_state"], row["message"])


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
