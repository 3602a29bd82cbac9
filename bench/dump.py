"""How fast do dumps go in and out through the service, against the native tools?

Run from the repository root::

    .venv/bin/python bench/dump.py            # a dump of about 200 MB
    .venv/bin/python bench/dump.py --rows 100000   # a quick run

One manager (local cloud) with one node; on it a sysbench-like table filled
from MariaDB's SEQUENCE engine, dumped with the real ``mariadb-dump``. Then,
over ``--repeat`` rounds whose order alternates:

1. load: ``mariadb DB < dump.sql`` on the node's socket (the baseline), the same
   over TCP and verified TLS to the node's address as an account of the service
   (what a user away from the node runs instead), against
   ``load_dump`` as conpaassql-client sends it (the service: straight to the node's
   agent with the manager's grant; ``--through-manager``: relayed by the manager),
   each into a fresh database,
   checked afterwards (row count and ``CHECKSUM TABLE`` equal to the source's);
   while the service loads, the resident memory of the manager and of the node's
   agent is sampled every 50 ms;
2. export: ``mariadb-dump --single-transaction DB > file`` on the node's socket,
   and over TLS as above, against ``sqldump`` as conpaassql-client takes it (made
   by this host's ``mariadb-dump`` with a dump account the manager grants;
   ``--through-manager``: relayed by the manager), into a file; the same streamed
   from the node's agent (what a host without ``mariadb-dump`` gets); and, to tell
   the cost of the service's dump options from that of the transfer, the native
   ``mariadb-dump`` with the options the service uses.

Before every timed run the server is settled (dirty pages flushed, undo purged,
the OS's write-back done), so that no run pays for the one before. Each run also
records the CPU time of mariadbd, of the client tools (``mariadb``,
``mariadb-dump``, whoever runs them), of the manager, the agent and this script,
and of every other process on the machine: other work on a small machine slows
the runs it overlaps, and the medians are only as good as the machine was quiet.

Prints a table of medians, runs and ratios service/baseline, then one JSON line.
The root password is read from the state directory into a client defaults file
(mode 0600), never put on a command line. Everything started here is stopped
and the temporary directory removed, also on failure or interruption; every
wait has a deadline.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from benchlib import (
    SOURCE_DB,
    BenchError,
    ManagerProcess,
    Native,
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
    table_arguments,
)
from conpaassql.mysql.dump import EXPORT_OPTIONS
from testbed.manager import SubnetClaim, wait_until, write_defaults

DEFAULT_ROWS = 1_000_000  # about 200 MB of dump (some 204 bytes a row)
LOAD_TARGET = 1.05  # service / baseline
EXPORT_TARGET = 1.05  # service / baseline
RSS_TARGET_MB = 100.0
TLS_USER = "bench_tls"  # peak resident memory of the manager and of the agent
CPU_NAMES = ("mariadbd", "client tool", "manager", "agent", "bench",
             "other processes")


# -- measuring --------------------------------------------------------------------


@dataclass
class Results:
    rows: int = 0
    fill_s: float = 0.0
    dump_s: float = 0.0
    dump_bytes: int = 0
    load_base: list[float] = field(default_factory=list)
    load_service: list[float] = field(default_factory=list)
    load_service_reported: list[float] = field(default_factory=list)  # the reply's seconds
    load_tls: list[float] = field(default_factory=list)  # native, over TCP and TLS
    export_tls: list[float] = field(default_factory=list)
    export_base: list[float] = field(default_factory=list)
    export_service: list[float] = field(default_factory=list)
    export_options: list[float] = field(default_factory=list)  # native, the service's options
    export_stream: list[float] = field(default_factory=list)  # from the agent, no tool here
    export_base_bytes: list[int] = field(default_factory=list)
    export_service_bytes: list[int] = field(default_factory=list)
    rss_load: dict[str, float] = field(default_factory=dict)  # peaks over every round
    rss_export: dict[str, float] = field(default_factory=dict)
    cpu_load_base: list[dict[str, float]] = field(default_factory=list)
    cpu_load_service: list[dict[str, float]] = field(default_factory=list)
    cpu_export_base: list[dict[str, float]] = field(default_factory=list)
    cpu_export_service: list[dict[str, float]] = field(default_factory=list)
    total_s: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


def _peaks(into: dict[str, float], watch: Watch) -> None:
    for name, value in watch.peak.items():
        into[name] = max(into.get(name, 0.0), value)


def archive_settled(manager: ManagerProcess, native: Native, timeout: float) -> None:
    """Wait until the binlog archive holds all the master logged: the archiver compresses
    and encrypts what a load wrote, and would otherwise take CPU from the next run."""
    def settled() -> bool:
        logged = native.sql("SELECT @@global.gtid_binlog_pos")[0][0]
        backup = manager.get("get_service_info").get("backup") or {}
        return not backup.get("archiving") or backup.get("archived_gtid") == logged
    wait_until(settled, timeout, 0.2, "the binlog archive to catch up")


def measure_loads(args: argparse.Namespace, manager: ManagerProcess, natives: Natives,
                  node_id: int, dump: Path, source: tuple[str, str], results: Results) -> None:
    native = natives.socket
    pids = {"manager": manager.pid, "agent": manager.agent_pid(node_id),
            "mariadbd": manager.mysqld_pid(node_id)}
    for round_index in range(args.repeat):
        for kind in order(("base", "service", "tls"), round_index):
            database = f"load_{kind}_{round_index + 1}"
            native.sql(f"CREATE DATABASE `{database}`")
            archive_settled(manager, native, float(args.timeout))
            native.settle()
            if kind == "tls":
                results.load_tls.append(natives.tls.load(dump, database))
            elif kind == "base":
                with Watch(pids) as watch:
                    seconds = native.load(dump, database)
                results.load_base.append(seconds)
                results.cpu_load_base.append(watch.cpu)
            else:
                with Watch(pids, rss=("manager", "agent")) as watch:
                    reply, seconds = manager.timed_upload("load_dump", "mysqldump_file", dump,
                                                          direct=not args.through_manager,
                                                          database=database)
                if reply.get("nodes") != [node_id] or reply.get("bytes") != results.dump_bytes:
                    raise BenchError(f"load_dump answered {reply!r:.300}")
                results.load_service.append(seconds)
                results.load_service_reported.append(float(reply.get("seconds") or 0.0))
                _peaks(results.rss_load, watch)
                results.cpu_load_service.append(watch.cpu)
            got = native.fingerprint(database)
            if got != source:
                raise BenchError(f"{kind} load into {database}: rows and checksum {got}, "
                                 f"the source has {source}")
            native.sql(f"DROP DATABASE `{database}`")
            err.print(f"load round {round_index + 1}/{args.repeat} {kind:>7}: "
                      f"{seconds:.2f}s (verified {got[0]} rows, checksum {got[1]})")


def measure_exports(args: argparse.Namespace, manager: ManagerProcess, natives: Natives,
                    node_id: int, root: Path, results: Results) -> None:
    native = natives.socket
    pids = {"manager": manager.pid, "agent": manager.agent_pid(node_id),
            "mariadbd": manager.mysqld_pid(node_id)}
    for round_index in range(args.repeat):
        kinds = ("base", "service", "options", "tls") if args.through_manager \
            else ("base", "service", "options", "tls", "stream")
        for kind in order(kinds, round_index):
            out = root / f"export-{kind}.sql"
            archive_settled(manager, native, float(args.timeout))
            native.settle()
            if kind == "tls":
                seconds = natives.tls.dump(SOURCE_DB, out)
                size = out.stat().st_size
                results.export_tls.append(seconds)
            elif kind == "stream":
                size, seconds = manager.timed_download("sqldump", out, database=SOURCE_DB,
                                                       direct=True)
                results.export_stream.append(seconds)
            elif kind == "options":
                seconds = native.dump(SOURCE_DB, out, EXPORT_OPTIONS)
                size = out.stat().st_size
                results.export_options.append(seconds)
            elif kind == "base":
                with Watch(pids) as watch:
                    seconds = native.dump(SOURCE_DB, out)
                size = out.stat().st_size
                results.export_base.append(seconds)
                results.export_base_bytes.append(size)
                results.cpu_export_base.append(watch.cpu)
            else:
                with Watch(pids, rss=("manager", "agent")) as watch:
                    size, seconds = manager.timed_download(
                        "sqldump", out, database=SOURCE_DB, direct=not args.through_manager,
                        native=not args.through_manager)
                if size != out.stat().st_size:
                    raise BenchError(f"sqldump: {size} bytes received, "
                                     f"{out.stat().st_size} written")
                results.export_service.append(seconds)
                results.export_service_bytes.append(size)
                _peaks(results.rss_export, watch)
                results.cpu_export_service.append(watch.cpu)
            with open(out, "rb") as handle:
                handle.seek(max(0, size - 200))
                if b"-- Dump completed" not in handle.read():
                    raise BenchError(f"the {kind} export does not end as a complete dump")
            err.print(f"export round {round_index + 1}/{args.repeat} {kind:>7}: "
                      f"{seconds:.2f}s, {mib(size)}")
            out.unlink()


@dataclass(frozen=True)
class Natives:
    socket: Native  # root on the node's unix socket
    tls: Native  # an account of the service over TCP and verified TLS


def tls_native(manager: ManagerProcess, node_id: int, root: Path, timeout: float) -> Native:
    """The native tools as a user away from the node runs them: an account the service
    made (``configure_user``), TCP to the node's address, TLS verified with the
    service's CA (the password in a 0600 option file, never on a command line)."""
    password = secrets.token_urlsafe(18)
    manager.post("configure_user", username=TLS_USER, password=password)
    address = manager.node(node_id)["ip"]
    defaults = write_defaults(root / "tls-client.cnf", password, TLS_USER)
    with open(defaults, "a", encoding="utf-8") as extra:
        extra.write(f"host={address}\nport=3306\nssl-ca={manager.ca_file}\n"
                    "ssl-verify-server-cert\n")
    return Native(None, defaults, timeout)


