"""How fast does the local cloud provision a node, against what a bare MariaDB needs?

Run from the repository root::

    .venv/bin/python bench/provision.py

Measured in one run:

1. the floor: ``mariadb-install-db`` into a fresh directory, then ``mariadbd`` on it,
   timed from the start of install-db to the first answered ``SELECT 1``;
2. one node: ``add_nodes`` (count 1) on a warm manager (its datadir template built)
   to the first ``SELECT 1`` answered by the node's own server (and to RUNNING);
3. four nodes at once: ``add_nodes`` (count 4) to all four answering (and RUNNING);
4. the resident memory of the manager, of one agent and of its mariadbd while four
   nodes run.

Prints a table, then one JSON line. Everything started here is stopped and every
temporary directory removed, also on failure or interruption; every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from rich.console import Console
from rich.table import Table

from benchlib import (
    BenchError,
    ManagerProcess,
    median,
    quiet_signals,
    report,
    signals_raise,
    vmrss_mb,
)
from conpaassql.cloud.local import (
    port_free,
    read_pid,
)
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE
from conpaassql.mysql.binaries import INSTALL_DB, SERVER, find_binary
from testbed.manager import stop_child, wait_until

REPO = Path(__file__).resolve().parents[1]
SQL_POLL = 0.01  # seconds between two SELECT 1 attempts (per server)
STATE_POLL = 0.05  # seconds between two list_nodes calls while waiting for RUNNING
FLOOR_ADDRESS = "127.0.99.1"
MYSQL_PORT = 3306
FLOOR_TARGET = 1.0  # 1 node / floor
FOUR_TARGET = 3.0  # 4 nodes / floor

err = Console(stderr=True)


# -- small helpers ------------------------------------------------------------


def select_one(socket_path: Path, password: str) -> bool:
    """True when the server on ``socket_path`` answers ``SELECT 1`` to root."""
    if not socket_path.exists():
        return False
    try:
        connection = pymysql.connect(unix_socket=str(socket_path), user="root",
                                     password=password, connect_timeout=2, read_timeout=2,
                                     write_timeout=2, autocommit=True)
    except (pymysql.MySQLError, OSError):
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except (pymysql.MySQLError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def wait_sql(sockets: dict[int, Path], password: str, started: float,
             timeout: float) -> dict[int, float]:
    """Seconds from ``started`` (perf_counter) until each socket's server answers."""
    answered: dict[int, float] = {}
    deadline = started + timeout
    while len(answered) < len(sockets):
        for key, path in sockets.items():
            if key not in answered and select_one(path, password):
                answered[key] = time.perf_counter() - started
        if len(answered) == len(sockets):
            break
        if time.perf_counter() > deadline:
            missing = sorted(set(sockets) - set(answered))
            raise BenchError(f"no SELECT 1 from {missing} within {timeout:g}s")
        time.sleep(SQL_POLL)
    return answered


def run_bounded(args: list[str], timeout: float, output: Path) -> None:
    """Run ``args`` to completion within ``timeout``; its whole group dies on failure."""
    with open(output, "wb") as log:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{Path(args[0]).name} took over {timeout:g}s") from None
    finally:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if status != 0:
        tail = output.read_text(errors="replace")[-800:]
        raise BenchError(f"{Path(args[0]).name} exited with {status}: {tail}")


# -- 1. the floor ---------------------------------------------------------------


