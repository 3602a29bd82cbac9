"""A real ``conpaassql router`` (and its HAProxy) in front of a test or benchmark
manager, on loopback addresses of the manager's own 127.0.N.0/24, and the
application's view through it: a MySQL connection to the writer or the readers,
and a ``Writer`` that always connects to the writer address."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from testbed.manager import REPO, HarnessError, Manager, stop_child, wait_until
from testbed.workload import Ack, Writer


class Router:
    """One router process: its writer on ``127.0.<subnet>.2:3306``, its readers on
    ``127.0.<subnet>.2:3307`` (the nodes take .10 and up)."""

    def __init__(self, manager: Manager, subnet: int, *options: str,
                 host: str | None = None, name: str = "r1") -> None:
        self.manager = manager
        self.host = host or f"127.0.{subnet}.2"
        self.writer = (self.host, 3306)
        self.readers = (self.host, 3307)
        self.state_dir = manager.state_dir / f"router-{name}"
        self.options = ["--name", name, *options]
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "conpaassql", "router",
                "--manager", f"127.0.0.1:{self.manager.port}",
                "--writer", f"{self.writer[0]}:{self.writer[1]}",
                "--readers", f"{self.readers[0]}:{self.readers[1]}",
                "--state-dir", str(self.state_dir), *self.options, *extra]

    @property
    def log(self) -> Path:
        return self.manager.state_dir / f"{self.state_dir.name}.out"

    def start(self, timeout: float = 30.0) -> Router:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=REPO, start_new_session=True)

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise HarnessError(f"the router exited with {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:]}")
            return (self.state_dir / "haproxy.sock").exists()

        wait_until(up, timeout, 0.1, "the router's HAProxy")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace=10)
            self.process = None

    def pids(self) -> list[int]:
        """The router's process and HAProxy's (master and worker)."""
        if self.process is None:
            return []
        found = [self.process.pid]
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found += map(int, children)
            todo += map(int, children)
        return found

    def connect(self, where: tuple[str, int], user: str, password: str,
                database: str | None = None, timeout: float = 2) -> Any:
        """A client connection through the router (TLS with the service's CA)."""
        return pymysql.connect(host=where[0], port=where[1], user=user, password=password,
                               database=database, autocommit=True, connect_timeout=timeout,
                               read_timeout=10, write_timeout=10,
                               ssl_ca=str(self.manager.ca_file))

    def ask(self, where: tuple[str, int], user: str, password: str, statement: str) -> Any:
        """The first value of ``statement``'s first row, on a new connection."""
        connection = self.connect(where, user, password)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
                row = cursor.fetchone()
                return None if row is None else row[0]
        finally:
            connection.close()


@dataclass
class RouterWriter(Writer):
    """The workload's writer on a new connection for each insert to one fixed address
    (the router's writer), retrying on any error."""

    address: tuple[str, int] = ("127.0.0.1", 3306)
    new_connection_each_time: bool = True

    def _where(self) -> tuple[int, str, int] | None:
        return 0, self.address[0], self.address[1]

    def _run(self) -> None:
        if not self.new_connection_each_time:
            super()._run()
            return
        while not self._stop.is_set():
            connected = self._connect()
            if connected is None:
                time.sleep(0.02)
                continue
            connection = connected[0]
            row = next(self.ids)
            sent = time.monotonic()
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"INSERT INTO `{self.table}` (id, at) VALUES (%s, %s)",
                                   (row, time.time()))
                self.acks.append(self._ack(row, sent))
            except pymysql.MySQLError as exc:
                self.failures.append((time.monotonic(), f"insert {row}: {exc}"))
                time.sleep(0.02)
            finally:
                with contextlib.suppress(Exception):
                    connection.close()

    @staticmethod
    def _ack(row: int, sent: float) -> Ack:
        return Ack(row, sent, time.monotonic(), 0)
