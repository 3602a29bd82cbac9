"""How long does a rolling restart of a three-node service take, and block writes?

Run from the repository root::

    .venv/bin/python bench/restart.py                 # three rolling restarts
    .venv/bin/python bench/restart.py --restarts 1

One manager (local cloud), a master and two slaves, the application's table, and
a writer doing single-row autocommit INSERTs through the writer endpoint that
``get_service_info`` names (asking again after every failure, as an application
would). Each round calls ``restart_nodes`` (every node: the slaves one at a
time, each back and replicating before the next, then a switchover to a slave,
then the old master) and waits until ``get_server_configuration`` says the
restart is done. Figures: the restart's total time (the manager's, and the wall
time from the call), the switchover's ``write_block_seconds`` (the manager's),
the longest gap between two acknowledged writes during the restart (what the
application saw, reconnecting included), and the acknowledged writes lost
(must be 0). Target: writes blocked under 1 s (the switchover's, not the
restarts'). Before each round it waits (``--quiet-wait``) for others' tests and
benchmarks to end, and says how busy the machine was. Prints a table of medians,
then one JSON line. Everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchlib import (
    BUSY_SHARE,
    BenchError,
    MachineShare,
    ManagerProcess,
    Native,
    QuietMachine,
    err,
    median,
    run_measured,
    runs_of,
    verdict,
)
from replication import APP_DB, APP_TABLE, APP_USER, WRITES_BEFORE
from testbed.manager import SubnetClaim, wait_until, write_defaults
from testbed.workload import Writer

WRITE_BLOCK_TARGET = 1.0  # seconds
POLL = 0.2


class RestartBench:
    def __init__(self, args: argparse.Namespace, root: Path, subnet: int) -> None:
        self.args = args
        self.root = root
        self.timeout = float(args.timeout)
        self.manager = ManagerProcess(root, subnet, args.buffer_pool)
        self.quiet = QuietMachine(limit=args.quiet_wait)
        self.defaults = root / "client.cnf"
        self.password = secrets.token_urlsafe(18)
        self.ids = itertools.count(1)
        self.rounds: list[dict[str, Any]] = []
        self.busy: list[tuple[float, float]] = []  # seconds, other processes' CPU seconds

    def native(self, node_id: int) -> Native:
        return Native(self.manager.socket_of(node_id), self.defaults, self.timeout)

    def topology(self) -> tuple[int, list[int]]:
        def check() -> tuple[int, list[int]] | None:
            listed = self.manager.get("list_nodes")
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != 2 or \
                    sum(n["state"] == "RUNNING" for n in listed["nodes"]) != 3:
                return None
            for node in listed["slaves"]:
                seen = self.manager.node(node)["replication"]
                if seen["io_running"] != "Yes" or seen["sql_running"] != "Yes" or \
                        seen["copying"]:
                    return None
            return int(listed["masters"][0]), sorted(int(n) for n in listed["slaves"])

        return wait_until(check, self.timeout, 0.3, "1 master and 2 slaves")

    def run(self) -> None:
        manager = self.manager
        err.print(f"starting the manager on :{manager.port}...")
        manager.start(self.timeout)
        manager.add_nodes(3)
        master, slaves = self.topology()
        for node in (master, *slaves):
            manager.note_pids(node)
        write_defaults(self.defaults, manager.root_password)
        manager.post("create_database", database=APP_DB)
        manager.post("configure_user", username=APP_USER, password=self.password,
                     database=APP_DB)
        self.native(master).sql(f"CREATE TABLE `{APP_DB}`.`{APP_TABLE}` "
                                "(id BIGINT PRIMARY KEY, at DOUBLE) ENGINE=InnoDB")
        for index in range(self.args.restarts):
            self.restart(f"rolling restart {index + 1}/{self.args.restarts}")
        manager.shutdown(self.timeout)
        manager.stop()

    def restart(self, what: str) -> None:
        manager = self.manager
        old, _ = self.topology()
        self.quiet.wait(what)
        share = MachineShare(self.root)
        writer = Writer(manager, APP_USER, self.password, APP_DB, APP_TABLE, self.ids).start()
        try:
            wait_until(lambda: writer.count(node=old) >= WRITES_BEFORE, self.timeout, 0.05,
                       f"{WRITES_BEFORE} writes acknowledged")
            with share:
                called = time.monotonic()
                manager.post("restart_nodes")
                done = wait_until(self._finished, self.timeout, POLL, "the restart's end")
                ended = time.monotonic()
                wait_until(lambda: writer.count(after=ended) >= WRITES_BEFORE, self.timeout,
                           0.05, "writes after the restart")
        finally:
            writer.stop()
        if done.get("state") != "done":
            raise BenchError(f"{what} failed: {done.get('error')}")
        master, _ = self.topology()
        present = {int(row[0]) for row in self.native(master).sql(
            f"SELECT id FROM `{APP_DB}`.`{APP_TABLE}`")}
        figures = {"total_s": float(done["seconds"]), "wall_s": ended - called,
                   "write_block_s": float(done["write_block_seconds"]),
                   "longest_gap_s": writer.longest_gap(called, ended),
                   "acked": len(writer.acks), "lost": len(writer.rows() - present),
                   "move": f"{old}->{master}"}
        self.rounds.append(figures)
        self.busy.append((share.seconds, share.other))
        err.print(f"{what}: {figures['total_s']:.1f} s, writes blocked "
                  f"{figures['write_block_s']:.3f} s (longest gap "
                  f"{figures['longest_gap_s']:.3f} s), {figures['lost']} of "
                  f"{figures['acked']} acknowledged writes lost, master {figures['move']}")

    def _finished(self) -> dict[str, Any] | None:
        found = self.manager.get("get_server_configuration").get("restart")
        return found if found and found.get("state") != "running" else None

    def close(self) -> None:
        self.manager.close()


def summary(bench: RestartBench, total: float, load: list[float]) -> dict[str, Any]:
    rounds = bench.rounds
    seconds = sum(s for s, _ in bench.busy)
    cpus = os.cpu_count() or 1
    return {
        "rounds": rounds,
        "total_s": median([r["total_s"] for r in rounds]),
        "wall_s": median([r["wall_s"] for r in rounds]),
        "write_block_s": median([r["write_block_s"] for r in rounds]),
        "longest_gap_s": median([r["longest_gap_s"] for r in rounds]),
        "lost": sum(r["lost"] for r in rounds),
        "acked": sum(r["acked"] for r in rounds),
        "target_write_block_s": WRITE_BLOCK_TARGET,
        "benchmark_s": total,
        "load_average_1m": load,
        "cpus": cpus,
        "other_cpu_share": sum(o for _, o in bench.busy) / (seconds * cpus) if seconds else 0.0,
        "quiet_gave_up": bench.quiet.gave_up,
    }


def render(figures: dict[str, Any]) -> None:
    rounds = figures["rounds"]
    table = Table(title="rolling restart of a three-node service (medians)")
    for column in ("figure", "median", "runs", "target"):
        table.add_column(column)
    block = figures["write_block_s"]
    table.add_row("writes blocked (switchover's write_block_seconds)", f"{block:.3f} s",
                  runs_of([r["write_block_s"] for r in rounds]),
                  f"< {WRITE_BLOCK_TARGET:.0f} s {verdict(block < WRITE_BLOCK_TARGET)}")
    table.add_row("  longest gap between acknowledged writes", f"{figures['longest_gap_s']:.3f} s",
                  runs_of([r["longest_gap_s"] for r in rounds]), "")
    table.add_row("rolling restart, total (manager)", f"{figures['total_s']:.1f} s",
                  runs_of([r["total_s"] for r in rounds]), "")
    table.add_row("  from the call to its end (client)", f"{figures['wall_s']:.1f} s",
                  runs_of([r["wall_s"] for r in rounds]), "")
    table.add_row("acknowledged writes lost", f"{figures['lost']} of {figures['acked']}",
                  " ".join(r["move"] for r in rounds), f"0 {verdict(figures['lost'] == 0)}")
    table.add_row("total benchmark time", f"{figures['benchmark_s']:.1f} s", "", "")
    table.add_row("load average (1 min) start / end, CPUs",
                  " / ".join(f"{v:.2f}" for v in figures["load_average_1m"]),
                  str(figures["cpus"]), "")
    share = figures["other_cpu_share"]
    table.add_row("other processes' share of the CPUs during the runs", f"{share:.0%}", "",
                  f"< {BUSY_SHARE:.0%} {verdict(share < BUSY_SHARE)}")
    Console(width=150).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--restarts", type=int, default=3,
                        help="rolling restarts to take the median of (default %(default)s)")
    parser.add_argument("--buffer-pool", default="128M",
                        help="innodb_buffer_pool_size of the nodes (default %(default)s)")
    parser.add_argument("--subnet", type=int, default=None,
                        help="nodes get 127.0.SUBNET.10-60 (default: a free one of 101-249)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    parser.add_argument("--quiet-wait", type=float, default=300.0,
                        help="longest wait for others' tests and benchmarks to end before a "
                             "round, in seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if args.restarts < 1:
        parser.error("--restarts must be at least 1")
    started = time.perf_counter()
    load = [os.getloadavg()[0]]
    holder: list[RestartBench] = []

    def measure(root: Path) -> None:
        claim = SubnetClaim(args.subnet)
        try:
            bench = RestartBench(args, root, claim.subnet)
            holder.append(bench)
            try:
                bench.run()
            finally:
                bench.close()
        finally:
            claim.release()

    if not run_measured("cqrr-", measure) or not holder or not holder[0].rounds:
        return 1
    load.append(os.getloadavg()[0])
    figures = summary(holder[0], time.perf_counter() - started, load)
    render(figures)
    print(json.dumps(figures, sort_keys=True), flush=True)
    return 0 if figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
