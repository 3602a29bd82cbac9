"""What does the router cost, and what write outage does an application see
through it?

Run from the repository root::

    .venv/bin/python bench/router.py                  # about 10 minutes
    .venv/bin/python bench/router.py --time 10 --outages 1

One manager (local cloud), a master and two slaves on a 127.0.N.0/24 of their
own, and ``conpaassql router`` (HAProxy) with its writer on 127.0.N.2:3306.

1. sysbench ``oltp_read_write`` and ``oltp_point_select`` (``--threads``
   clients, ``--time`` seconds, TLS with a client certificate of the service's
   CA, as sysbench 1.0 wants one) through the writer address against straight
   to the master, ``--repeat`` rounds in alternating order: the throughput ratio
   (target at least 0.9; of the medians, and the median of each round's ratio,
   which a load that comes and goes on a shared machine sways less) and the 95th
   percentile latency of each. During the runs through the router, the
   resident memory (peak) and the CPU time of the router's process and of
   HAProxy's, and HAProxy's CPU per transaction (which a busy machine sways
   less than the throughput). Each test first runs once each way untimed
   (``--warmup`` seconds). Every timed run also records where the CPU went
   (share of one CPU): sysbench, HAProxy, the router's process, the master's
   and the slaves' mariadbd, the agents, the manager and everything else on the
   machine. ``--pin`` puts sysbench (and HAProxy and the router, the client's
   side) on CPU 0 and the master's mariadbd on CPU 1 for both ways, so that the
   server's share of the machine is the same through the router as straight to
   it; the output says whether the runs were pinned. ``--router-option`` passes
   options to the router (``--router-option=--haproxy-threads=0`` for HAProxy's
   default of one thread per CPU).
2. the client-visible write outage, ``--outages`` times each: single-row
   autocommit INSERTs, each on a new connection to the writer address (retrying
   at once on any error), while the master's mariadbd is SIGKILLed, while the
   master's whole node (agent and mariadbd) is SIGKILLed, and through a
   switchover (``set_up_replica_master``); the outage is the longest time
   between two acknowledged INSERTs around the event. Every acknowledged row
   must be on the new master. Targets (medians): under 2 s, 5 s and 1 s;
   published figures of other set-ups are printed as anchors. Between two runs
   the service converges back to a master and two slaves (a killed node is
   removed and a new one added).

Prints a table, then one JSON line. The application's password goes to sysbench
in a configuration file (mode 0600), never on a command line. Everything started
here is stopped and the temporary directory removed, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchlib import (
    BUSY_SHARE,
    BenchError,
    MachineShare,
    ManagerProcess,
    Native,
    QuietMachine,
    cpu_times,
    err,
    machine_busy_seconds,
    median,
    other_share,
    run_measured,
    runs_of,
    verdict,
    vmrss_mb,
)
from conpaassql.files import write_private
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE
from conpaassql.manager.authority import Authority
from testbed.manager import SubnetClaim, wait_until, write_defaults
from testbed.router import Router, RouterWriter

THROUGHPUT_TARGET = 0.9
OUTAGE_TARGETS = {"mariadbd SIGKILL": 2.0, "node SIGKILL": 5.0, "switchover": 1.0}
#: Published write outages of other set-ups (seconds): anchors, not measured here.
ANCHORS = (("RDS Multi-AZ (instance)", "60-120 s"), ("RDS Multi-AZ cluster", "< 35 s"),
           ("orchestrator + GLB (GitHub)", "10-13 s"), ("Vitess VTOrc, kill -9", "1.4-2.8 s"))
TESTS = ("oltp_read_write", "oltp_point_select")
DB, USER = "sbtest", "bench"
_TPS = re.compile(r"transactions:\s+\d+\s+\(([\d.]+) per sec")
_P95 = re.compile(r"95th percentile:\s+([\d.]+)")


@dataclass
class Results:
    tps: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # test -> way -> runs
    p95: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    router_rss_mb: float = 0.0  # peak, router process + HAProxy
    haproxy_rss_mb: float = 0.0
    router_cpu_share: list[float] = field(default_factory=list)  # of one CPU, per run
    haproxy_cpu_share: list[float] = field(default_factory=list)
    outages: dict[str, list[float]] = field(default_factory=dict)
    lost: int = 0
    acked: int = 0
    busy: list[tuple[float, float]] = field(default_factory=list)  # run's s, others' CPU s
    cpu: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # "test, way" -> who
    haproxy_us_per_tx: dict[str, list[float]] = field(default_factory=dict)  # test -> runs
    pinned: bool = False
    router_options: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end
    total_s: float = 0.0


class CpuSplit:
    """The CPU time of some groups of processes during a block, as shares of one CPU:
    ``sysbench`` (this process's reaped children), the groups given, and ``others``
    (the rest of the machine, this process included)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.shares: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        found = {who: sum((cpu_times(pid) or (0.0, 0.0))[0] for pid in pids)
                 for who, pids in self.groups.items()}
        found["sysbench"] = (cpu_times(os.getpid()) or (0.0, 0.0))[1]
        found["machine"] = machine_busy_seconds()
        return found

    def __enter__(self) -> CpuSplit:
        self._started = time.monotonic()
        self._before = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._now()
        seconds = time.monotonic() - self._started
        spent = {who: after[who] - self._before[who] for who in after}
        machine = spent.pop("machine")
        spent["others"] = max(0.0, machine - sum(spent.values()))
        self.shares = {who: value / seconds for who, value in spent.items()}


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, subnet: int) -> None:
        self.args = args
        self.root = root
        self.results = Results()
        self.manager = ManagerProcess(root, subnet, args.buffer_pool)
        self.router = Router(self.manager, subnet, *args.router_option)
        self.password = secrets.token_urlsafe(18)
        self.sysbench_dir = root / "sysbench"
        self.quiet = QuietMachine(limit=args.quiet_wait)

    # -- the service ------------------------------------------------------

    def topology(self, count: int = 3) -> tuple[int, list[int]]:
        def check() -> tuple[int, list[int]] | None:
            listed = self.manager.get("list_nodes")
            running = [n for n in listed["nodes"] if n["state"] == "RUNNING"]
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != count - 1 \
                    or len(running) != count:
                return None
            for slave in listed["slaves"]:
                seen = self.manager.node(slave)["replication"]
                if seen["io_running"] != "Yes" or seen["sql_running"] != "Yes" \
                        or seen["copying"]:
                    return None
            return int(listed["masters"][0]), sorted(int(n) for n in listed["slaves"])

        found = wait_until(check, self.args.timeout, 0.3, f"1 master and {count - 1} slaves")
        for node in (found[0], *found[1]):
            self.manager.note_pids(node)
        return found

    def converge(self) -> None:
        """Back to a master and two slaves: nodes that are not coming back are removed
        and replaced."""
        try:
            self.topology()
            return
        except BenchError:
            pass
        for node in self.manager.get("list_nodes")["nodes"]:
            if node["state"] != "RUNNING":
                self.manager.post("remove_nodes", serviceNodeId=node["id"])
        missing = 3 - len(self.manager.get("list_nodes")["nodes"])
        if missing > 0:
            self.manager.post("add_nodes", count=missing)
        self.topology()

    def setup(self) -> None:
        self.manager.start()
        self.manager.post("add_nodes", count=3)
        master, _ = self.topology()
        self.manager.post("create_database", database=DB)
        self.manager.post("configure_user", username=USER, password=self.password,
                          database=DB)
        self.router.start()
        self._sysbench_files()
        master_ip = self.manager.node(master)["ip"]
        self.sysbench("oltp_read_write", (master_ip, 3306), "prepare")
        self.sql(master, f"CREATE TABLE {DB}.w (id INT PRIMARY KEY, at DOUBLE)")

    def sql(self, node: int, statement: str) -> list[str]:
        """The first field of each row ``statement`` gives, as root on the node's socket."""
        defaults = self.root / "root.cnf"
        if not defaults.exists():
            write_defaults(defaults, self.manager.root_password)
        native = Native(self.manager.socket_of(node), defaults, self.args.timeout)
        return [row[0] for row in native.sql(statement)]

    def _sysbench_files(self) -> None:
        """sysbench 1.0 takes TLS files by fixed names in its working directory: the
        service's CA and a client certificate from it."""
        self.sysbench_dir.mkdir(mode=0o700)
        pki = self.manager.state_dir / "pki"
        issued = Authority.load_or_create(pki, self.manager.service_id).issue("sysbench")
        (self.sysbench_dir / "cacert.pem").write_bytes((pki / "ca.crt").read_bytes())
        write_private(self.sysbench_dir / "client-cert.pem", issued.cert_pem)
        write_private(self.sysbench_dir / "client-key.pem", issued.key_pem)

    def sysbench(self, test: str, where: tuple[str, int], command: str,
                 seconds: int | None = None) -> str:
        config = self.sysbench_dir / f"{where[0]}-{where[1]}.cfg"
        write_private(config, "".join(f"{key}={value}\n" for key, value in (
            ("db-driver", "mysql"), ("mysql-host", where[0]), ("mysql-port", where[1]),
            ("mysql-user", USER), ("mysql-password", self.password), ("mysql-db", DB),
            ("mysql-ssl", "on"), ("threads", self.args.threads),
            ("time", seconds or self.args.time), ("percentile", 95),
            ("db-ps-mode", "disable"))))
        pin = ["taskset", "-c", "0"] if self.args.pin and command == "run" else []
        # sysbench 1.0 takes the test's own options (tables, table-size) from its
        # command line only: in the config file they are silently ignored.
        sizes = [f"--tables={self.args.tables}", f"--table-size={self.args.table_size}"]
        done = subprocess.run([*pin, "sysbench", f"--config-file={config.name}", *sizes, test,
                               command],
                              cwd=self.sysbench_dir, capture_output=True, text=True,
                              timeout=self.args.time + self.args.timeout, check=False)
        if done.returncode != 0:
            raise BenchError(f"sysbench {test} {command}: {(done.stdout + done.stderr)[-600:]}")
        return done.stdout

    # -- 1. throughput -----------------------------------------------------

    def throughput(self) -> None:
        master, slaves = self.topology()
        direct = (self.manager.node(master)["ip"], 3306)
        ways: dict[str, tuple[str, int]] = {"direct": direct, "router": self.router.writer}
        self.results.pinned = self.args.pin
        self.results.router_options = list(self.args.router_option)
        if self.args.pin:
            self._pin(master)
        try:
            if self.args.warmup:
                for test in TESTS:
                    for way, where in ways.items():
                        err.print(f"warm-up: sysbench {test} {way} ({self.args.warmup} s)...")
                        self.sysbench(test, where, "run", self.args.warmup)
            for round_index in range(self.args.repeat):
                for test in TESTS:
                    names = list(ways) if round_index % 2 == 0 else list(ways)[::-1]
                    for way in names:
                        self._timed(test, way, ways[way], master, slaves)
        finally:
            if self.args.pin:
                self._pin(master, undo=True)

    def _timed(self, test: str, way: str, where: tuple[str, int], master: int,
               slaves: list[int]) -> None:
        self.quiet.wait(f"{test} {way}")
        err.print(f"sysbench {test} {way} ({self.args.time} s)...")
        split = CpuSplit(self._who(master, slaves))
        with MachineShare(self.root) as share, split:
            if way == "router":
                output = self._watched(lambda: self.sysbench(test, where, "run"))
            else:
                output = self.sysbench(test, where, "run")
        self.results.busy.append((share.seconds, share.other))
        for who, value in split.shares.items():
            self.results.cpu.setdefault(f"{test}, {way}", {}).setdefault(who, []).append(value)
        tps, p95 = _TPS.search(output), _P95.search(output)
        if tps is None or p95 is None:
            raise BenchError(f"no figures in sysbench's output: {output[-400:]}")
        if way == "router" and float(tps.group(1)) > 0:
            self.results.haproxy_us_per_tx.setdefault(test, []).append(
                split.shares["HAProxy"] * 1e6 / float(tps.group(1)))
        self.results.tps.setdefault(test, {}).setdefault(way, []).append(float(tps.group(1)))
        self.results.p95.setdefault(test, {}).setdefault(way, []).append(float(p95.group(1)))

    def _who(self, master: int, slaves: list[int]) -> dict[str, list[int]]:
        """The processes whose CPU time each run records, by group."""
        pids = self.router.pids()

        def known(found: list[int | None]) -> list[int]:
            return [pid for pid in found if pid is not None]

        return {"HAProxy": pids[1:], "router process": pids[:1],
                "mariadbd, master": known([self.manager.mysqld_pid(master)]),
                "mariadbd, slaves": known([self.manager.mysqld_pid(n) for n in slaves]),
                "agents": known([self.manager.agent_pid(n) for n in (master, *slaves)]),
                "manager": known([self.manager.pid])}

    def _pin(self, master: int, undo: bool = False) -> None:
        """The client's side (HAProxy, the router) on CPU 0, the master's mariadbd on
        CPU 1; every CPU again with ``undo``."""
        every = f"0-{(os.cpu_count() or 2) - 1}"
        mariadbd = self.manager.mysqld_pid(master)
        plan = [(pid, every if undo else "0") for pid in self.router.pids()]
        if mariadbd is not None:
            plan.append((mariadbd, every if undo else "1"))
        for pid, cpus in plan:
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)],
                           capture_output=True, timeout=30, check=False)

    def _watched(self, work: Callable[[], str]) -> str:
        """``work()``, with the router's and HAProxy's memory and CPU measured."""
        pids = self.router.pids()
        router_pid, haproxy_pids = pids[0], pids[1:]
        before = {pid: cpu_times(pid) for pid in pids}
        started = time.monotonic()
        output = ""
        peak_router = peak_haproxy = 0.0
        done = threading.Event()  # sampled here while sysbench runs in a thread

        def run() -> None:
            nonlocal output
            try:
                output = work()
            finally:
                done.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while not done.wait(0.2):
            peak_router = max(peak_router, vmrss_mb(router_pid) or 0.0)
            peak_haproxy = max(peak_haproxy, sum(vmrss_mb(p) or 0.0 for p in haproxy_pids))
        thread.join()
        if not output:
            raise BenchError("sysbench through the router failed (see above)")
        seconds = time.monotonic() - started
        spent = {pid: (cpu_times(pid) or (0.0, 0.0))[0] - (before[pid] or (0.0, 0.0))[0]
                 for pid in pids}
        self.results.router_cpu_share.append(spent[router_pid] / seconds)
        self.results.haproxy_cpu_share.append(sum(spent[p] for p in haproxy_pids) / seconds)
        self.results.router_rss_mb = max(self.results.router_rss_mb, peak_router)
        self.results.haproxy_rss_mb = max(self.results.haproxy_rss_mb, peak_haproxy)
        return output

    # -- 2. outages --------------------------------------------------------

    def outage(self, kind: str) -> float:
        manager = self.manager
        master, slaves = self.topology()
        wait_until(lambda: self._writer_is(master), self.args.timeout, 0.2,
                   "the writer address on the master")
        writer = RouterWriter(manager, USER, self.password, database=DB,
                              address=self.router.writer).start()
        try:
            wait_until(lambda: len(writer.acked) > 50, 60, what="writes flowing")
            at = time.monotonic()
            if kind == "switchover":
                manager.post("set_up_replica_master", id=slaves[0])
            else:
                files = (MYSQLD_PID_FILE,) if kind == "mariadbd SIGKILL" else \
                    (AGENT_PID_FILE, MYSQLD_PID_FILE)
                for name in files:
                    os.kill(int((manager.node_dir(master) / name).read_text()), signal.SIGKILL)
            wait_until(lambda: manager.get("list_nodes")["masters"] not in ([master], []),
                       self.args.timeout, 0.1, "a new master")
            wait_until(lambda: writer.count(after=at) > 50, self.args.timeout, 0.1,
                       "writes through the writer address again")
        finally:
            writer.stop()
        new_master = manager.get("list_nodes")["masters"][0]
        rows = self.sql(new_master, f"SELECT id FROM {DB}.w")
        lost = set(writer.acked) - {int(x) for x in rows}
        self.results.lost += len(lost)
        self.results.acked += len(writer.acked)
        gap = writer.longest_gap(since=at)
        self.converge()
        return gap

    def _writer_is(self, node: int) -> bool:
        ids = self.router.ask(self.router.writer, USER, self.password, "SELECT @@server_id")
        return int(self.sql(node, "SELECT @@server_id")[0]) == int(ids)

    def outages(self) -> None:
        for index in range(self.args.outages):
            for kind in OUTAGE_TARGETS:
                self.quiet.wait(kind)
                err.print(f"{kind} {index + 1}/{self.args.outages}...")
                self.results.outages.setdefault(kind, []).append(self.outage(kind))

    def run(self) -> Results:
        started = time.monotonic()
        self.results.load.append(os.getloadavg()[0])
        err.print(f"starting the manager, 3 nodes and the router on {self.router.host}...")
        try:
            self.setup()
            self.throughput()
            self.outages()
        finally:
            self.router.stop()
            self.manager.close()
        self.results.total_s = time.monotonic() - started
        self.results.load.append(os.getloadavg()[0])
        return self.results