def floor_once(base: Path, index: int, timeout: float) -> tuple[float, float]:
    """install-db + first start of a bare mariadbd: (seconds to the first SELECT 1,
    seconds of which install-db took)."""
    directory = base / f"floor-{index}"
    directory.mkdir(mode=0o700)
    datadir = directory / "data"
    socket_path = directory / "mysqld.sock"
    # No --user for install-db even as root: with it the script also chowns the
    # system-wide auth_pam_tool_dir (the project's own install-db call omits it too).
    install = [find_binary(*INSTALL_DB), "--no-defaults", f"--datadir={datadir}",
               "--auth-root-authentication-method=normal", "--skip-test-db"]
    server = [find_binary(*SERVER), "--no-defaults", f"--datadir={datadir}",
              f"--socket={socket_path}", f"--pid-file={directory / 'mysqld.pid'}",
              f"--bind-address={FLOOR_ADDRESS}", f"--port={MYSQL_PORT}",
              f"--log-error={directory / 'error.log'}"]
    if os.geteuid() == 0:
        server.append("--user=root")
    if not port_free(FLOOR_ADDRESS, MYSQL_PORT):
        raise BenchError(f"{FLOOR_ADDRESS}:{MYSQL_PORT} is in use")

    started = time.perf_counter()
    run_bounded(install, timeout, directory / "install-db.out")
    installed = time.perf_counter() - started
    with open(directory / "mariadbd.out", "wb") as log:
        process = subprocess.Popen(server, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        remaining = max(1.0, timeout - (time.perf_counter() - started))
        answered = wait_sql({0: socket_path}, "", started, remaining)
    finally:
        stop_child(process)
    shutil.rmtree(directory, ignore_errors=True)
    return answered[0], installed


# -- the manager ----------------------------------------------------------------


class ProvisionManager(ManagerProcess):
    """The benchmarks' manager with the servers' default buffer pool; it is up when its
    datadir template is built too."""

    def __init__(self, root: Path, subnet: int) -> None:
        super().__init__(root, subnet, None)
        self.template = self.cache_dir / "datadir-template"

    def start(self, timeout: float = 30.0) -> ProvisionManager:
        super().start(timeout)
        wait_until((self.template / "mysql" / "global_priv.frm").is_file, timeout,
                   0.1, "the manager's datadir template")
        return self

    def running_at(self, node_id: int) -> float | None:
        """The manager's wall-clock time of the node's first move to RUNNING."""
        history = self.get("get_node_info", serviceNodeId=node_id)["serviceNode"]["history"]
        times = [entry["at"] for entry in history if entry.get("to") == "RUNNING"]
        return min(times) if times else None

    def remove(self, node_ids: list[int], timeout: float) -> None:
        for node_id in node_ids:
            self.post("remove_nodes", serviceNodeId=node_id)

        def gone() -> bool:
            if any(self.node_dir(node_id).exists() for node_id in node_ids):
                return False
            live = {node["id"] for node in self.nodes()}
            return not live & set(node_ids)

        wait_until(gone, timeout, 0.1, f"nodes {node_ids} removed")


class RunningWatch(threading.Thread):
    """Polls list_nodes until every one of ``node_ids`` is RUNNING (or the deadline)."""

    def __init__(self, manager: ProvisionManager, node_ids: list[int], started: float,
                 timeout: float) -> None:
        super().__init__(daemon=True, name="running-watch")
        self.manager = manager
        self.node_ids = node_ids
        self.started = started
        self.deadline = started + timeout
        self.seen: float | None = None  # seconds from start until seen all RUNNING
        self.last: object = None
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set() and time.perf_counter() < self.deadline:
            try:
                states = {node["id"]: node["state"] for node in self.manager.nodes()}
            except Exception as exc:
                self.last = exc
            else:
                self.last = states
                if all(states.get(node_id) == "RUNNING" for node_id in self.node_ids):
                    self.seen = time.perf_counter() - self.started
                    return
            self.halt.wait(STATE_POLL)


@dataclass
class Trial:
    count: int
    sql_s: float  # until every new server answered SELECT 1
    running_s: float  # until the manager recorded every new node RUNNING
    rpc_s: float  # add_nodes round trip
    node_ids: list[int] = field(default_factory=list)


def provision(manager: ProvisionManager, count: int, password: str, timeout: float) -> Trial:
    """``add_nodes`` ``count``: time to SELECT 1 on every new node and to RUNNING."""
    wall_start = time.time()
    started = time.perf_counter()
    answer = manager.post("add_nodes", count=count)
    rpc_s = time.perf_counter() - started
    node_ids = [int(node["id"]) for node in answer["nodes"]]
    if len(node_ids) != count:
        raise BenchError(f"add_nodes made {node_ids}, wanted {count}")
    watch = RunningWatch(manager, node_ids, started, timeout)
    watch.start()
    try:
        answered = wait_sql({node_id: manager.socket_of(node_id) for node_id in node_ids},
                            password, started, timeout)
        watch.join(timeout=max(0.0, started + timeout - time.perf_counter()) + 1.0)
        if watch.seen is None:
            raise BenchError(f"nodes {node_ids} not all RUNNING in {timeout:g}s; "
                             f"last seen {watch.last!r}")
    finally:
        watch.halt.set()
        watch.join(timeout=35)
    # The exact moment comes from the manager's own transition record; the
    # list_nodes poll above (every STATE_POLL s) is the fallback.
    recorded = [manager.running_at(node_id) for node_id in node_ids]
    if all(at is not None for at in recorded):
        running_s = max(at for at in recorded if at is not None) - wall_start
    else:
        assert watch.seen is not None
        running_s = watch.seen
    return Trial(count, max(answered.values()), running_s, rpc_s, node_ids)


# -- orchestration --------------------------------------------------------------


@dataclass
class Results:
    floor: list[float] = field(default_factory=list)
    floor_install: list[float] = field(default_factory=list)
    one: list[Trial] = field(default_factory=list)
    four: list[Trial] = field(default_factory=list)
    rss: dict[str, float | None] = field(default_factory=dict)
    total_s: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


def measure(args: argparse.Namespace, root: Path, results: Results) -> None:
    timeout = float(args.timeout)
    for index in range(args.floor_reps):
        seconds, installed = floor_once(root, index, timeout)
        results.floor.append(seconds)
        results.floor_install.append(installed)
        err.print(f"floor {index + 1}/{args.floor_reps}: {seconds:.3f}s "
                  f"(install-db {installed:.3f}s)")

    manager = ProvisionManager(root, args.subnet)
    try:
        err.print("starting the manager and waiting for its datadir template...")
        manager.start(timeout)
        password = manager.root_password

        for index in range(args.one_reps):
            trial = provision(manager, 1, password, timeout)
            results.one.append(trial)
            err.print(f"1 node {index + 1}/{args.one_reps}: SELECT 1 {trial.sql_s:.3f}s, "
                      f"RUNNING {trial.running_s:.3f}s")
            manager.remove(trial.node_ids, timeout)

        for index in range(args.four_reps):
            trial = provision(manager, 4, password, timeout)
            results.four.append(trial)
            err.print(f"4 nodes {index + 1}/{args.four_reps}: SELECT 1 {trial.sql_s:.3f}s, "
                      f"RUNNING {trial.running_s:.3f}s")
            if index == args.four_reps - 1:
                first = manager.node_dir(trial.node_ids[0])
                results.rss = {
                    "manager": vmrss_mb(manager.pid),
                    "agent": vmrss_mb(read_pid(first / AGENT_PID_FILE)),
                    "mariadbd": vmrss_mb(read_pid(first / MYSQLD_PID_FILE)),
                }
            manager.remove(trial.node_ids, timeout)

        manager.shutdown(timeout)
        manager.stop()
    finally:
        quiet_signals()
        manager.close()


def summary(results: Results) -> dict[str, Any]:
    floor = median(results.floor)
    one_sql = median([t.sql_s for t in results.one])
    four_sql = median([t.sql_s for t in results.four])
    return {
        "floor_s": round(floor, 4),
        "one_node_s": round(one_sql, 4),
        "one_node_ratio": round(one_sql / floor, 4),
        "one_node_running_s": round(median([t.running_s for t in results.one]), 4),
        "four_nodes_s": round(four_sql, 4),
        "four_nodes_ratio": round(four_sql / floor, 4),
        "four_nodes_running_s": round(median([t.running_s for t in results.four]), 4),
        "rss_mb": {k: None if v is None else round(v, 1) for k, v in results.rss.items()},
        "runs": {
            "floor_s": [round(v, 4) for v in results.floor],
            "floor_install_db_s": [round(v, 4) for v in results.floor_install],
            "one_node_s": [round(t.sql_s, 4) for t in results.one],
            "one_node_running_s": [round(t.running_s, 4) for t in results.one],
            "one_node_add_rpc_s": [round(t.rpc_s, 4) for t in results.one],
            "four_nodes_s": [round(t.sql_s, 4) for t in results.four],
            "four_nodes_running_s": [round(t.running_s, 4) for t in results.four],
            "four_nodes_add_rpc_s": [round(t.rpc_s, 4) for t in results.four],
        },
        "targets": {"one_node_ratio": FLOOR_TARGET, "four_nodes_ratio": FOUR_TARGET},
        "total_s": round(results.total_s, 2),
        "load_average_1m": [round(v, 2) for v in results.load],
    }


def render(figures: dict[str, Any]) -> None:
    def verdict(value: float, target: float) -> str:
        return "[green]met[/green]" if value <= target else "[red]missed[/red]"

    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} MB"

    runs = figures["runs"]
    table = Table(title="conpaassql provisioning (local cloud)")
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("runs")
    table.add_column("target")
    table.add_row("floor: install-db + mariadbd to SELECT 1", f"{figures['floor_s']:.3f} s",
                  " ".join(f"{v:.3f}" for v in runs["floor_s"]), "")
    table.add_row("  of which install-db", "",
                  " ".join(f"{v:.3f}" for v in runs["floor_install_db_s"]), "")
    table.add_row("1 node: add_nodes to SELECT 1", f"{figures['one_node_s']:.3f} s",
                  " ".join(f"{v:.3f}" for v in runs["one_node_s"]), "")
    table.add_row("  ratio 1 node / floor", f"{figures['one_node_ratio']:.3f}", "",
                  f"≤ {FLOOR_TARGET} {verdict(figures['one_node_ratio'], FLOOR_TARGET)}")
    table.add_row("  1 node: add_nodes to RUNNING", f"{figures['one_node_running_s']:.3f} s",
                  " ".join(f"{v:.3f}" for v in runs["one_node_running_s"]), "")
    table.add_row("4 nodes: add_nodes to all SELECT 1", f"{figures['four_nodes_s']:.3f} s",
                  " ".join(f"{v:.3f}" for v in runs["four_nodes_s"]), "")
    table.add_row("  ratio 4 nodes / floor", f"{figures['four_nodes_ratio']:.3f}", "",
                  f"≤ {FOUR_TARGET} {verdict(figures['four_nodes_ratio'], FOUR_TARGET)}")
    table.add_row("  4 nodes: add_nodes to all RUNNING",
                  f"{figures['four_nodes_running_s']:.3f} s",
                  " ".join(f"{v:.3f}" for v in runs["four_nodes_running_s"]), "")
    rss = figures["rss_mb"]
    table.add_row("RSS manager (4 nodes up)", mb(rss.get("manager")), "", "")
    table.add_row("RSS one agent", mb(rss.get("agent")), "", "")
    table.add_row("RSS its mariadbd", mb(rss.get("mariadbd")), "", "")
    table.add_row("total benchmark time", f"{figures['total_s']:.1f} s", "", "")
    table.add_row("load average (1 min) at start, end",
                  " / ".join(f"{v:.2f}" for v in figures["load_average_1m"]), "", "")
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--floor-reps", type=int, default=3)
    parser.add_argument("--one-reps", type=int, default=3)
    parser.add_argument("--four-reps", type=int, default=2)
    parser.add_argument("--subnet", type=int, default=98,
                        help="nodes get 127.0.SUBNET.10-60 (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.floor_reps, args.one_reps, args.four_reps) < 1:
        parser.error("every repetition count must be at least 1")
    if not 0 < args.subnet < 255 or args.subnet == 99:
        parser.error("--subnet must be 1-254 and not 99 (the floor's)")

    started = time.perf_counter()
    results = Results(load=[os.getloadavg()[0]])
    root = Path(tempfile.mkdtemp(prefix="cqb-", dir="/tmp"))
    try:
        with signals_raise():
            measure(args, root, results)
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    finally:
        quiet_signals()
        shutil.rmtree(root, ignore_errors=True)
    return report(results, started, summary, render)


if __name__ == "__main__":
    sys.exit(main())
