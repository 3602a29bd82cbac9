"""What does the web front-end add to a dump's way in and out, against the manager's
API called directly?

Run from the repository root::

    .venv/bin/python bench/gui.py                 # a dump of about 100 MB
    .venv/bin/python bench/gui.py --rows 50000    # a quick run

One manager (local cloud) with one node, and its front-end as a real process
(``conpaassql gui`` on a free port, its configuration pointing at the manager
with the owner's token file, as ``make run`` writes it). On the node a
sysbench-like table filled from MariaDB's SEQUENCE engine, dumped with the real
``mariadb-dump``. Then, over ``--repeat`` rounds whose order alternates:

1. upload: the dump POSTed as the raw body of ``/data/upload?filename=&database=``
   with the page's CSRF token in ``X-CSRF-Token`` (read from the ``csrf-token``
   meta tag of a page, as the page's script does) against ``load_dump`` sent
   straight to the manager (``RpcClient.upload``); each run into a fresh
   database, checked afterwards (row count and ``CHECKSUM TABLE`` equal to the
   source's);
2. export: ``GET /data/export?database=`` streamed to a file against ``sqldump``
   straight from the manager (``RpcClient.download``).

During every run the resident memory of the front-end, the manager and the
node's agent is sampled every 50 ms, and the CPU time of each process is
recorded: the front-end's is the cost of the extra hop. The front-end's idle
memory is read once it has served its first page, and again after the
transfers. Before every timed run the machine is left to other engineers' test
runs and benchmarks (up to 15 minutes) and the server is settled (dirty pages
flushed, undo purged, the OS's write-back done).

Prints a table of medians, runs, ratios front-end/direct and memory, then one
JSON line. Everything started here is stopped and the temporary directory
removed, also on failure or interruption; every wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from benchlib import (
    REPO,
    SOURCE_DB,
    BenchError,
    ManagerProcess,
    Native,
    QuietMachine,
    Watch,
    err,
    fill_source,
    median,
    mib,
    order,
    other_share,
    parse_table_arguments,
    print_with_machine_rows,
    quiet_signals,
    report,
    run_measured,
    run_within,
    runs_of,
    table_arguments,
    verdict,
    vmrss_mb,
)
from conpaassql.rpc.client import STREAM_CHUNK, read_chunks
from testbed.manager import SubnetClaim, free_port, stop_child, wait_until, write_defaults

DEFAULT_ROWS = 500_000  # about 100 MB of dump (some 204 bytes a row)
UPLOAD_TARGET = 1.10  # front-end / direct
EXPORT_TARGET = 1.10  # front-end / direct
RSS_TARGET_MB = 100.0  # peak resident memory of the front-end
KINDS = ("direct", "gui")
WATCHED = ("gui", "manager", "agent")
CPU_NAMES = ("gui", "manager", "agent", "mariadbd", "client tool", "bench", "other processes")
IDLE_SETTLE = 2.0  # seconds the front-end is left alone before its idle memory is read
CSRF_META = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)"')
PAGE = {"Accept": "text/html,application/xhtml+xml"}


# -- the front-end ------------------------------------------------------------------


class GuiProcess:
    """``conpaassql gui`` on a free loopback port, for the benchmark's manager."""

    def __init__(self, root: Path, manager: ManagerProcess) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.config_file = root / "manager-gui.conf"
        self.log_file = root / "gui.out"
        token = manager.state_dir / "secrets" / "api_token"
        self.config_file.write_text(
            f"MANAGER_HOST = '127.0.0.1'\nMANAGER_PORT = {manager.port}\n"
            f"MANAGER_HTTPS = false\nTOKEN_FILE = '{token}'\n", encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float) -> str:
        """Start it and wait for its first page; that page's CSRF token."""
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conpaassql", "gui", "-c", str(self.config_file),
                 "-b", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                start_new_session=True)

        def ready() -> str:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BenchError(f"the front-end exited with {self.process.returncode}: "
                                 f"{self.log_tail()}")
            return self.csrf()

        return str(wait_until(ready, timeout, 0.1, "the front-end's first page"))

    def csrf(self) -> str:
        """The CSRF token of the data page, as a browser gets it."""
        response = httpx.get(f"{self.origin}/data", headers=PAGE, timeout=30.0)
        found = CSRF_META.search(response.text)
        if response.status_code != 200 or found is None:
            raise BenchError(f"GET /data answered {response.status_code} without a CSRF "
                             f"token: {response.text[:300]!r}")
        return found.group(1)

    def upload(self, dump: Path, database: str, csrf: str,
               deadline: float) -> tuple[dict[str, Any], float]:
        """The dump POSTed as the body of ``/data/upload``, as the page's script
        sends a file; the answer and its seconds."""
        size = dump.stat().st_size
        headers = {"X-CSRF-Token": csrf, "Content-Type": "application/octet-stream",
                   "Content-Length": str(size), "Origin": self.origin,
                   "Accept": "*/*"}
        params = {"filename": dump.name, "database": database}

        async def send() -> tuple[dict[str, Any], float]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0)) as http:
                with open(dump, "rb") as handle:
                    started = time.perf_counter()
                    response = await http.post(f"{self.origin}/data/upload", params=params,
                                               content=read_chunks(handle), headers=headers)
                    seconds = time.perf_counter() - started
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if response.status_code != 200 or not isinstance(answer, dict) or \
                    not answer.get("ok"):
                raise BenchError(f"POST /data/upload answered {response.status_code}: "
                                 f"{response.text[:300]!r}")
            return answer, seconds

        return run_within(send(), deadline, f"the upload of {dump.name} to the front-end")

    def export(self, database: str, out: Path, deadline: float) -> tuple[int, float]:
        """``/data/export?database=`` streamed into ``out``; its bytes and seconds."""

        async def fetch() -> tuple[int, float]:
            written = 0
            async with httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0)) as http:
                with open(out, "wb") as handle:
                    started = time.perf_counter()
                    async with http.stream("GET", f"{self.origin}/data/export",
                                           params={"database": database},
                                           headers=PAGE) as response:
                        if response.status_code != 200:
                            await response.aread()
                            raise BenchError(f"GET /data/export answered "
                                             f"{response.status_code}: "
                                             f"{response.text[:300]!r}")
                        async for chunk in response.aiter_raw(STREAM_CHUNK):
                            handle.write(chunk)
                            written += len(chunk)
                    return written, time.perf_counter() - started

        return run_within(fetch(), deadline, f"the export of {database} from the front-end")

    def idle_rss(self) -> float | None:
        time.sleep(IDLE_SETTLE)
        return vmrss_mb(self.pid)

    def log_tail(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")[-800:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, grace=10.0)
            self.process = None


# -- measuring --------------------------------------------------------------------


def _runs() -> dict[str, list[Any]]:
    return {kind: [] for kind in KINDS}


@dataclass
class Results:
    rows: int = 0
    fill_s: float = 0.0
    dump_s: float = 0.0
    dump_bytes: int = 0
    upload: dict[str, list[float]] = field(default_factory=_runs)
    upload_reported: dict[str, list[float]] = field(default_factory=_runs)  # the manager's
    export: dict[str, list[float]] = field(default_factory=_runs)
    export_bytes: dict[str, list[int]] = field(default_factory=_runs)
    rss_upload: dict[str, dict[str, float]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})  # peaks over every round
    rss_export: dict[str, dict[str, float]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})
    cpu_upload: dict[str, list[dict[str, float]]] = field(default_factory=_runs)
    cpu_export: dict[str, list[dict[str, float]]] = field(default_factory=_runs)
    gui_idle_mb: dict[str, float | None] = field(default_factory=dict)
    quiet_waited_s: float = 0.0
    quiet_gave_up: int = 0
    total_s: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