def render(results: Results) -> None:
    table = Table(title="conpaassql router: through HAProxy vs straight to the master")
    for column in ("measure", "median", "runs", "target"):
        table.add_column(column)
    for test in results.tps:
        tps, p95 = results.tps[test], results.p95[test]
        ratio = median(tps["router"]) / median(tps["direct"])
        table.add_row(f"{test}: tx/s direct / router", f"{median(tps['direct']):.0f} / "
                      f"{median(tps['router']):.0f}",
                      f"{runs_of(tps['direct'])} / {runs_of(tps['router'])}", "")
        table.add_row(f"{test}: throughput ratio (of the medians)", f"{ratio:.3f}", "",
                      f">= {THROUGHPUT_TARGET} {verdict(ratio >= THROUGHPUT_TARGET)}")
        paired = [r / d for r, d in zip(tps["router"], tps["direct"], strict=False)]
        table.add_row(f"{test}: throughput ratio (median of each round's)",
                      f"{median(paired):.3f}", runs_of(paired), "")
        per_tx = results.haproxy_us_per_tx.get(test, [])
        if per_tx:
            table.add_row(f"{test}: HAProxy CPU per transaction", f"{median(per_tx):.0f} µs",
                          runs_of(per_tx), "")
        table.add_row(f"{test}: p95 ms direct / router", f"{median(p95['direct']):.2f} / "
                      f"{median(p95['router']):.2f}",
                      f"{runs_of(p95['direct'])} / {runs_of(p95['router'])}", "")
    for kind, target in OUTAGE_TARGETS.items():
        runs = results.outages.get(kind, [])
        if runs:
            value = median(runs)
            table.add_row(f"write outage through the router: {kind}", f"{value:.2f} s",
                          runs_of(runs), f"< {target:g} s {verdict(value < target)}")
    table.add_row("acknowledged inserts lost", str(results.lost), f"of {results.acked}",
                  f"0 {verdict(results.lost == 0)}")
    table.add_row("router process: peak RSS, CPU (share of one CPU)",
                  f"{results.router_rss_mb:.1f} MiB, "
                  f"{statistics.mean(results.router_cpu_share or [0]):.1%}", "", "")
    table.add_row("HAProxy (master + worker): peak RSS, CPU",
                  f"{results.haproxy_rss_mb:.1f} MiB, "
                  f"{statistics.mean(results.haproxy_cpu_share or [0]):.1%}", "", "")
    for name, figure in ANCHORS:
        table.add_row(f"anchor: {name}", figure, "", "")
    table.add_row("total benchmark time", f"{results.total_s:.0f} s", "", "")
    table.add_row("load average (1 min) start / end, CPUs",
                  " / ".join(f"{v:.2f}" for v in results.load), str(os.cpu_count()), "")
    share = other_share(results.busy)
    table.add_row("other processes' share of the CPUs during the sysbench runs",
                  f"{share:.0%}", "", f"< {BUSY_SHARE:.0%} {verdict(share < BUSY_SHARE)}")
    table.add_row("CPU pinning", "sysbench, HAProxy, router on CPU 0; master's mariadbd "
                  "on CPU 1" if results.pinned else "none", "", "")
    if results.router_options:
        table.add_row("router options", " ".join(results.router_options), "", "")
    Console(width=160).print(table)
    render_cpu(results)
    print(json.dumps({"bench": "router", **results.__dict__}))