def measure(args: argparse.Namespace, root: Path, subnet: int, results: Results) -> None:
    timeout = float(args.timeout)
    manager = ManagerProcess(root, subnet, args.buffer_pool)
    try:
        err.print(f"starting the manager on :{manager.port} (nodes on 127.0.{subnet}.10-60)...")
        manager.start(timeout)
        node_id = manager.add_node(timeout)
        err.print(f"node {node_id} RUNNING")
        defaults = root / "client.cnf"
        write_defaults(defaults, manager.root_password)
        native = Native(manager.socket_of(node_id), defaults, timeout)
        natives = Natives(native, tls_native(manager, node_id, root, timeout))

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

        measure_loads(args, manager, natives, node_id, dump, source, results)
        measure_exports(args, manager, natives, node_id, root, results)

        err.print("shutting the service down...")
        manager.shutdown(timeout)
        manager.stop()
    finally:
        quiet_signals()
        manager.close()


# -- reporting ----------------------------------------------------------------------


def _mean_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for run in runs for name in run})
    return {name: round(statistics.fmean([run[name] for run in runs if name in run]), 2)
            for name in names}


def _other_share(results: Results) -> float:
    """The share of the machine's CPU time that other processes took during the timed runs."""
    pairs = [(results.load_base, results.cpu_load_base),
             (results.load_service, results.cpu_load_service),
             (results.export_base, results.cpu_export_base),
             (results.export_service, results.cpu_export_service)]
    return other_share([(seconds, cpu.get("other processes", 0.0))
                        for times, runs in pairs for seconds, cpu in zip(times, runs,
                                                                         strict=True)])


