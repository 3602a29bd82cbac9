"""A write workload that follows the service's writer (``testbed.workload``) into
``app.w``, and a watcher of read-only flags: ``Watcher`` samples every node's
``@@read_only`` to catch two writable servers at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pymysql

from conpaassql.layout import MYSQLD_SOCKET_FILE
from testbed.workload import Writer
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


def writer(manager: Manager) -> Writer:
    """The application's writer (``prepare`` made its table and account)."""
    return Writer(manager, APP_USER, APP_PASSWORD)


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