def render_cpu(results: Results) -> None:
    """Where the CPU went during the timed runs, median share of one CPU by group."""
    if not results.cpu:
        return
    table = Table(title="where the CPU went during the sysbench runs (share of one CPU, "
                  f"median; {os.cpu_count()} CPUs; sysbench: its own and its children's)")
    ways = list(results.cpu)
    table.add_column("process")
    for way in ways:
        table.add_column(way)
    groups = list(results.cpu[ways[0]])
    for who in groups:
        table.add_row(who, *(f"{median(results.cpu[way].get(who, [0.0])):.0%}"
                             for way in ways))
    table.add_row("total", *(f"{sum(median(v) for v in results.cpu[way].values()):.0%}"
                             for way in ways))
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--time", type=int, default=20, help="seconds of each sysbench run")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of the comparison")
    parser.add_argument("--outages", type=int, default=5, help="runs of each outage")
    parser.add_argument("--warmup", type=int, default=5,
                        help="seconds of an untimed run of each test each way first")
    parser.add_argument("--pin", action="store_true",
                        help="sysbench, HAProxy and the router on CPU 0, the master's "
                             "mariadbd on CPU 1")
    parser.add_argument("--router-option", action="append", default=[],
                        help="an option for conpaassql router (repeatable), e.g. "
                             "--router-option=--check-interval=1000")
    parser.add_argument("--buffer-pool", default="128M")
    parser.add_argument("--subnet", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="limit of every single wait, in seconds")
    parser.add_argument("--quiet-wait", type=float, default=900.0,
                        help="seconds to wait for others' tests to end before a run")
    args = parser.parse_args(argv)
    found: list[Results] = []

    def measure(root: Path) -> None:
        with SubnetClaim(args.subnet) as claim:
            found.append(Bench(args, root, claim.subnet).run())

    if not run_measured("cq-bench-router-", measure):
        return 1
    render(found[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