def summary(results: Results) -> dict[str, Any]:
    load_base, load_service = median(results.load_base), median(results.load_service)
    export_base, export_service = median(results.export_base), median(results.export_service)
    return {
        "rows": results.rows,
        "dump_bytes": results.dump_bytes,
        "fill_s": round(results.fill_s, 2),
        "dump_s": round(results.dump_s, 2),
        "load_base_s": round(load_base, 3),
        "load_service_s": round(load_service, 3),
        "load_ratio": round(load_service / load_base, 4),
        "export_base_s": round(export_base, 3),
        "export_service_s": round(export_service, 3),
        "export_ratio": round(export_service / export_base, 4),
        "load_tls_s": round(median(results.load_tls), 3),
        "load_tls_ratio": round(load_service / median(results.load_tls), 4),
        "export_tls_s": round(median(results.export_tls), 3),
        "export_tls_ratio": round(export_service / median(results.export_tls), 4),
        "export_options_s": round(median(results.export_options), 3),
        "export_options_ratio": round(median(results.export_options) / export_base, 4),
        "export_stream_s": round(median(results.export_stream), 3)
        if results.export_stream else None,
        "export_stream_ratio": round(median(results.export_stream) / export_base, 4)
        if results.export_stream else None,
        "export_base_bytes": results.export_base_bytes[0],
        "export_service_bytes": results.export_service_bytes[0],
        "rss_peak_mb": {"load": {k: round(v, 1) for k, v in results.rss_load.items()},
                        "export": {k: round(v, 1) for k, v in results.rss_export.items()}},
        "cpu_s_mean": {"load_base": _mean_cpu(results.cpu_load_base),
                       "load_service": _mean_cpu(results.cpu_load_service),
                       "export_base": _mean_cpu(results.cpu_export_base),
                       "export_service": _mean_cpu(results.cpu_export_service)},
        "runs": {
            "load_base_s": [round(v, 3) for v in results.load_base],
            "load_service_s": [round(v, 3) for v in results.load_service],
            "load_service_reported_s": [round(v, 3) for v in results.load_service_reported],
            "export_base_s": [round(v, 3) for v in results.export_base],
            "export_service_s": [round(v, 3) for v in results.export_service],
            "export_options_s": [round(v, 3) for v in results.export_options],
            "export_stream_s": [round(v, 3) for v in results.export_stream],
            "load_tls_s": [round(v, 3) for v in results.load_tls],
            "export_tls_s": [round(v, 3) for v in results.export_tls],
        },
        "targets": {"load_ratio": LOAD_TARGET, "export_ratio": EXPORT_TARGET,
                    "rss_peak_mb": RSS_TARGET_MB},
        "total_s": round(results.total_s, 1),
        "load_average_1m": [round(v, 2) for v in results.load],
        "cpus": os.cpu_count(),
        "other_cpu_share": round(_other_share(results), 3),
    }


