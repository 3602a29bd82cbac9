"""The recovery point of binlog archiving: how long after its commit a transaction is
in the backup store, under a steady write load.

Run from the repository root::

    .venv/bin/python bench/archive.py                      # 60 s, 5 s interval
    .venv/bin/python bench/archive.py --seconds 30 --interval 1 --rate 200

One real mariadbd (from a template datadir), the file store, and the archiver the
master's agent runs (``backup.archive.Archiver``) at ``--interval``. A writer
commits single-row transactions at ``--rate`` per second, noting for each one
the wall time its COMMIT returned and its GTID (``@@last_gtid``); after the run,
each transaction's arrival is the time the segment holding it was stored.
Figures: the median and the worst seconds from commit to store (target: the
worst within the interval, 5 s by default), the segments and their mean size.
Prints a table, then one JSON line. Everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchlib import median, run_measured, verdict
from conpaassql.backup import FileStore, load_or_create_key
from conpaassql.backup.segments import Segment, archived
from conpaassql.domain.gtid import GtidPosition
from conpaassql.mysql import (
    ConnectInfo,
    MariaDBProcess,
    ServerPaths,
    ServerSettings,
    execute,
    initialise_datadir,
    prepare_template,
    render_my_cnf,
)
from conpaassql.mysql.binlog_archive import Archiver
from conpaassql.mysql.connection import Session
from testbed.manager import SubnetClaim

PASSWORD = "bench-archive-pw"


async def writes(info: ConnectInfo, seconds: float, rate: float) -> list[tuple[float, int]]:
    """(commit time, sequence number) of each transaction written."""
    session = Session(info)
    done: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            await session.execute("INSERT INTO bench.t (at) VALUES (UNIX_TIMESTAMP(NOW(6)))")
            committed = time.time()
            rows = await session.execute("SELECT @@last_gtid AS g")
            done.append((committed, GtidPosition.parse(rows[0]["g"]).sequence(0)))
            await asyncio.sleep(max(0.0, (len(done) / rate) - elapsed))
    finally:
        session.close()
    return done


def delays(commits: list[tuple[float, int]], segments: list[Segment]) -> list[float]:
    found = []
    for committed, sequence in commits:
        holder = next((s for s in segments
                       if s.first.sequence(0) <= sequence <= s.last.sequence(0)), None)
        if holder is not None:
            found.append(max(0.0, holder.created - committed))
    return found


async def measure(root: Path, subnet: int, args: argparse.Namespace) -> dict[str, Any]:
    template = await prepare_template(root / "template")
    paths = ServerPaths(root / "node")
    paths.ensure_dirs()
    paths.cnf.write_text(render_my_cnf(paths, ServerSettings(
        bind_address=f"127.0.{subnet}.10", options={"innodb_buffer_pool_size": "64M"})))
    info = ConnectInfo(socket=paths.socket, user="root", password=PASSWORD)
    await initialise_datadir(paths, PASSWORD, template)
    server = MariaDBProcess(paths, info)
    process = await server.start(use_init_file=True)
    try:
        await server.wait_ready(process, timeout=60)
        await execute(info, "SET GLOBAL read_only = OFF")
        await execute(info, "CREATE DATABASE bench")
        await execute(info, "CREATE TABLE bench.t (id INT AUTO_INCREMENT PRIMARY KEY, "
                      "at DOUBLE NOT NULL)")
        store = FileStore(root / "store", load_or_create_key(root / "secrets" / "key"))
        since = GtidPosition.parse((await execute(info, "SELECT @@gtid_binlog_pos AS p"))
                                   [0]["p"])
        archiver = Archiver(store, info, paths.datadir, since, args.interval)
        task = asyncio.create_task(archiver.run())
        commits = await writes(info, args.seconds, args.rate)
        await asyncio.sleep(args.interval * 2 + 1)
        task.cancel()
        segments = await archived(store)
        found = sorted(delays(commits, segments))
        sizes = [item.size for item in await store.list("binlogs/")]
        return {"interval": args.interval, "seconds": args.seconds, "rate": args.rate,
                "transactions": len(commits), "archived": len(found),
                "median_s": round(median(found), 3) if found else None,
                "worst_s": round(found[-1], 3) if found else None,
                "segments": len(segments),
                "segment_bytes": int(sum(sizes) / len(sizes)) if sizes else 0,
                "error": archiver.state.error}
    finally:
        await server.stop(process, timeout=30)


def render(figures: dict[str, Any]) -> None:
    table = Table(title=f"commit to store, archive interval {figures['interval']} s")
    for column in ("transactions", "archived", "median s", "worst s", "segments",
                   "mean segment bytes", "worst ≤ interval"):
        table.add_column(column, justify="right")
    worst = figures["worst_s"]
    table.add_row(str(figures["transactions"]), str(figures["archived"]),
                  str(figures["median_s"]), str(worst), str(figures["segments"]),
                  str(figures["segment_bytes"]),
                  verdict(worst is not None and worst <= figures["interval"]))
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the writer writes (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="transactions per second (default %(default)s)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="archive_interval, seconds (default %(default)s)")
    args = parser.parse_args(argv)
    holder: list[dict[str, Any]] = []

    def run(root: Path) -> None:
        with SubnetClaim() as claim:
            holder.append(asyncio.run(measure(root, claim.subnet, args)))

    if not run_measured("cqar-", run) or not holder:
        return 1
    render(holder[0])
    print(json.dumps(holder[0], sort_keys=True), flush=True)
    return 0 if holder[0]["archived"] == holder[0]["transactions"] else 1


if __name__ == "__main__":
    sys.exit(main())
