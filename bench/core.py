"""Does the manager's event loop stay free while the service works hard?

Run from the repository root::

    .venv/bin/python bench/core.py                  # a dump of about 200 MB
    .venv/bin/python bench/core.py --dump-mb 20     # a quick run

One manager (local cloud, its default settings) with ``--nodes`` nodes (a
master and its slaves) on a 127.0.N.0/24 of their own. A sysbench-like table
of about ``--dump-mb`` MB of SQL is filled on the master (the slaves get it by
replication) and dumped with the real ``mariadb-dump``. Then two windows are
measured:

1. idle: ``--idle`` seconds in which the manager only probes its nodes (its
   reconcile loop does so every second);
2. work, ``--repeat`` times: while the nodes are probed, the dump is streamed
   through ``load_dump`` into a fresh database and, at the same time, the last
   slave is copied anew from the master (``set_up_replica_slave``); the window
   ends when the load is done (and verified: row count and ``CHECKSUM TABLE``)
   and the slave replicates again.

Before a work window the master is settled (dirty pages flushed, undo purged);
before every window the benchmark waits (at most ``--quiet-wait`` seconds) until
no other test run or benchmark is running on the machine; once such a wait has
run out, the later ones only look once.

In each window the manager's event-loop lag (``get_service_performance``'s
``manager`` figures: how late a 10 ms timer wakes; the window is reset at its
start) is read, and ``list_nodes`` is called over HTTP every ``--every``
seconds on one kept connection (made before the timed calls) by a separate
process (so that this script's own upload does not slow the calls it times).
Prints a table of the figures
beside their targets (p99 lag under 20 ms, longest under 100 ms; ``list_nodes``
p99 under 50 ms), the CPU time of the manager and of the agents, and how busy
the rest of the machine was (the ``list_nodes`` caller counts among the rest:
a lag measured while other work holds the CPUs is partly theirs), then one
JSON line.
The targets are shown, not enforced: the exit status says only whether the
benchmark could measure. Everything started here is stopped and the temporary
directory removed, also on failure or interruption; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from rich.table import Table

from benchlib import (
    SOURCE_DB,
    BenchError,
    MachineShare,
    ManagerProcess,
    Native,
    QuietMachine,
    err,
    fill_source,
    mib,
    print_with_machine_rows,
    quiet_signals,
    report,
    run_measured,
    verdict,
)
from conpaassql.errors import ConpaasSQLError
from conpaassql.rpc.client import RpcClient
from testbed.manager import SubnetClaim, wait_until, write_defaults

ROWS_PER_MB = 5_000  # some 204 bytes of dump a row
LAG_P99_TARGET_MS = 20.0
LAG_MAX_TARGET_MS = 100.0
LIST_P99_TARGET_MS = 50.0
POLL = 0.3  # seconds between two looks at the service's state


# -- list_nodes, called from a process of its own -----------------------------------


def poll_list_nodes(url: str, every: float, stop: Event, out: Connection) -> None:
    """Call ``list_nodes`` every ``every`` seconds until ``stop``; send back the
    latencies (seconds) and the errors."""
    out.send(asyncio.run(_poll(url, every, stop)))
    out.close()


async def _poll(url: str, every: float, stop: Event) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    async with RpcClient(url) as client:
        with contextlib.suppress(ConpaasSQLError):
            await client.get("list_nodes")  # the connection is made: not timed
        while not stop.is_set():
            started = time.perf_counter()
            try:
                await client.get("list_nodes")
            except ConpaasSQLError as exc:
                errors.append(str(exc)[:200])
            else:
                latencies.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))
    return latencies, errors


class ListNodesCaller:
    """The ``list_nodes`` poller process, for the length of a ``with`` block."""

    def __init__(self, url: str, every: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=poll_list_nodes, daemon=True,
                                        args=(url, every, self._stop, send),
                                        name="list_nodes caller")
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def __enter__(self) -> ListNodesCaller:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._receive.poll(60):
            self.latencies, self.errors = self._receive.recv()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)
        if exc[0] is None and not self.latencies:
            raise BenchError(f"list_nodes never answered: {self.errors[:3]}")


# -- measuring ------------------------------------------------------------------------


@dataclass
class Window:
    """What one measured window saw."""

    kind: str
    seconds: float = 0.0
    lag: dict[str, Any] = field(default_factory=dict)  # the manager's figures
    list_nodes: list[float] = field(default_factory=list)  # seconds
    list_errors: list[str] = field(default_factory=list)
    other_cpu_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # ours, by kind of process
    load_s: float | None = None
    copy_s: float | None = None  # from set_up_replica_slave to the slave replicating


@dataclass
class Results:
    nodes: int = 0
    rows: int = 0
    dump_bytes: int = 0
    windows: list[Window] = field(default_factory=list)
    total_s: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, subnet: int,
                 results: Results) -> None:
        self.args = args
        self.root = root
        self.timeout = float(args.timeout)
        self.results = results
        self.subnet = subnet
        self.manager = ManagerProcess(root, subnet, args.buffer_pool)
        self.defaults = root / "client.cnf"
        self.quiet = QuietMachine(limit=args.quiet_wait)

    def native(self, node_id: int) -> Native:
        return Native(self.manager.socket_of(node_id), self.defaults, self.timeout)

    def replicating(self, node_id: int) -> bool:
        info = self.manager.node(node_id)
        if info.get("state") in ("FAILED", "TERMINATED"):
            raise BenchError(f"node {node_id} is {info['state']}")
        seen = info.get("replication") or {}
        return info.get("state") == "RUNNING" and info.get("role") == "slave" and \
            seen.get("io_running") == "Yes" and seen.get("sql_running") == "Yes" and \
            not seen.get("copying")

    def topology(self) -> tuple[int, list[int]]:
        """Wait for one master and the other nodes replicating from it."""
        count = self.args.nodes

        def check() -> tuple[int, list[int]] | None:
            listed = self.manager.get("list_nodes")
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != count - 1:
                return None
            if not all(self.replicating(int(node)) for node in listed["slaves"]):
                return None
            return int(listed["masters"][0]), sorted(int(n) for n in listed["slaves"])

        found = wait_until(check, self.timeout, POLL, f"1 master and {count - 1} slaves")
        for node in (found[0], *found[1]):
            self.manager.note_pids(node)
        return found

    def run(self) -> None:
        manager, args = self.manager, self.args
        err.print(f"starting the manager on :{manager.port} "
                  f"(nodes on 127.0.{self.subnet}.10-60)...")
        manager.start(self.timeout)
        manager.add_nodes(args.nodes)
        master, slaves = self.topology()
        err.print(f"node {master} is the master, {slaves} its slaves")
        write_defaults(self.defaults, manager.root_password)
        dump, source = self.make_dump(master, slaves)
        self.results.windows.append(self.idle_window())
        for round_index in range(args.repeat):
            window = self.work_window(master, slaves[-1], dump, source, round_index + 1)
            self.results.windows.append(window)
        err.print("shutting the service down...")
        manager.shutdown(self.timeout)
        manager.stop()

    def make_dump(self, master: int, slaves: list[int]) -> tuple[Path, tuple[str, str]]:
        """The source table on the master (and, by replication, on every slave) and its
        dump; the dump's path and the table's fingerprint."""
        rows = max(1, round(self.args.dump_mb * ROWS_PER_MB))
        native = self.native(master)
        started = time.perf_counter()
        fill_source(native, rows)
        source = native.fingerprint(SOURCE_DB)
        dump = self.root / "source.sql"
        native.dump(SOURCE_DB, dump)
        self.results.rows = rows
        self.results.dump_bytes = dump.stat().st_size
        for slave in slaves:  # the work starts from slaves that have caught up
            wait_until(functools.partial(_has, self.native(slave), source), self.timeout,
                       1.0, f"node {slave} to catch up with the source table")
        err.print(f"source: {rows} rows, dump of {mib(self.results.dump_bytes)}, on every "
                  f"node after {time.perf_counter() - started:.1f}s")
        return dump, source

    def lag_figures(self) -> dict[str, Any]:
        """The manager's loop-lag figures since the last reset; a new window starts."""
        figures = self.manager.get("get_service_performance", reset_loop_lag=True)
        lag = figures.get("manager")
        if not isinstance(lag, dict) or "loop_lag_max_ms" not in lag:
            raise BenchError(f"get_service_performance has no loop-lag figures: "
                             f"{figures!r:.200}")
        return lag

    def idle_window(self) -> Window:
        window = Window("idle")
        self.quiet.wait("the idle window")
        err.print(f"idle window: {self.args.idle:g}s of probes only...")
        with ListNodesCaller(self.manager.url, self.args.every) as caller, \
                MachineShare(self.root) as share:
            self.lag_figures()
            time.sleep(self.args.idle)
            window.lag = self.lag_figures()
        return self.close_window(window, caller, share)

    def work_window(self, master: int, slave: int, dump: Path, source: tuple[str, str],
                    index: int) -> Window:
        window = Window(f"work {index}")
        database = f"load_{index}"
        native = self.native(master)
        native.sql(f"CREATE DATABASE `{database}`")
        native.settle()
        self.quiet.wait(f"work window {index}")
        err.print(f"work window {index}: load_dump of {dump.name} into {database} while "
                  f"node {slave} is copied anew...")
        with ListNodesCaller(self.manager.url, self.args.every) as caller, \
                MachineShare(self.root) as share:
            self.lag_figures()
            asked = time.perf_counter()
            self.manager.post("set_up_replica_slave", id=slave)
            reply, window.load_s = self.manager.timed_upload(
                "load_dump", "mysqldump_file", dump, deadline=self.timeout, database=database)
            wait_until(lambda: self.replicating(slave), self.timeout, POLL,
                       f"node {slave} replicating after its copy")
            window.copy_s = time.perf_counter() - asked
            window.lag = self.lag_figures()
        if reply.get("bytes") != self.results.dump_bytes:
            raise BenchError(f"load_dump answered {reply!r:.300}")
        got = native.fingerprint(database)
        if got != source:
            raise BenchError(f"load into {database}: rows and checksum {got}, the source "
                             f"has {source}")
        native.sql(f"DROP DATABASE `{database}`")
        return self.close_window(window, caller, share)

    def close_window(self, window: Window, caller: ListNodesCaller,
                     share: MachineShare) -> Window:
        window.seconds = share.seconds
        window.other_cpu_s = share.other
        window.cpu_s = share.cpu
        window.list_nodes = caller.latencies
        window.list_errors = caller.errors
        lag = window.lag
        err.print(f"{window.kind}: {window.seconds:.1f}s, loop lag p99 "
                  f"{lag['loop_lag_p99_ms']} ms max {lag['loop_lag_max_ms']} ms "
                  f"({lag['samples']} samples), list_nodes p99 "
                  f"{_ms(_rank(window.list_nodes, 0.99))} ms of {len(window.list_nodes)}")
        return window

    def close(self) -> None:
        quiet_signals()
        self.manager.close()