def _peaks(into: dict[str, float], watch: Watch) -> None:
    for name, value in watch.peak.items():
        into[name] = max(into.get(name, 0.0), value)


@dataclass
class Bench:
    """What every run needs: the processes, the node's tools, the source."""

    args: argparse.Namespace
    manager: ManagerProcess
    gui: GuiProcess
    native: Native
    node_id: int
    quiet: QuietMachine
    results: Results

    @property
    def pids(self) -> dict[str, int | None]:
        return {"gui": self.gui.pid, "manager": self.manager.pid,
                "agent": self.manager.agent_pid(self.node_id),
                "mariadbd": self.manager.mysqld_pid(self.node_id)}

    def uploads(self, dump: Path, source: tuple[str, str], csrf: str) -> None:
        results, deadline = self.results, float(self.args.timeout)
        for round_index in range(self.args.repeat):
            for kind in order(KINDS, round_index):
                database = f"upload_{kind}_{round_index + 1}"
                self.native.sql(f"CREATE DATABASE `{database}`")
                self.quiet.wait(f"upload round {round_index + 1} ({kind})")
                self.native.settle()
                with Watch(self.pids, rss=WATCHED) as watch:
                    if kind == "direct":
                        reply, seconds = self.manager.timed_upload(
                            "load_dump", "mysqldump_file", dump, deadline=deadline,
                            database=database)
                    else:
                        reply, seconds = self.gui.upload(dump, database, csrf, deadline)
                if reply.get("nodes") != [self.node_id] or \
                        reply.get("bytes") != results.dump_bytes:
                    raise BenchError(f"the {kind} upload answered {reply!r:.300}")
                results.upload[kind].append(seconds)
                results.upload_reported[kind].append(float(reply.get("seconds") or 0.0))
                _peaks(results.rss_upload[kind], watch)
                results.cpu_upload[kind].append(watch.cpu)
                got = self.native.fingerprint(database)
                if got != source:
                    raise BenchError(f"{kind} upload into {database}: rows and checksum "
                                     f"{got}, the source has {source}")
                self.native.sql(f"DROP DATABASE `{database}`")
                err.print(f"upload round {round_index + 1}/{self.args.repeat} {kind:>6}: "
                          f"{seconds:.2f}s (verified {got[0]} rows, checksum {got[1]}; "
                          f"front-end CPU {watch.cpu.get('gui', 0.0):.2f}s)")

    def exports(self, root: Path) -> None:
        results, deadline = self.results, float(self.args.timeout)
        for round_index in range(self.args.repeat):
            for kind in order(KINDS, round_index):
                out = root / f"export-{kind}.sql"
                self.quiet.wait(f"export round {round_index + 1} ({kind})")
                self.native.settle()
                with Watch(self.pids, rss=WATCHED) as watch:
                    if kind == "direct":
                        size, seconds = self.manager.timed_download("sqldump", out,
                                                              deadline=deadline,
                                                              database=SOURCE_DB)
                    else:
                        size, seconds = self.gui.export(SOURCE_DB, out, deadline)
                if size != out.stat().st_size:
                    raise BenchError(f"{kind} export: {size} bytes received, "
                                     f"{out.stat().st_size} written")
                with open(out, "rb") as handle:
                    handle.seek(max(0, size - 200))
                    if b"-- Dump completed" not in handle.read():
                        raise BenchError(f"the {kind} export does not end as a complete dump")
                results.export[kind].append(seconds)
                results.export_bytes[kind].append(size)
                _peaks(results.rss_export[kind], watch)
                results.cpu_export[kind].append(watch.cpu)
                err.print(f"export round {round_index + 1}/{self.args.repeat} {kind:>6}: "
                          f"{seconds:.2f}s, {mib(size)} (front-end CPU "
                          f"{watch.cpu.get('gui', 0.0):.2f}s)")
                out.unlink()


