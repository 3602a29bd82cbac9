"""An application's writes through the service's writer endpoint, as the failover
tests and the replication benchmark both run them.

``Writer`` inserts one unique row per autocommit statement into one table through
the endpoint that ``get_service_info`` names as ``writer``, as an application
would: on any failure it asks again where the writer is and reconnects. Every row
the server acknowledged is kept with its times and the node that took it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pymysql

from testbed.manager import Manager


@dataclass(frozen=True)
class Ack:
    row: int
    sent: float  # monotonic time the INSERT was sent
    at: float  # monotonic time the server acknowledged it
    node: int  # the node it was written to


@dataclass
class Writer:
    manager: Manager
    user: str
    password: str
    database: str = "app"
    table: str = "w"
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    acks: list[Ack] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    writers_seen: list[int] = field(default_factory=list)  # the nodes it connected to
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="writer")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _where(self) -> tuple[int, str, int] | None:
        try:
            found = self.manager.get("get_service_info").get("writer")
        except Exception:  # the manager may be busy failing over
            return None
        if not found:
            return None
        return int(found["id"]), str(found["ip"]), int(found["port"])

    def _connect(self) -> tuple[Any, int] | None:
        where = self._where()
        if where is None:
            return None
        try:
            connection = pymysql.connect(
                host=where[1], port=where[2], user=self.user, password=self.password,
                database=self.database, autocommit=True, connect_timeout=2, read_timeout=10,
                write_timeout=10, ssl_ca=str(self.manager.ca_file))
        except pymysql.MySQLError as exc:
            self.failures.append((time.monotonic(), f"connect: {exc}"))
            return None
        if not self.writers_seen or self.writers_seen[-1] != where[0]:
            self.writers_seen.append(where[0])
        return connection, where[0]

    def _run(self) -> None:
        connection: Any = None
        node = 0
        while not self._stop.is_set():
            if connection is None:
                connected = self._connect()
                if connected is None:
                    time.sleep(0.05)
                    continue
                connection, node = connected
            row = next(self.ids)  # a row whose fate is unknown is never tried again
            sent = time.monotonic()
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"INSERT INTO `{self.table}` (id, at) VALUES (%s, %s)",
                                   (row, time.time()))
            except pymysql.MySQLError as exc:
                self.failures.append((time.monotonic(), f"insert {row}: {exc}"))
                with contextlib.suppress(Exception):
                    connection.close()
                connection = None
                time.sleep(0.02)
                continue
            self.acks.append(Ack(row, sent, time.monotonic(), node))
            time.sleep(0.005)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    @property
    def acked(self) -> dict[int, float]:
        """Each acknowledged row and when it was acknowledged."""
        return {ack.row: ack.at for ack in list(self.acks)}

    def rows(self) -> set[int]:
        return {ack.row for ack in list(self.acks)}

    def count(self, node: int | None = None, after: float = 0.0) -> int:
        return sum(1 for ack in list(self.acks)
                   if ack.at > after and (node is None or ack.node == node))

    def first(self, after: float, node: int | None = None,
              not_node: int | None = None) -> Ack | None:
        for ack in list(self.acks):
            if ack.at > after and (node is None or ack.node == node) and \
                    (not_node is None or ack.node != not_node):
                return ack
        return None

    def longest_gap(self, since: float = -math.inf, until: float = math.inf) -> float:
        """The longest time between two consecutive acknowledgements that meets
        [since, until] (by default, over the whole run: the write outage)."""
        times = [ack.at for ack in list(self.acks)]
        return max((b - a for a, b in itertools.pairwise(times) if b >= since and a <= until),
                   default=0.0)
