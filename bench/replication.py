"""How fast does the service seed a slave, fail over and switch over?

Run from the repository root::

    .venv/bin/python bench/replication.py                 # about 200 MB of data
    .venv/bin/python bench/replication.py --rows 100000 --failovers 1 --switchovers 1

One manager (local cloud, its default settings), nodes on a 127.0.N.0/24 of
their own. The first node is the master; a sysbench-like table is filled on it
from MariaDB's SEQUENCE engine. Then:

1. seeding, over ``--repeat`` rounds whose order alternates: the baseline is a
   bare ``mariabackup --backup --stream=xbstream | mbstream -x`` of the master
   into a directory, then ``mariabackup --prepare`` of it (both timed, the
   directory removed after); the service is ``add_nodes`` 1, timed until the new
   node is a slave replicating (IO and SQL threads running, no copy going on),
   with the copy's own time as the manager recorded it; the node is removed
   afterwards. Target: service / baseline at most 1.2. To tell the cost of the
   agents' tool options from that of the transfer, the tools also run with the
   options the agents give them (``--parallel``, ``--use-memory``); the CPU time
   of each run is split into mariadbd, the tools, the agents, the manager and
   this script.
2. failover, ``--failovers`` times: with a master, two slaves and a writer doing
   single-row autocommit INSERTs through the writer endpoint that
   ``get_service_info`` names (asking again after every failure, as an
   application would), the master's mariadbd is killed (SIGKILL); measured from
   the kill to the first INSERT the new master acknowledges, next to the
   manager's own ``last_failover.seconds``; every acknowledged row must be on
   the new master. After each, the topology must converge again (three nodes,
   the old master a slave) before the next. Target: under 3 s; published
   figures of other tools are printed as anchors.
3. switchover, ``--switchovers`` times to alternating slaves, with the writer
   running: ``set_up_replica_master``'s ``write_block_seconds`` and the longest
   gap between two acknowledged writes around it. Target: under 1 s.

Before every timed run the benchmark waits (up to 15 minutes, polling every
10 s; ``--quiet-wait``) until no other test run or benchmark is running on the
machine (``pgrep -f pytest``, and the other bench scripts); once such a wait has
run out, the later runs only look once, as the machine is busy for good. During
every run it counts the CPU time other processes took (and the time the
hypervisor gave to other guests), and says how busy the machine was. Prints a
table of medians, runs, ratios and targets, then one JSON line. The root
password is read from the state directory into client and mariabackup defaults
files (mode 0600), never put on a command line. Everything started here is
stopped and the temporary directory removed, also on failure or interruption;
every wait has a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchlib import (
    BUSY_SHARE,
    CPU_KINDS,
    SOURCE_DB,
    TABLE,
    BenchError,
    MachineShare,
    ManagerProcess,
    Native,
    QuietMachine,
    err,
    fill_source,
    median,
    mib,
    order,
    other_share,
    parse_table_arguments,
    quiet_signals,
    runs_of,
    signals_raise,
    table_arguments,
    verdict,
)
from conpaassql.files import write_private
from conpaassql.mysql.backup import (
    BACKUP,
    MBSTREAM,
    PREPARE_MEMORY,
    default_parallel,
    render_backup_cnf,
)
from conpaassql.mysql.binaries import find_binary
from conpaassql.mysql.paths import ServerPaths
from testbed.manager import SubnetClaim, wait_until, write_defaults
from testbed.workload import Writer

DEFAULT_ROWS = 750_000  # about 200 MB of InnoDB data and index (some 270 bytes a row)
SEED_TARGET = 1.2  # service / baseline
FAILOVER_TARGET = 3.0  # seconds from the kill to the first write on the new master
SWITCHOVER_TARGET = 1.0  # seconds of blocked writes
#: Published failover times of other tools (seconds): the anchors, not measured here.
ANCHORS = (("orchestrator", 10.0, 13.0), ("MHA", 10.0, 30.0), ("RDS Multi-AZ", 60.0, 120.0))
APP_DB = "app"
APP_TABLE = "w"
APP_USER = "bench_app"
WRITES_BEFORE = 100  # writes acknowledged before the fault or the switchover
WRITES_AFTER = 50  # ... and by the new master after it
POLL = 0.1  # seconds between two looks at the service's state
GAP_WINDOW = 1.0  # seconds around a switchover in which gaps between writes count
_COPY_EVENT = re.compile(r"is a slave of node (\d+) \(copy of (\d+) bytes in ([\d.]+) s[,)]")
_RESTORED = re.compile(r"copy restored into .*?: (\d+) bytes received, (\d+) of data, .*? in "
                       r"([\d.]+) s \(prepare ([\d.]+) s\)")
_SEEDED = re.compile(r"seeded from .*?: (\d+) bytes in ([\d.]+) s")
_STREAMED = re.compile(r"mariabackup pid \d+ done: (\d+ bytes|copy sent to \S+) in ([\d.]+) s")


# -- the application's writer -----------------------------------------------------


# -- results --------------------------------------------------------------------------


@dataclass
class Results:
    rows: int = 0
    data_bytes: int = 0
    fill_s: float = 0.0
    seed_base_copy: list[float] = field(default_factory=list)
    seed_base_prepare: list[float] = field(default_factory=list)
    seed_base_total: list[float] = field(default_factory=list)
    seed_base_bytes: list[int] = field(default_factory=list)  # the extracted copy
    seed_opt_copy: list[float] = field(default_factory=list)  # the tools, the agents' options
    seed_opt_prepare: list[float] = field(default_factory=list)
    seed_opt_total: list[float] = field(default_factory=list)
    seed_cpu_base: list[dict[str, float]] = field(default_factory=list)  # kind -> CPU s
    seed_cpu_options: list[dict[str, float]] = field(default_factory=list)
    seed_cpu_service: list[dict[str, float]] = field(default_factory=list)
    seed_service: list[float] = field(default_factory=list)  # add_nodes -> replicating
    seed_service_copy: list[float] = field(default_factory=list)  # as the manager timed it
    seed_service_bytes: list[int] = field(default_factory=list)  # received (files)
    seed_phases: list[dict[str, float]] = field(default_factory=list)
    failover: list[float] = field(default_factory=list)  # kill -> first ack on the new master
    failover_manager: list[float] = field(default_factory=list)  # last_failover.seconds
    failover_detect: list[float] = field(default_factory=list)  # kill -> failover started
    failover_client: list[float] = field(default_factory=list)  # failover done -> first ack
    failover_converge: list[float] = field(default_factory=list)  # kill -> 3 nodes again
    failover_acked: list[int] = field(default_factory=list)
    failover_lost: list[int] = field(default_factory=list)
    failover_old_acks: list[int] = field(default_factory=list)  # sent to the old master after
    failover_in_flight: list[int] = field(default_factory=list)  # sent before, acked after
    failover_moves: list[str] = field(default_factory=list)
    switch_block: list[float] = field(default_factory=list)  # write_block_seconds
    switch_gap: list[float] = field(default_factory=list)
    switch_call: list[float] = field(default_factory=list)  # the call's own seconds
    switch_acked: list[int] = field(default_factory=list)
    switch_lost: list[int] = field(default_factory=list)
    switch_moves: list[str] = field(default_factory=list)
    busy: list[tuple[str, float, float]] = field(default_factory=list)  # run, s, other CPU s
    steal: list[tuple[float, float]] = field(default_factory=list)  # run's s, CPU s stolen
    others_seen: list[str] = field(default_factory=list)  # others running during a run
    quiet_waited_s: float = 0.0
    quiet_waits: int = 0
    quiet_gave_up: int = 0
    leftovers: int = 0
    total_s: float = 0.0
    load: list[float] = field(default_factory=list)


# -- the service ------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, subnet: int,
                 results: Results) -> None:
        self.args = args
        self.timeout = float(args.timeout)
        self.root = root
        self.results = results
        self.subnet = subnet
        self.manager = ManagerProcess(root, subnet, args.buffer_pool)
        self.quiet = QuietMachine(limit=args.quiet_wait)
        self.defaults = root / "client.cnf"
        self.app_password = secrets.token_urlsafe(18)
        self.ids = itertools.count(1)
        self.writer: Writer | None = None

    # -- views ----------------------------------------------------------

    def native(self, node_id: int) -> Native:
        return Native(self.manager.socket_of(node_id), self.defaults, self.timeout)

    def topology(self, count: int, slave: int | None = None) -> tuple[int, list[int]]:
        """Wait for one master and ``count - 1`` slaves replicating from it (``slave``
        among them)."""

        def check() -> tuple[int, list[int]] | None:
            listed = self.manager.get("list_nodes")
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != count - 1:
                return None
            if sum(1 for n in listed["nodes"] if n["state"] == "RUNNING") != count:
                return None
            if slave is not None and slave not in listed["slaves"]:
                return None
            for node in listed["slaves"]:
                seen = self.manager.node(node)["replication"]
                if seen["io_running"] != "Yes" or seen["sql_running"] != "Yes" \
                        or seen["copying"]:
                    return None
            return int(listed["masters"][0]), sorted(int(n) for n in listed["slaves"])

        found = wait_until(check, self.timeout, 0.3, f"1 master and {count - 1} slaves")
        for node in (found[0], *found[1]):
            self.manager.note_pids(node)
        return found

    def replicating(self, node_id: int) -> bool:
        info = self.manager.node(node_id)
        if info.get("state") in ("FAILED", "TERMINATED"):
            raise BenchError(f"node {node_id} is {info['state']}")
        seen = info.get("replication") or {}
        return info.get("state") == "RUNNING" and info.get("role") == "slave" and \
            seen.get("io_running") == "Yes" and seen.get("sql_running") == "Yes" and \
            not seen.get("copying")

    def timed(self, what: str) -> MachineShare:
        others = self.quiet.wait(what)
        if others:
            self.results.others_seen += [f"{what}: {line}" for line in others]
        return MachineShare(self.root)

    def note_busy(self, what: str, share: MachineShare) -> None:
        self.results.busy.append((what, share.seconds, share.other))
        self.results.steal.append((share.seconds, share.steal))

    # -- the run --------------------------------------------------------

    def run(self) -> None:
        manager, args = self.manager, self.args
        err.print(f"starting the manager on :{manager.port} "
                  f"(nodes on 127.0.{self.subnet}.10-60)...")
        manager.start(self.timeout)
        first = manager.add_node(self.timeout)
        wait_until(lambda: manager.get("list_nodes")["masters"] == [first], self.timeout, POLL,
                   f"node {first} elected master")
        write_defaults(self.defaults, manager.root_password)
        master = self.native(first)
        started = time.perf_counter()
        fill_source(master, args.rows)
        self.results.fill_s = time.perf_counter() - started
        self.results.rows = args.rows
        master.sql("FLUSH TABLES")
        ibd = manager.node_dir(first) / "mysql" / "data" / SOURCE_DB / f"{TABLE}.ibd"
        self.results.data_bytes = ibd.stat().st_size
        err.print(f"master node {first}: {args.rows} rows, {mib(self.results.data_bytes)} of "
                  f"data and index ({ibd.name}), in {self.results.fill_s:.1f}s")

        self.measure_seeding(first)
        self.prepare_app(first)
        self.measure_failovers()
        self.measure_switchovers()

        err.print("shutting the service down...")
        manager.shutdown(self.timeout)
        manager.stop()

    # -- 1. seeding -------------------------------------------------------

    def measure_seeding(self, master_id: int) -> None:
        paths = ServerPaths(self.manager.node_dir(master_id) / "mysql")
        cnf = self.root / "backup.cnf"
        write_private(cnf, render_backup_cnf(paths, self.manager.root_password))
        master = self.native(master_id)
        for round_index in range(self.args.repeat):
            for kind in order(("base", "service", "options"), round_index):
                what = f"seed round {round_index + 1}/{self.args.repeat} {kind}"
                master.settle()
                if kind == "service":
                    self.seed_service(master_id, what)
                else:
                    self.seed_baseline(cnf, what, service_options=kind == "options")

    def _run_tools(self, what: str, *commands: list[str]) -> None:
        """``commands`` as a pipeline (each one's output into the next's input)."""
        logs = [open(self.root / f"tool-{i}.err", "w+b") for i in range(len(commands))]  # noqa: SIM115
        processes: list[subprocess.Popen[bytes]] = []
        try:
            previous: Any = subprocess.DEVNULL
            for i, command in enumerate(commands):
                last = i == len(commands) - 1
                process = subprocess.Popen(
                    command, stdin=previous,
                    stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                    stderr=logs[i], cwd=self.root, start_new_session=True)
                if previous is not subprocess.DEVNULL:
                    previous.close()  # the next one holds it now
                previous = process.stdout
                processes.append(process)
            deadline = time.monotonic() + self.timeout
            for process in processes:
                try:
                    process.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise BenchError(f"{what} took over {self.timeout:g}s") from None
            for process, log in zip(processes, logs, strict=True):
                log.seek(0)
                text = log.read().decode("utf-8", "replace")
                name = Path(str(process.args[0])).name
                if process.returncode != 0 or (name.startswith("maria")
                                               and "completed OK!" not in text[-2000:]):
                    raise BenchError(f"{what}: {name} exited with {process.returncode}: "
                                     f"{text.strip()[-600:]}")
        finally:
            for process in processes:
                if process.poll() is None:
                    with contextlib.suppress(OSError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            for log in logs:
                log.close()

    def seed_baseline(self, cnf: Path, what: str, service_options: bool) -> None:
        """The bare tools (or, with ``service_options``, the tools with the options the
        agents give them): a copy of the master into a directory, then prepared."""
        backup, mbstream = find_binary(*BACKUP), find_binary(*MBSTREAM)
        work = Path(tempfile.mkdtemp(prefix="bk-work-", dir=self.root))
        copy = Path(tempfile.mkdtemp(prefix="bk-copy-", dir=self.root))
        parallel = [f"--parallel={default_parallel()}"] if service_options else []
        prepare = [f"--defaults-file={copy / 'backup-my.cnf'}"] if service_options else []
        memory = [f"--use-memory={PREPARE_MEMORY}"] if service_options else []
        try:
            with self.timed(what) as share:
                started = time.perf_counter()
                self._run_tools(f"{what}: backup",
                                [backup, f"--defaults-file={cnf}", "--backup",
                                 "--stream=xbstream", f"--target-dir={work}", *parallel],
                                [mbstream, "-x", "-C", str(copy), *parallel])
                copied = time.perf_counter()
                self._run_tools(f"{what}: prepare",
                                [backup, *prepare, "--prepare", f"--target-dir={copy}",
                                 *memory])
                prepared = time.perf_counter()
            self.note_busy(what, share)
            size = sum(f.stat().st_size for f in copy.rglob("*") if f.is_file())
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(copy, ignore_errors=True)
        results = self.results
        if service_options:
            results.seed_opt_copy.append(copied - started)
            results.seed_opt_prepare.append(prepared - copied)
            results.seed_opt_total.append(prepared - started)
            results.seed_cpu_options.append(share.cpu)
        else:
            results.seed_base_copy.append(copied - started)
            results.seed_base_prepare.append(prepared - copied)
            results.seed_base_total.append(prepared - started)
            results.seed_base_bytes.append(size)
            results.seed_cpu_base.append(share.cpu)
        err.print(f"{what}: copy {copied - started:.2f}s + prepare {prepared - copied:.2f}s "
                  f"= {prepared - started:.2f}s ({mib(size)} prepared)")

    def seed_service(self, master_id: int, what: str) -> None:
        manager = self.manager
        with self.timed(what) as share:
            wall = time.time()
            started = time.perf_counter()
            node_id = manager.add_nodes(1)[0]
            wait_until(lambda: self.replicating(node_id), self.timeout, POLL,
                       f"node {node_id} replicating")
            seconds = time.perf_counter() - started
        self.note_busy(what, share)
        self.results.seed_cpu_service.append(share.cpu)
        manager.note_pids(node_id)
        info = manager.node(node_id)
        phases = self.seed_phases(node_id, master_id, info.get("history") or [], wall,
                                  wall + seconds)
        results = self.results
        results.seed_service.append(seconds)
        results.seed_service_copy.append(phases.get("copy (manager)", 0.0))
        results.seed_service_bytes.append(int(phases.pop("bytes", 0)))
        results.seed_phases.append(phases)
        err.print(f"{what}: node {node_id} replicating after {seconds:.2f}s "
                  f"(copy {phases.get('copy (manager)', 0.0):.2f}s as the manager timed it)")
        self.remove(node_id)

    def seed_phases(self, node_id: int, source: int, history: list[dict[str, Any]],
                    added: float, done: float) -> dict[str, float]:
        """Where the time of one seed went, from the node's history and agent log."""
        def first_at(test: Any) -> float | None:
            for entry in sorted(history, key=lambda e: float(e.get("at", 0))):
                if test(entry):
                    return float(entry["at"])
            return None

        running = first_at(lambda e: e.get("to") == "RUNNING")
        copying = first_at(lambda e: "copying node" in str(e.get("message")))
        slave = first_at(lambda e: _COPY_EVENT.search(str(e.get("message"))))
        phases: dict[str, float] = {}
        for entry in history:
            found = _COPY_EVENT.search(str(entry.get("message")))
            if found:
                phases["bytes"] = float(found.group(2))
                phases["copy (manager)"] = float(found.group(3))
        if running is not None:
            phases["add_nodes -> RUNNING"] = running - added
            if copying is not None:
                phases["RUNNING -> copy started"] = copying - running
        if slave is not None:
            phases["copy done -> replicating seen"] = max(0.0, done - slave)
        # The agents' own figures: the source's mariabackup stream, the new node's
        # restore (extract, prepare, then stop its server, swap and start it again).
        stream = _last(_STREAMED, self.manager.node_dir(source) / "agent.log")
        restored = _last(_RESTORED, self.manager.node_dir(node_id) / "agent.log")
        seeded = _last(_SEEDED, self.manager.node_dir(node_id) / "agent.log")
        if stream:
            phases["source agent: mariabackup --backup"] = float(stream[1])
        if restored:
            total, prepare = float(restored[2]), float(restored[3])
            phases["new agent: mariabackup --prepare"] = prepare
            if stream:
                phases["new agent: stop, swap, start mysqld"] = \
                    max(0.0, total - float(stream[1]) - prepare)
            if seeded:
                phases["new agent: set the GTID position"] = \
                    max(0.0, float(seeded[1]) - total)
        if seeded and "copy (manager)" in phases:
            phases["manager: CHANGE MASTER after the copy"] = \
                max(0.0, phases["copy (manager)"] - float(seeded[1]))
        return phases

    def remove(self, node_id: int) -> None:
        pids = [pid for pid in (self.manager.agent_pid(node_id),
                                self.manager.mysqld_pid(node_id)) if pid]
        self.manager.post("remove_nodes", serviceNodeId=node_id)

        def gone() -> bool:
            listed = self.manager.get("list_nodes")["serviceNode"]
            return node_id not in listed and not any(_alive(pid) for pid in pids)

        wait_until(gone, self.timeout, POLL, f"node {node_id} removed")

    # -- the application --------------------------------------------------

    def prepare_app(self, master_id: int) -> None:
        """Two slaves, then the application's database, account and table."""
        manager = self.manager
        err.print("adding two slaves...")
        manager.add_nodes(2)
        self.topology(3)
        manager.post("create_database", database=APP_DB)
        manager.post("configure_user", username=APP_USER, password=self.app_password,
                     database=APP_DB)
        master = self.topology(3)[0]
        self.native(master).sql(f"CREATE TABLE `{APP_DB}`.`{APP_TABLE}` "
                                "(id BIGINT PRIMARY KEY, at DOUBLE) ENGINE=InnoDB")

    def start_writer(self, master: int) -> Writer:
        self.writer = Writer(self.manager, APP_USER, self.app_password, APP_DB, APP_TABLE,
                             self.ids).start()
        writer = self.writer
        wait_until(lambda: writer.count(node=master) >= WRITES_BEFORE, self.timeout, 0.05,
                   f"{WRITES_BEFORE} writes acknowledged by node {master}")
        return writer

    def stop_writer(self) -> None:
        if self.writer is not None:
            self.writer.stop()

    def lost(self, writer: Writer, node_id: int) -> int:
        """Acknowledged rows missing on ``node_id``."""
        acked = writer.rows()
        if not acked:
            return 0
        rows = self.native(node_id).sql(
            f"SELECT id FROM `{APP_DB}`.`{APP_TABLE}` WHERE id BETWEEN {min(acked)} "
            f"AND {max(acked)}")
        present = {int(row[0]) for row in rows}
        return len(acked - present)

    # -- 2. failover ------------------------------------------------------

    def measure_failovers(self) -> None:
        for index in range(self.args.failovers):
            self.failover(f"failover {index + 1}/{self.args.failovers}")

    def failover(self, what: str) -> None:
        manager, results = self.manager, self.results
        old, _ = self.topology(3)
        pid = manager.mysqld_pid(old)
        if pid is None:
            raise BenchError(f"no mysqld pid for node {old}")
        share = self.timed(what)
        writer = self.start_writer(old)
        try:
            with share:
                wall = time.time()
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                ack = wait_until(lambda: writer.first(killed, not_node=old), self.timeout,
                                 0.01, "a write acknowledged by a new master")
                wait_until(lambda: writer.count(ack.node, killed) >= WRITES_AFTER,
                           self.timeout, 0.05, "writes on the new master")
        finally:
            self.stop_writer()
        self.note_busy(what, share)
        seconds = ack.at - killed
        last = manager.get("get_service_info").get("last_failover") or {}
        if last.get("from") != old or last.get("to") != ack.node:
            raise BenchError(f"{what}: last_failover is {last!r}, the writer moved from "
                             f"node {old} to node {ack.node}")
        done_at = float(last["at"]) - wall  # since the kill, on the wall clock
        results.failover.append(seconds)
        results.failover_manager.append(float(last["seconds"]))
        results.failover_detect.append(done_at - float(last["seconds"]))
        results.failover_client.append(seconds - done_at)
        results.failover_acked.append(len(writer.acks))
        results.failover_lost.append(self.lost(writer, ack.node))
        old_acks = [a for a in list(writer.acks) if a.node == old and a.at > killed]
        results.failover_old_acks.append(sum(1 for a in old_acks if a.sent > killed))
        results.failover_in_flight.append(sum(1 for a in old_acks if a.sent <= killed))
        results.failover_moves.append(f"{old}->{ack.node}")
        self.topology(3, slave=old)
        results.failover_converge.append(time.monotonic() - killed)
        err.print(f"{what}: node {old} -> node {ack.node}: first write after "
                  f"{seconds:.2f}s (manager {float(last['seconds']):.2f}s), "
                  f"{results.failover_lost[-1]} of {len(writer.acks)} acknowledged writes "
                  f"lost; converged after {results.failover_converge[-1]:.1f}s")

    # -- 3. switchover ----------------------------------------------------

    def measure_switchovers(self) -> None:
        for index in range(self.args.switchovers):
            self.switchover(index, f"switchover {index + 1}/{self.args.switchovers}")

    def switchover(self, index: int, what: str) -> None:
        manager, results = self.manager, self.results
        old, slaves = self.topology(3)
        target = slaves[index % len(slaves)]
        share = self.timed(what)
        writer = self.start_writer(old)
        try:
            with share:
                called = time.monotonic()
                reply = manager.post("set_up_replica_master", id=target)
                returned = time.monotonic()
                ack = wait_until(lambda: writer.first(called, node=target), self.timeout,
                                 0.01, f"a write acknowledged by node {target}")
                wait_until(lambda: writer.count(target, called) >= WRITES_AFTER,
                           self.timeout, 0.05, f"writes on node {target}")
        finally:
            self.stop_writer()
        self.note_busy(what, share)
        if reply.get("master") != target or reply.get("previous") != old:
            raise BenchError(f"{what}: set_up_replica_master answered {reply!r:.300}")
        gap = writer.longest_gap(called - GAP_WINDOW, ack.at + GAP_WINDOW)
        results.switch_block.append(float(reply["write_block_seconds"]))
        results.switch_gap.append(gap)
        results.switch_call.append(returned - called)
        results.switch_acked.append(len(writer.acks))
        results.switch_lost.append(self.lost(writer, target))
        results.switch_moves.append(f"{old}->{target}")
        self.topology(3, slave=old)
        err.print(f"{what}: node {old} -> node {target}: write_block_seconds "
                  f"{float(reply['write_block_seconds']):.3f}, longest gap {gap:.3f}s, "
                  f"{results.switch_lost[-1]} of {len(writer.acks)} acknowledged writes lost")

    def close(self) -> None:
        self.stop_writer()
        self.manager.close()
        self.results.leftovers = len(self.manager.leftovers())
        self.results.quiet_waited_s = self.quiet.waited
        self.results.quiet_waits = self.quiet.waits
        self.results.quiet_gave_up = self.quiet.gave_up