def measure(args: argparse.Namespace, root: Path, subnet: int, results: Results) -> None:
    timeout = float(args.timeout)
    quiet = QuietMachine()
    manager = ManagerProcess(root, subnet, args.buffer_pool)
    gui: GuiProcess | None = None
    try:
        err.print(f"starting the manager on :{manager.port} (nodes on 127.0.{subnet}.10-60)...")
        manager.start(timeout)
        node_id = manager.add_node(timeout)
        err.print(f"node {node_id} RUNNING")
        gui = GuiProcess(root, manager)
        csrf = gui.start(timeout)
        results.gui_idle_mb["start"] = gui.idle_rss()
        err.print(f"front-end on :{gui.port}, idle at {results.gui_idle_mb['start']} MB")
        defaults = root / "client.cnf"
        write_defaults(defaults, manager.root_password)
        native = Native(manager.socket_of(node_id), defaults, timeout)

        started = time.perf_counter()
        fill_source(native, args.rows)
        results.fill_s = time.perf_counter() - started
        source = native.fingerprint(SOURCE_DB)
        if source[0] != str(args.rows):
            raise BenchError(f"the source table has {source[0]} rows, not {args.rows}")
        dump = root / "source.sql"
        results.dump_s = native.dump(SOURCE_DB, dump)
        results.dump_bytes = dump.stat().st_size
        results.rows = args.rows
        err.print(f"source: {args.rows} rows in {results.fill_s:.1f}s; mariadb-dump "
                  f"{mib(results.dump_bytes)} in {results.dump_s:.1f}s")

        bench = Bench(args, manager, gui, native, node_id, quiet, results)
        bench.uploads(dump, source, csrf)
        dump.unlink()
        bench.exports(root)
        results.gui_idle_mb["end"] = gui.idle_rss()
        results.quiet_waited_s = quiet.waited
        results.quiet_gave_up = quiet.gave_up

        err.print("shutting the service down...")
        gui.stop()
        manager.shutdown(timeout)
        manager.stop()
    finally:
        quiet_signals()
        if gui is not None:
            gui.stop()
        manager.close()