def _has(native: Native, source: tuple[str, str]) -> bool:
    """True if the node has the source table as it is on the master."""
    return native.fingerprint(SOURCE_DB) == source


# -- reporting ------------------------------------------------------------------------


def _rank(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile ``share`` of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def window_figures(window: Window) -> dict[str, Any]:
    calls = window.list_nodes
    return {
        "seconds": round(window.seconds, 2),
        "loop_lag_p99_ms": window.lag.get("loop_lag_p99_ms"),
        "loop_lag_max_ms": window.lag.get("loop_lag_max_ms"),
        "loop_lag_samples": window.lag.get("samples"),
        "list_nodes_p50_ms": _ms(_rank(calls, 0.50)),
        "list_nodes_p99_ms": _ms(_rank(calls, 0.99)),
        "list_nodes_max_ms": _ms(max(calls) if calls else None),
        "list_nodes_calls": len(calls),
        "list_nodes_errors": len(window.list_errors),
        "load_dump_s": None if window.load_s is None else round(window.load_s, 2),
        "copy_s": None if window.copy_s is None else round(window.copy_s, 2),
        "manager_cpu_s": round(window.cpu_s.get("manager", 0.0), 2),
        "agents_cpu_s": round(window.cpu_s.get("agent", 0.0), 2),
        "other_cpu_share": round(window.other_cpu_s / (window.seconds * (os.cpu_count() or 1)),
                                 3) if window.seconds else 0.0,
    }


def summary(results: Results) -> dict[str, Any]:
    windows = {window.kind: window_figures(window) for window in results.windows}
    seconds = sum(window.seconds for window in results.windows)
    other = sum(window.other_cpu_s for window in results.windows)
    return {
        "nodes": results.nodes,
        "rows": results.rows,
        "dump_bytes": results.dump_bytes,
        "windows": windows,
        "targets": {"loop_lag_p99_ms": LAG_P99_TARGET_MS, "loop_lag_max_ms": LAG_MAX_TARGET_MS,
                    "list_nodes_p99_ms": LIST_P99_TARGET_MS},
        "total_s": round(results.total_s, 1),
        "load_average_1m": [round(v, 2) for v in results.load],
        "cpus": os.cpu_count(),
        "other_cpu_share": round(other / (seconds * (os.cpu_count() or 1)), 3)
        if seconds else 0.0,
    }


ROWS = (  # (label, key, unit, target or None)
    ("loop lag p99", "loop_lag_p99_ms", "ms", LAG_P99_TARGET_MS),
    ("loop lag max", "loop_lag_max_ms", "ms", LAG_MAX_TARGET_MS),
    ("loop lag samples", "loop_lag_samples", "", None),
    ("list_nodes p50", "list_nodes_p50_ms", "ms", None),
    ("list_nodes p99", "list_nodes_p99_ms", "ms", LIST_P99_TARGET_MS),
    ("list_nodes max", "list_nodes_max_ms", "ms", None),
    ("list_nodes calls", "list_nodes_calls", "", None),
    ("list_nodes errors", "list_nodes_errors", "", None),
    ("load_dump", "load_dump_s", "s", None),
    ("slave copied, replicating again", "copy_s", "s", None),
    ("window", "seconds", "s", None),
    ("CPU of the manager", "manager_cpu_s", "s", None),
    ("CPU of the agents", "agents_cpu_s", "s", None),
    ("other processes' share of the CPUs", "other_cpu_share", "", None),
)


def _cell(value: Any, unit: str) -> str:
    if value is None:
        return ""
    if unit == "" and isinstance(value, float):
        return f"{value:.0%}"
    return f"{value:g} {unit}".strip() if isinstance(value, float) else f"{value} {unit}".strip()


def render(figures: dict[str, Any]) -> None:
    windows = figures["windows"]
    kinds = list(windows)
    table = Table(title=f"conpaassql manager under load: {figures['nodes']} nodes, load_dump "
                        f"of {mib(figures['dump_bytes'])} while a slave is copied")
    table.add_column("measure")
    for kind in kinds:
        table.add_column(kind if kind != "idle" else "idle (probes only)", justify="right")
    table.add_column("target (the work windows)")
    for label, key, unit, target in ROWS:
        cells = [_cell(windows[kind].get(key), unit) for kind in kinds]
        goal = ""
        if target is not None:
            worst = max((windows[kind][key] for kind in kinds if kind != "idle"
                         and windows[kind][key] is not None), default=None)
            goal = f"< {target:g} {unit} {verdict(worst is not None and worst < target)}"
        table.add_row(label, *cells, goal)
    print_with_machine_rows(table, figures)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dump-mb", type=float, default=200.0,
                        help="size of the dump loaded, in MB (default %(default)s)")
    parser.add_argument("--nodes", type=int, default=4,
                        help="nodes of the service, a master and its slaves (default "
                             "%(default)s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="work windows, each a load and a copy (default %(default)s)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of the idle window (default %(default)s)")
    parser.add_argument("--every", type=float, default=0.05,
                        help="seconds between two list_nodes calls (default %(default)s)")
    parser.add_argument("--quiet-wait", type=float, default=600.0,
                        help="longest wait for others' tests and benchmarks to end before a "
                             "window, in seconds (default %(default)s)")
    parser.add_argument("--buffer-pool", default="256M",
                        help="innodb_buffer_pool_size of the nodes (default %(default)s)")
    parser.add_argument("--subnet", type=int, default=None,
                        help="nodes get 127.0.SUBNET.10-60 (default: a free one of 101-249)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.repeat < 1:
        parser.error("--nodes must be at least 2 and --repeat at least 1")
    if min(args.dump_mb, args.idle, args.every) <= 0 or args.quiet_wait < 0:
        parser.error("--dump-mb, --idle and --every must be positive, --quiet-wait not "
                     "negative")
    if args.subnet is not None and not 0 < args.subnet < 255:
        parser.error("--subnet must be 1-254")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    started = time.perf_counter()
    results = Results(nodes=args.nodes, load=[os.getloadavg()[0]])

    def run(root: Path) -> None:
        with SubnetClaim(args.subnet) as claim:
            bench = Bench(args, root, claim.subnet, results)
            try:
                bench.run()
            finally:
                bench.close()

    if not run_measured("cqc-", run):
        return 1
    return report(results, started, summary, render)


if __name__ == "__main__":
    sys.exit(main())