def render(figures: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "[green]met[/green]" if ok else "[red]missed[/red]"

    def runs_of(values: list[float]) -> str:
        return " ".join(f"{v:.2f}" for v in values)

    def cpu_of(values: dict[str, float], name: str) -> str:
        return f"{values[name]:.2f}" if name in values else ""

    runs = figures["runs"]
    table = Table(title=f"conpaassql dumps: {figures['rows']} rows, "
                        f"{mib(figures['dump_bytes'])} of SQL (one local node; the service "
                        f"{figures['path']})")
    table.add_column("measure")
    table.add_column("baseline", justify="right")
    table.add_column("service", justify="right")
    table.add_column("runs (baseline | service)")
    table.add_column("service / baseline", justify="right")
    table.add_column("target")
    load_ratio, export_ratio = figures["load_ratio"], figures["export_ratio"]
    table.add_row("load: mariadb < dump | load_dump", f"{figures['load_base_s']:.2f} s",
                  f"{figures['load_service_s']:.2f} s",
                  f"{runs_of(runs['load_base_s'])} | {runs_of(runs['load_service_s'])}",
                  f"{load_ratio:.3f}", f"≤ {LOAD_TARGET} {verdict(load_ratio <= LOAD_TARGET)}")
    table.add_row("  load_dump as the manager timed it", "", "",
                  runs_of(runs["load_service_reported_s"]), "", "")
    table.add_row("  against mariadb < dump over TLS to the node", f"{figures['load_tls_s']:.2f} s",
                  f"{figures['load_service_s']:.2f} s", runs_of(runs["load_tls_s"]),
                  f"{figures['load_tls_ratio']:.3f}", "")
    table.add_row("export: mariadb-dump | sqldump", f"{figures['export_base_s']:.2f} s",
                  f"{figures['export_service_s']:.2f} s",
                  f"{runs_of(runs['export_base_s'])} | {runs_of(runs['export_service_s'])}",
                  f"{export_ratio:.3f}",
                  f"≤ {EXPORT_TARGET} {verdict(export_ratio <= EXPORT_TARGET)}")
    table.add_row("  against mariadb-dump over TLS to the node",
                  f"{figures['export_tls_s']:.2f} s", f"{figures['export_service_s']:.2f} s",
                  runs_of(runs["export_tls_s"]), f"{figures['export_tls_ratio']:.3f}", "")
    if figures["export_stream_s"] is not None:
        table.add_row("  sqldump streamed from the node's agent (no mariadb-dump here)",
                      f"{figures['export_base_s']:.2f} s", f"{figures['export_stream_s']:.2f} s",
                      runs_of(runs["export_stream_s"]), f"{figures['export_stream_ratio']:.3f}",
                      "")
    table.add_row("  mariadb-dump with the service's options",
                  f"{figures['export_options_s']:.2f} s", "",
                  runs_of(runs["export_options_s"]), f"{figures['export_options_ratio']:.3f}",
                  "")
    table.add_row("  export size", mib(figures["export_base_bytes"]),
                  mib(figures["export_service_bytes"]), "",
                  f"{figures['export_service_bytes'] / figures['export_base_bytes']:.4f}", "")
    peaks = figures["rss_peak_mb"]
    for name in ("manager", "agent"):
        value = peaks["load"].get(name)
        table.add_row(f"peak RSS {name} during load_dump", "",
                      "n/a" if value is None else f"{value:.1f} MB", "", "",
                      f"< {RSS_TARGET_MB:g} MB "
                      f"{verdict(value is not None and value < RSS_TARGET_MB)}")
    for name in ("manager", "agent"):
        value = peaks["export"].get(name)
        table.add_row(f"peak RSS {name} during sqldump", "",
                      "n/a" if value is None else f"{value:.1f} MB", "", "", "")
    cpu = figures["cpu_s_mean"]
    for what in ("load", "export"):
        base, service = cpu[f"{what}_base"], cpu[f"{what}_service"]
        for name in CPU_NAMES:
            if name in base or name in service:
                table.add_row(f"CPU s per {what} (mean): {name}", cpu_of(base, name),
                              cpu_of(service, name), "", "", "")
    table.add_row("source: fill, mariadb-dump", f"{figures['fill_s']:.1f} s",
                  f"{figures['dump_s']:.1f} s", "", "", "")
    print_with_machine_rows(table, figures)


def main(argv: list[str] | None = None) -> int:
    parser = table_arguments(__doc__, rows=DEFAULT_ROWS, size="200 MB of dump",
                             repeat=2)
    parser.add_argument("--through-manager", action="store_true",
                        help="send and take the dumps through the manager (its relay), "
                             "not straight to and from the node")
    args = parse_table_arguments(parser, argv)

    started = time.perf_counter()
    results = Results(load=[os.getloadavg()[0]])

    def run(root: Path) -> None:
        with SubnetClaim(args.subnet) as claim:
            measure(args, root, claim.subnet, results)

    if not run_measured("cqd-", run):
        return 1
    return report(results, started, summary, render,
                  path="through the manager" if args.through_manager
                  else "straight to the node; sqldump by mariadb-dump here")


if __name__ == "__main__":
    sys.exit(main())