# -- reporting ----------------------------------------------------------------------


def _mean_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: round(statistics.fmean([run[name] for run in runs if name in run]), 2)
            for name in names}


def _other_share(results: Results) -> float:
    """The share of the machine's CPU time that other processes took during the runs."""
    pairs = [(results.upload[kind], results.cpu_upload[kind]) for kind in KINDS] + \
        [(results.export[kind], results.cpu_export[kind]) for kind in KINDS]
    return other_share([(seconds, cpu.get("other processes", 0.0))
                        for times, runs in pairs
                        for seconds, cpu in zip(times, runs, strict=True)])


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def summary(results: Results) -> dict[str, Any]:
    upload = {kind: median(results.upload[kind]) for kind in KINDS}
    export = {kind: median(results.export[kind]) for kind in KINDS}
    gui_cpu = {what: _rounded([run.get("gui", 0.0) for run in runs["gui"]])
               for what, runs in (("upload", results.cpu_upload),
                                  ("export", results.cpu_export))}
    return {
        "rows": results.rows,
        "dump_bytes": results.dump_bytes,
        "fill_s": round(results.fill_s, 2),
        "dump_s": round(results.dump_s, 2),
        "upload_direct_s": round(upload["direct"], 3),
        "upload_gui_s": round(upload["gui"], 3),
        "upload_ratio": round(upload["gui"] / upload["direct"], 4),
        "export_direct_s": round(export["direct"], 3),
        "export_gui_s": round(export["gui"], 3),
        "export_ratio": round(export["gui"] / export["direct"], 4),
        "export_direct_bytes": results.export_bytes["direct"][0],
        "export_gui_bytes": results.export_bytes["gui"][0],
        "gui_cpu_s": {what: round(median(values), 3) for what, values in gui_cpu.items()},
        "gui_idle_rss_mb": {k: None if v is None else round(v, 1)
                            for k, v in results.gui_idle_mb.items()},
        "rss_peak_mb": {
            what: {kind: {name: round(value, 1) for name, value in peaks[kind].items()}
                   for kind in KINDS}
            for what, peaks in (("upload", results.rss_upload),
                                ("export", results.rss_export))},
        "cpu_s_mean": {f"{what}_{kind}": _mean_cpu(runs[kind])
                       for what, runs in (("upload", results.cpu_upload),
                                          ("export", results.cpu_export))
                       for kind in KINDS},
        "runs": {
            **{f"upload_{kind}_s": _rounded(results.upload[kind]) for kind in KINDS},
            **{f"upload_{kind}_reported_s": _rounded(results.upload_reported[kind])
               for kind in KINDS},
            **{f"export_{kind}_s": _rounded(results.export[kind]) for kind in KINDS},
            "gui_cpu_upload_s": gui_cpu["upload"],
            "gui_cpu_export_s": gui_cpu["export"],
        },
        "targets": {"upload_ratio": UPLOAD_TARGET, "export_ratio": EXPORT_TARGET,
                    "gui_rss_peak_mb": RSS_TARGET_MB},
        "quiet_wait_s": round(results.quiet_waited_s, 1),
        "quiet_gave_up": results.quiet_gave_up,
        "total_s": round(results.total_s, 1),
        "load_average_1m": [round(v, 2) for v in results.load],
        "cpus": os.cpu_count(),
        "other_cpu_share": round(_other_share(results), 3),
    }


