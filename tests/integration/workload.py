"""A write workload that follows the service's writer, and a watcher of read-only flags.

``Writer`` inserts one unique row per statement into ``app.w`` through the
writer endpoint that ``get_service_info`` names, as an application would: on a
failure it asks again where the writer is and reconnects. Every row the server
acknowledged is remembered, with the time. ``Watcher`` samples every node's
``@@read_only`` to catch two writable servers at once.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from conpaassql.layout import MYSQLD_SOCKET_FILE
from tests.integration.harness import Manager

APP_USER = "app"
APP_PASSWORD = "app-pw-1"


def prepare(manager: Manager) -> None:
    """The application's database, table and account (through the manager)."""
    manager.post("create_database", database="app")
    manager.post("configure_user", username=APP_USER, password=APP_PASSWORD, database="app")
    master = manager.get("get_service_info")["master"]["id"]
    done = manager.sql(master, "CREATE TABLE app.w (id INT PRIMARY KEY, at DOUBLE)")
    assert done.returncode == 0, done.stderr


@dataclass
class Writer:
    manager: Manager
    acked: dict[int, float] = field(default_factory=dict)  # id -> time acknowledged
    failures: list[tuple[float, str]] = field(default_factory=list)
    writers_seen: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next: int = 1

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _writer(self) -> tuple[int, str, int] | None:
        try:
            found = self.manager.get("get_service_info").get("writer")
        except Exception:  # the manager may be busy failing over
            return None
        if not found:
            return None
        return int(found["id"]), str(found["ip"]), int(found["port"])

    def _run(self) -> None:
        connection: Any = None
        while not self._stop.is_set():
            if connection is None:
                where = self._writer()
                if where is None:
                    time.sleep(0.05)
                    continue
                try:
                    connection = pymysql.connect(host=where[1], port=where[2], user=APP_USER,
                                                 password=APP_PASSWORD, database="app",
                                                 autocommit=True, connect_timeout=2,
                                                 read_timeout=10, write_timeout=10,
                                                 ssl_ca=str(self.manager.ca_file))
                except pymysql.MySQLError as exc:
                    self.failures.append((time.monotonic(), f"connect: {exc}"))
                    time.sleep(0.05)
                    continue
                if not self.writers_seen or self.writers_seen[-1] != where[0]:
                    self.writers_seen.append(where[0])
            row = self._next
            try:
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO w (id, at) VALUES (%s, %s)", (row, time.time()))
            except pymysql.MySQLError as exc:
                self.failures.append((time.monotonic(), f"insert {row}: {exc}"))
                with contextlib.suppress(Exception):
                    connection.close()
                connection = None
                self._next += 1  # the fate of this row is unknown: never reuse its id
                time.sleep(0.02)
                continue
            self.acked[row] = time.monotonic()
            self._next += 1
            time.sleep(0.005)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def longest_gap(self) -> float:
        """The longest time between two acknowledged writes (the write outage)."""
        times = sorted(self.acked.values())
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


@dataclass
class Watcher:
    """Samples ``@@read_only`` of every node over its socket, as root."""

    manager: Manager
    node_ids: list[int]
    interval: float = 0.05
    samples: int = 0
    violations: list[tuple[float, list[int]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _writable(self, node_id: int) -> bool:
        socket = self.manager.node_dir(node_id) / MYSQLD_SOCKET_FILE
        try:
            connection = pymysql.connect(unix_socket=str(socket), user="root",
                                         password=self.manager.root_password.encode(),
                                         connect_timeout=0.5, read_timeout=0.5)
        except (pymysql.MySQLError, OSError):
            return False
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT @@global.read_only")
                row = cursor.fetchone()
                return row is not None and int(row[0]) == 0
        except (pymysql.MySQLError, OSError):
            return False
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            writable = [n for n in self.node_ids if self._writable(n)]
            self.samples += 1
            if len(writable) > 1:
                self.violations.append((time.monotonic(), writable))