def _last(pattern: re.Pattern[str], log: Path) -> tuple[str, ...] | None:
    """The groups of the last line of ``log`` that ``pattern`` matches."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = pattern.findall(text)
    return tuple(found[-1]) if found else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# -- reporting ----------------------------------------------------------------------


def _r(values: list[float], digits: int = 3) -> list[float]:
    return [round(v, digits) for v in values]


def _mean_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(sum(run.get(name, 0.0) for run in runs) / len(runs), 2)
            for name in CPU_KINDS} if runs else {}


def _phase_medians(phases: list[dict[str, float]]) -> dict[str, float]:
    names = list(dict.fromkeys(k for p in phases for k in p))
    return {name: round(median([p[name] for p in phases if name in p]), 3) for name in names}


def summary(results: Results) -> dict[str, Any]:
    base = median(results.seed_base_total)
    service, copy = median(results.seed_service), median(results.seed_service_copy)
    failover = median(results.failover)
    return {
        "rows": results.rows,
        "data_bytes": results.data_bytes,
        "fill_s": round(results.fill_s, 2),
        "seed": {
            "baseline_s": round(base, 3),
            "baseline_copy_s": round(median(results.seed_base_copy), 3),
            "baseline_prepare_s": round(median(results.seed_base_prepare), 3),
            "baseline_bytes": results.seed_base_bytes,
            "service_s": round(service, 3),
            "service_copy_s": round(copy, 3),
            "service_bytes": results.seed_service_bytes,
            "ratio": round(service / base, 4),
            "copy_ratio": round(copy / base, 4),
            "options_s": round(median(results.seed_opt_total), 3),
            "options_copy_s": round(median(results.seed_opt_copy), 3),
            "options_prepare_s": round(median(results.seed_opt_prepare), 3),
            "options_ratio": round(service / median(results.seed_opt_total), 4),
            "copy_options_ratio": round(copy / median(results.seed_opt_total), 4),
            "phases_median_s": _phase_medians(results.seed_phases),
            "cpu_s_mean": {"baseline": _mean_cpu(results.seed_cpu_base),
                           "options": _mean_cpu(results.seed_cpu_options),
                           "service": _mean_cpu(results.seed_cpu_service)},
            "runs": {"baseline_s": _r(results.seed_base_total),
                     "baseline_copy_s": _r(results.seed_base_copy),
                     "baseline_prepare_s": _r(results.seed_base_prepare),
                     "options_s": _r(results.seed_opt_total),
                     "options_copy_s": _r(results.seed_opt_copy),
                     "options_prepare_s": _r(results.seed_opt_prepare),
                     "service_s": _r(results.seed_service),
                     "service_copy_s": _r(results.seed_service_copy),
                     "phases_s": [{k: round(v, 3) for k, v in p.items()}
                                  for p in results.seed_phases]},
        },
        "failover": {
            "service_s": round(failover, 3),
            "manager_s": round(median(results.failover_manager), 3),
            "detect_s": round(median(results.failover_detect), 3),
            "client_s": round(median(results.failover_client), 3),
            "converge_s": round(median(results.failover_converge), 2),
            "anchors_s": {name: [low, high] for name, low, high in ANCHORS},
            "ratio_to_anchor_low": {name: round(failover / low, 4) for name, low, _ in ANCHORS},
            "acked": results.failover_acked,
            "lost": results.failover_lost,
            "old_master_writes_after_kill": results.failover_old_acks,
            "old_master_in_flight_at_kill": results.failover_in_flight,
            "moves": results.failover_moves,
            "runs": {"service_s": _r(results.failover),
                     "manager_s": _r(results.failover_manager),
                     "detect_s": _r(results.failover_detect),
                     "client_s": _r(results.failover_client),
                     "converge_s": _r(results.failover_converge, 2)},
        },
        "switchover": {
            "write_block_s": round(median(results.switch_block), 3),
            "longest_gap_s": round(median(results.switch_gap), 3),
            "call_s": round(median(results.switch_call), 3),
            "acked": results.switch_acked,
            "lost": results.switch_lost,
            "moves": results.switch_moves,
            "runs": {"write_block_s": _r(results.switch_block),
                     "longest_gap_s": _r(results.switch_gap),
                     "call_s": _r(results.switch_call)},
        },
        "targets": {"seed_ratio": SEED_TARGET, "failover_s": FAILOVER_TARGET,
                    "switchover_s": SWITCHOVER_TARGET},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": [round(v, 2) for v in results.load],
            "other_cpu_share": round(other_share([(s, o) for _, s, o in results.busy]), 3),
            "other_cpu_share_runs": {what: round(other_share([(s, o)]), 3)
                                     for what, s, o in results.busy},
            "steal_cpu_share": round(other_share(results.steal), 3),
            "steal_cpu_share_max": round(max((other_share([run]) for run in results.steal),
                                             default=0.0), 3),
            "quiet_waited_s": round(results.quiet_waited_s, 1),
            "quiet_waits": results.quiet_waits,
            "quiet_gave_up": results.quiet_gave_up,
            "others_during_runs": results.others_seen[:20],
        },
        "leftover_processes": results.leftovers,
        "total_s": round(results.total_s, 1),
    }


def render(figures: dict[str, Any]) -> None:
    seed, fo, sw, machine = (figures["seed"], figures["failover"], figures["switchover"],
                             figures["machine"])
    table = Table(title=f"conpaassql replication: {figures['rows']} rows, "
                        f"{mib(figures['data_bytes'])} of data (local nodes, default settings)")
    table.add_column("measure")
    table.add_column("baseline", justify="right")
    table.add_column("service", justify="right")
    table.add_column("runs (baseline | service)")
    table.add_column("service / baseline", justify="right")
    table.add_column("target")
    runs = seed["runs"]
    table.add_row("seed a slave: copy+prepare | add_nodes → replicating",
                  f"{seed['baseline_s']:.2f} s", f"{seed['service_s']:.2f} s",
                  f"{runs_of(runs['baseline_s'])} | {runs_of(runs['service_s'])}",
                  f"{seed['ratio']:.3f}",
                  f"≤ {SEED_TARGET} {verdict(seed['ratio'] <= SEED_TARGET)}")
    table.add_row("  the copy as the manager timed it (seed_from)", "",
                  f"{seed['service_copy_s']:.2f} s", f"| {runs_of(runs['service_copy_s'])}",
                  f"{seed['copy_ratio']:.3f}",
                  f"≤ {SEED_TARGET} {verdict(seed['copy_ratio'] <= SEED_TARGET)}")
    table.add_row("  baseline: mariabackup --backup | mbstream -x",
                  f"{seed['baseline_copy_s']:.2f} s", "", runs_of(runs["baseline_copy_s"]),
                  "", "")
    table.add_row("  baseline: mariabackup --prepare", f"{seed['baseline_prepare_s']:.2f} s",
                  "", runs_of(runs["baseline_prepare_s"]), "", "")
    table.add_row(f"  same, --parallel={default_parallel()} --use-memory={PREPARE_MEMORY}",
                  f"{seed['options_s']:.2f} s", "", runs_of(runs["options_s"]),
                  f"{seed['options_ratio']:.3f}", "")
    table.add_row("    of which --backup | mbstream -x, --prepare",
                  f"{seed['options_copy_s']:.2f} + {seed['options_prepare_s']:.2f} s", "",
                  f"{runs_of(runs['options_copy_s'])}, {runs_of(runs['options_prepare_s'])}",
                  "", "")
    for name, value in seed["phases_median_s"].items():
        if name != "copy (manager)":
            table.add_row(f"  service: {name}", "", f"{value:.2f} s", "", "", "")
    table.add_row("  the copy (seed_from) / the same with --parallel, --use-memory", "", "",
                  "", f"{seed['copy_options_ratio']:.3f}", "")
    table.add_row("  copy size: prepared directory | received",
                  mib(seed["baseline_bytes"][0]), mib(seed["service_bytes"][0]), "",
                  f"{seed['service_bytes'][0] / seed['baseline_bytes'][0]:.3f}", "")
    cpu = seed["cpu_s_mean"]
    for name in CPU_KINDS:
        if any(cpu[k].get(name) for k in cpu):
            table.add_row(f"  CPU s per seed (mean): {name}",
                          f"{cpu['baseline'].get(name, 0.0):.2f} "
                          f"({cpu['options'].get(name, 0.0):.2f})",
                          f"{cpu['service'].get(name, 0.0):.2f}", "baseline (agents' options)",
                          "", "")
    runs = fo["runs"]
    low_name, low, high = ANCHORS[0]
    ok = fo["service_s"] < FAILOVER_TARGET
    table.add_row("failover: kill master → first write on new master",
                  f"{low_name} {low:g}-{high:g} s", f"{fo['service_s']:.2f} s",
                  f"| {runs_of(runs['service_s'])}",
                  f"{fo['ratio_to_anchor_low'][low_name]:.3f}",
                  f"< {FAILOVER_TARGET:g} s {verdict(ok)}")
    for name, anchor_low, anchor_high in ANCHORS[1:]:
        table.add_row(f"  anchor: {name}", f"{anchor_low:g}-{anchor_high:g} s", "", "",
                      f"{fo['ratio_to_anchor_low'][name]:.3f}", "")
    table.add_row("  the failover as the manager timed it (last_failover)", "",
                  f"{fo['manager_s']:.2f} s", f"| {runs_of(runs['manager_s'])}", "", "")
    table.add_row("  kill → the manager starts the failover", "", f"{fo['detect_s']:.2f} s",
                  f"| {runs_of(runs['detect_s'])}", "", "")
    table.add_row("  failover done → the writer's first write", "", f"{fo['client_s']:.2f} s",
                  f"| {runs_of(runs['client_s'])}", "", "")
    table.add_row("  kill → converged again (old master a slave)", "",
                  f"{fo['converge_s']:.1f} s", f"| {runs_of(runs['converge_s'])}", "", "")
    lost, acked = sum(fo["lost"]), sum(fo["acked"])
    table.add_row("  acknowledged writes lost", "", f"{lost} of {acked}",
                  f"moves {' '.join(fo['moves'])}", "", f"0 {verdict(lost == 0)}")
    after, in_flight = sum(fo["old_master_writes_after_kill"]), \
        sum(fo["old_master_in_flight_at_kill"])
    table.add_row("  writes the old master acknowledged after the kill", "",
                  f"{after}", f"+ {in_flight} sent before it, acknowledged after", "",
                  f"0 {verdict(after == 0)}")
    runs = sw["runs"]
    block, gap = sw["write_block_s"], sw["longest_gap_s"]
    table.add_row("switchover: write_block_seconds", "", f"{block:.3f} s",
                  f"| {runs_of(runs['write_block_s'])}", "",
                  f"< {SWITCHOVER_TARGET:g} s {verdict(block < SWITCHOVER_TARGET)}")
    table.add_row("  longest gap between acknowledged writes", "", f"{gap:.3f} s",
                  f"| {runs_of(runs['longest_gap_s'])}", "",
                  f"< {SWITCHOVER_TARGET:g} s {verdict(gap < SWITCHOVER_TARGET)}")
    table.add_row("  set_up_replica_master call", "", f"{sw['call_s']:.3f} s",
                  f"| {runs_of(runs['call_s'])}", "", "")
    lost, acked = sum(sw["lost"]), sum(sw["acked"])
    table.add_row("  acknowledged writes lost", "", f"{lost} of {acked}",
                  f"moves {' '.join(sw['moves'])}", "", f"0 {verdict(lost == 0)}")
    table.add_row("source: fill", f"{figures['fill_s']:.1f} s", "", "", "", "")
    table.add_row("total benchmark time", f"{figures['total_s']:.1f} s", "", "", "", "")
    table.add_row("load average (1 min) start / end, CPUs",
                  " / ".join(f"{v:.2f}" for v in machine["load_average_1m"]),
                  str(machine["cpus"]), "", "", "")
    table.add_row("waited for others' tests/benchmarks before the runs",
                  f"{machine['quiet_waited_s']:.0f} s", f"{machine['quiet_waits']} runs",
                  f"{machine['quiet_gave_up']} run(s) started with others running", "", "")
    share = machine["other_cpu_share"]
    table.add_row("other processes' share of the CPUs during the runs", f"{share:.0%}", "",
                  "max " + f"{max(machine['other_cpu_share_runs'].values(), default=0):.0%}",
                  "", f"< {BUSY_SHARE:.0%} {verdict(share < BUSY_SHARE)}")
    steal = machine["steal_cpu_share"]
    table.add_row("CPU time stolen by the hypervisor during the runs", f"{steal:.0%}", "",
                  f"max {machine['steal_cpu_share_max']:.0%}", "",
                  f"< {BUSY_SHARE:.0%} {verdict(steal < BUSY_SHARE)}")
    table.add_row("processes left behind", "", str(figures["leftover_processes"]), "", "",
                  f"0 {verdict(figures['leftover_processes'] == 0)}")
    console = Console(width=170)
    console.print(table)
    if share >= BUSY_SHARE:
        console.print(f"[yellow]note:[/yellow] other work took {share:.0%} of this machine's "
                      "CPU time during the timed runs; it slows whichever run it overlaps, so "
                      "the figures are noisy: run again on a quiet machine.")
    if steal >= BUSY_SHARE:
        console.print(f"[yellow]note:[/yellow] the hypervisor gave {steal:.0%} of this "
                      "machine's CPU time to other guests during the timed runs: the figures "
                      "are slowed by work outside this machine.")


def main(argv: list[str] | None = None) -> int:
    parser = table_arguments(__doc__, rows=DEFAULT_ROWS, size="200 MB", repeat=2)
    parser.add_argument("--failovers", type=int, default=5,
                        help="failovers to take the median of (default %(default)s)")
    parser.add_argument("--switchovers", type=int, default=5,
                        help="switchovers to take the median of (default %(default)s)")
    parser.add_argument("--quiet-wait", type=float, default=900.0,
                        help="longest wait for others' tests and benchmarks to end before a "
                             "timed run, in seconds (default %(default)s)")
    args = parse_table_arguments(parser, argv, "failovers", "switchovers")

    started = time.perf_counter()
    results = Results(load=[os.getloadavg()[0]])
    root = Path(tempfile.mkdtemp(prefix="cqr-", dir="/tmp"))
    claim: SubnetClaim | None = None
    bench: Bench | None = None
    try:
        with signals_raise():
            claim = SubnetClaim(args.subnet)
            bench = Bench(args, root, claim.subnet, results)
            bench.run()
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        err.print("[red]interrupted[/red]")
        return 130
    finally:
        quiet_signals()
        if bench is not None:
            bench.close()
        shutil.rmtree(root, ignore_errors=True)
        if claim is not None:
            claim.release()
    results.total_s = time.perf_counter() - started
    results.load.append(os.getloadavg()[0])
    figures = summary(results)
    render(figures)
    print(json.dumps(figures, sort_keys=True), flush=True)
    return 0 if figures["leftover_processes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