def render(figures: dict[str, Any]) -> None:
    def cpu_of(values: dict[str, float], name: str) -> str:
        return f"{values[name]:.2f}" if name in values else ""

    def mb(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} MB"

    runs = figures["runs"]
    table = Table(title=f"conpaassql web front-end: dumps of {figures['rows']} rows, "
                        f"{mib(figures['dump_bytes'])} of SQL (one local node)")
    table.add_column("measure")
    table.add_column("direct", justify="right")
    table.add_column("front-end", justify="right")
    table.add_column("runs (direct | front-end)")
    table.add_column("front-end / direct", justify="right")
    table.add_column("target")
    for what, label, target in (("upload", "upload: load_dump | POST /data/upload",
                                 UPLOAD_TARGET),
                                ("export", "export: sqldump | GET /data/export",
                                 EXPORT_TARGET)):
        ratio = figures[f"{what}_ratio"]
        table.add_row(label, f"{figures[f'{what}_direct_s']:.2f} s",
                      f"{figures[f'{what}_gui_s']:.2f} s",
                      f"{runs_of(runs[f'{what}_direct_s'])} | "
                      f"{runs_of(runs[f'{what}_gui_s'])}",
                      f"{ratio:.3f}", f"≤ {target} {verdict(ratio <= target)}")
        if what == "upload":
            table.add_row("  load_dump as the manager timed it", "", "",
                          f"{runs_of(runs['upload_direct_reported_s'])} | "
                          f"{runs_of(runs['upload_gui_reported_s'])}", "", "")
    table.add_row("  export size", mib(figures["export_direct_bytes"]),
                  mib(figures["export_gui_bytes"]), "",
                  f"{figures['export_gui_bytes'] / figures['export_direct_bytes']:.4f}", "")
    table.add_row("front-end CPU s per run (median)", "",
                  f"{figures['gui_cpu_s']['upload']:.2f} up / "
                  f"{figures['gui_cpu_s']['export']:.2f} down",
                  f"{runs_of(runs['gui_cpu_upload_s'])} | {runs_of(runs['gui_cpu_export_s'])}",
                  "", "")
    idle = figures["gui_idle_rss_mb"]
    table.add_row("front-end RSS idle: at start / after the transfers", mb(idle.get("start")),
                  mb(idle.get("end")), "", "", "")
    peaks = figures["rss_peak_mb"]
    for what in ("upload", "export"):
        for name in WATCHED:
            direct, gui = peaks[what]["direct"].get(name), peaks[what]["gui"].get(name)
            goal = ""
            if name == "gui":
                goal = f"< {RSS_TARGET_MB:g} MB " \
                       f"{verdict(gui is not None and gui < RSS_TARGET_MB)}"
            table.add_row(f"peak RSS {name} during {what}",
                          "" if name == "gui" else mb(direct), mb(gui), "", "", goal)
    cpu = figures["cpu_s_mean"]
    for what in ("upload", "export"):
        direct, gui = cpu[f"{what}_direct"], cpu[f"{what}_gui"]
        for name in CPU_NAMES:
            if name in direct or name in gui:
                table.add_row(f"CPU s per {what} (mean): {name}", cpu_of(direct, name),
                              cpu_of(gui, name), "", "", "")
    table.add_row("source: fill, mariadb-dump", f"{figures['fill_s']:.1f} s",
                  f"{figures['dump_s']:.1f} s", "", "", "")
    table.add_row("waited for others' tests (s), waits that ran out",
                  f"{figures['quiet_wait_s']:.0f}", str(figures["quiet_gave_up"]), "", "", "")
    print_with_machine_rows(table, figures)


def main(argv: list[str] | None = None) -> int:
    parser = table_arguments(__doc__, rows=DEFAULT_ROWS, size="100 MB of dump",
                             repeat=3)
    args = parse_table_arguments(parser, argv)

    started = time.perf_counter()
    results = Results(load=[os.getloadavg()[0]])

    def run(root: Path) -> None:
        with SubnetClaim(args.subnet) as claim:
            measure(args, root, claim.subnet, results)

    if not run_measured("cqg-", run):
        return 1
    return report(results, started, summary, render)


if __name__ == "__main__":
    sys.exit(main())
