"""Backups and point-in-time recovery against the bare tools, on a sysbench data set.

Run from the repository root::

    .venv/bin/python bench/backup.py                          # 2 tables of 1M rows, ~500 MB
    .venv/bin/python bench/backup.py --tables 1 --table-size 200000 --write-time 10

A real manager with the local cloud, a master and a slave, and the file store; sysbench
``oltp_write_only``'s tables prepared through the master. Each figure is compared
with a baseline run in the same process on the same data:

- full backup: the service's ``backup`` (it runs from the slave; timed from the call to
  ``done`` in ``list_backups``) against ``mariabackup --backup --stream=xbstream |
  zstd -3 > file`` on the slave's datadir (the page cache warmed first), medians of
  ``--repeat`` rounds of alternating order; the same backup into S3 (moto's server,
  the agent's code ``take_backup`` run here) is shown;
- restore of that backup: the service's ``restore_chain`` (fetch, decrypt, zstd -d,
  mbstream -x, ``--prepare``) into a scratch server's directory, then the server
  started, against ``zstd -d | mbstream -x``, ``mariabackup --prepare`` and mariadbd
  started; the phases of both, and ``restore_node`` by backup id timed to the new
  node restored (its node boot included);
- binlog replay: the writes of the throughput runs, after the backup, applied to each
  restored copy: the service's ``replay`` from the store against ``mariadb-binlog
  FILES | mariadb`` on the same transactions (cut from the same archived segments);
- the master's write throughput (sysbench ``oltp_write_only``, ``--write-time``
  seconds) while a full backup runs from the slave against without;
- the recovery point of archiving (``bench/archive.py``'s measure, run here).

Prints a table, then one JSON line. The application's password goes to sysbench in a
configuration file (mode 0600). Everything started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import archive
from backup_store import S3Server
from benchlib import (
    BenchError,
    ManagerProcess,
    Native,
    err,
    median,
    run_measured,
    verdict,
)
from conpaassql.backup import BackupKey, FileStore
from conpaassql.backup.segments import archived, position_of
from conpaassql.domain.gtid import GtidPosition
from conpaassql.files import write_private
from conpaassql.layout import SERVER_DIR
from conpaassql.manager.authority import Authority
from conpaassql.mysql import ConnectInfo, MariaDBProcess, ServerPaths, ServerSettings, render_my_cnf
from conpaassql.mysql.backup import adopt_gtid_position, backup_cnf
from conpaassql.mysql.binlog_replay import Replayed, Target, _cut, _decode, plan, replay
from conpaassql.mysql.config import render_client_cnf
from conpaassql.mysql.connection import Session
from conpaassql.mysql.store_backup import restore_chain, take_backup
from testbed.manager import SubnetClaim, wait_until

DB, USER = "sbtest", "bench"
TARGETS = {"backup": 1.1, "restore": 1.2, "replay": 1.1}
_TPS = re.compile(r"transactions:\s+\d+\s+\(([\d.]+) per sec")


def shell(command: str, timeout: float) -> float:
    """Seconds ``bash -c command`` took; ``BenchError`` if it failed."""
    started = time.perf_counter()
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"{command[:80]}... exited {done.returncode}: {done.stderr[-600:]}")
    return time.perf_counter() - started


class Scratch:
    """A mariadbd of this benchmark's own on a restored copy (127.0.SUBNET.61+n)."""

    def __init__(self, base: Path, subnet: int, number: int, password: str,
                 buffer_pool: str) -> None:
        self.paths = ServerPaths(base)
        self.paths.ensure_dirs()
        write_private(self.paths.cnf, render_my_cnf(self.paths, ServerSettings(
            bind_address=f"127.0.{subnet}.{61 + number}", server_id=900 + number,
            options={"innodb_buffer_pool_size": buffer_pool})))
        write_private(self.paths.client_cnf, render_client_cnf(self.paths, "root", password))
        self.info = ConnectInfo(socket=self.paths.socket, user="root", password=password)
        self.server = MariaDBProcess(self.paths, self.info)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        started = time.perf_counter()
        self.process = await self.server.start()
        await self.server.wait_ready(self.process, timeout=600)
        return time.perf_counter() - started

    async def stop(self) -> None:
        if self.process is not None:
            await self.server.stop(self.process, timeout=120)
            self.process = None


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, subnet: int) -> None:
        self.args = args
        self.root = root
        self.subnet = subnet
        self.manager = ManagerProcess(root, subnet, args.buffer_pool,
                                      "[backup]\narchive_interval = 1\n")
        self.password = secrets.token_urlsafe(18)
        self.sysbench_dir = root / "sysbench"
        self.fig: dict[str, Any] = {"tables": args.tables, "table_size": args.table_size}
        self.master = self.slave = 0

    # -- the service ------------------------------------------------------------

    def setup(self) -> None:
        self.manager.start()
        self.manager.post("add_nodes", count=2)
        self.master, self.slave = self.topology()
        self.manager.post("create_database", database=DB)
        self.manager.post("configure_user", username=USER, password=self.password,
                          database=DB)
        self.sysbench_dir.mkdir(mode=0o700)
        pki = self.manager.state_dir / "pki"
        issued = Authority.load_or_create(pki, self.manager.service_id).issue("sysbench")
        (self.sysbench_dir / "cacert.pem").write_bytes((pki / "ca.crt").read_bytes())
        write_private(self.sysbench_dir / "client-cert.pem", issued.cert_pem)
        write_private(self.sysbench_dir / "client-key.pem", issued.key_pem)
        err.print(f"sysbench prepare: {self.args.tables} x {self.args.table_size} rows...")
        started = time.perf_counter()
        self.sysbench("prepare", 0)
        self.sync()
        self.fig["prepare_s"] = round(time.perf_counter() - started, 1)
        datadir = self.datadir(self.slave)
        self.fig["data_bytes"] = sum(p.stat().st_size for p in (datadir / DB).glob("*.ibd"))
        self.fig["datadir_bytes"] = sum(p.stat().st_size for p in datadir.rglob("*")
                                        if p.is_file())

    def topology(self) -> tuple[int, int]:
        def check() -> tuple[int, int] | None:
            listed = self.manager.get("list_nodes")
            running = [n for n in listed["nodes"] if n["state"] == "RUNNING"]
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != 1 or len(running) != 2:
                return None
            return int(listed["masters"][0]), int(listed["slaves"][0])

        found = wait_until(check, self.args.timeout, 0.3, "a master and a slave")
        for node in found:
            self.manager.note_pids(node)
        return found

    def sync(self) -> None:
        wanted = self.gtid(self.master)
        wait_until(lambda: self.gtid(self.slave, "gtid_slave_pos") == wanted,
                   self.args.timeout, 0.5, "the slave caught up")

    def gtid(self, node: int, variable: str = "gtid_binlog_pos") -> str:
        done = subprocess.run(
            ["mariadb", f"--defaults-file={self.root_cnf()}", "-S",
             str(self.manager.socket_of(node)), "-N", "-B", "-e",
             f"SELECT @@global.{variable}"], capture_output=True, text=True, timeout=60,
            check=False)
        if done.returncode != 0:
            raise BenchError(f"gtid of node {node}: {done.stderr[-300:]}")
        return done.stdout.strip()

    def root_cnf(self) -> Path:
        path = self.root / "root.cnf"
        if not path.exists():
            write_private(path, render_client_cnf(ServerPaths(self.root / "x"), "root",
                                                  self.manager.root_password))
        return path

    def paths(self, node: int) -> ServerPaths:
        return ServerPaths(self.manager.node_dir(node) / SERVER_DIR)

    def datadir(self, node: int) -> Path:
        return self.paths(node).datadir

    def sysbench(self, command: str, seconds: int) -> str:
        ip = self.manager.node(self.master)["ip"]
        config = self.sysbench_dir / "master.cfg"
        write_private(config, "".join(f"{key}={value}\n" for key, value in (
            ("db-driver", "mysql"), ("mysql-host", ip), ("mysql-port", 3306),
            ("mysql-user", USER), ("mysql-password", self.password), ("mysql-db", DB),
            ("mysql-ssl", "on"), ("db-ps-mode", "disable"))))
        # The test's own options on the command line: sysbench 1.0 takes only its
        # general options from a configuration file.
        done = subprocess.run(["sysbench", f"--config-file={config.name}", "--threads=2",
                               f"--time={seconds}", "oltp_write_only",
                               f"--tables={self.args.tables}",
                               f"--table-size={self.args.table_size}", command],
                              cwd=self.sysbench_dir, capture_output=True,
                              text=True, timeout=seconds + self.args.timeout, check=False)
        if done.returncode != 0:
            raise BenchError(f"sysbench {command}: {(done.stdout + done.stderr)[-600:]}")
        return done.stdout

    def service_backup(self) -> tuple[dict[str, Any], float]:
        """A full backup through the service: its entry and the seconds to ``done``."""
        started = time.perf_counter()
        backup_id = self.manager.post("backup", kind="full")["id"]

        def done() -> dict[str, Any] | None:
            entry = {b["id"]: b for b in self.manager.get("list_backups")["backups"]}[backup_id]
            if entry["state"] == "failed":
                raise BenchError(f"backup {backup_id} failed")
            return entry if entry["state"] == "done" else None

        entry = wait_until(done, self.args.timeout, 0.1, "the backup done")
        return entry, time.perf_counter() - started

    def key(self) -> BackupKey:
        return BackupKey.from_text(self.manager.secret("backup_key"))

    def file_store(self) -> FileStore:
        return FileStore(self.manager.state_dir / "backups", self.key())

    # -- 1. backup -----------------------------------------------------------------

    def backups(self) -> dict[str, Any]:
        slave = self.paths(self.slave)
        shell(f"cat {slave.datadir}/*/* {slave.datadir}/ib* > /dev/null 2>&1 || true", 600)
        bare_file = self.root / "bare.xbstream.zst"
        # mariabackup's own defaults file on the node (0600, written by the service's
        # backup): no password on a command line.
        self.service_backup()  # writes it; also warms what the first backup warms
        runs: dict[str, list[float]] = {"bare": [], "service": [], "agent": []}
        entry: dict[str, Any] = {}
        for turn in range(self.args.repeat):
            for way in ("bare", "service") if turn % 2 == 0 else ("service", "bare"):
                if way == "bare":
                    runs["bare"].append(self.bare_backup(bare_file))
                    continue
                entry, seconds = self.service_backup()
                runs["service"].append(seconds)
                runs["agent"].append(entry["finished"] - entry["started"])
        self.fig["backup"] = {f"{way}_s": round(median(values), 2)
                              for way, values in runs.items()}
        self.fig["backup"].update(runs={way: [round(v, 2) for v in values]
                                        for way, values in runs.items()},
                                  bare_bytes=bare_file.stat().st_size,
                                  stored_bytes=entry["bytes"])
        self.fig["backup"]["s3_s"] = round(asyncio.run(self.s3_backup()), 2)
        return entry

    def bare_backup(self, out: Path) -> float:
        target = self.root / "bare-target"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        return shell(f"mariabackup --defaults-file={backup_cnf(self.paths(self.slave))} "
                     f"--backup --stream=xbstream --target-dir={target} "
                     f"2>{self.root}/bare.err | zstd -3 -q -c > {out}", self.args.timeout)

    async def s3_backup(self) -> float:
        server = S3Server()
        try:
            store = server.store(self.key())
            taken = await take_backup(self.paths(self.slave), self.manager.root_password,
                                      store, "backups/s3.xbstream")
            await store.close()
            return taken.seconds
        finally:
            server.close()

    # -- 2. restore ------------------------------------------------------------------

    async def restored(self, entry: dict[str, Any]) -> None:
        """The backup restored both ways, then the later writes replayed on each."""
        password = self.manager.root_password
        bare = Scratch(self.root / "scratch-bare", self.subnet, 0, password,
                       self.args.buffer_pool)
        mine = Scratch(self.root / "scratch-service", self.subnet, 1, password,
                       self.args.buffer_pool)
        try:
            await self.restores(entry, bare, mine)
            await self.replays(bare, mine, entry["gtid"])
        finally:
            await bare.stop()
            await mine.stop()

    async def restores(self, entry: dict[str, Any], bare: Scratch, mine: Scratch) -> None:
        copy = bare.paths.datadir
        copy.mkdir(exist_ok=True)
        started = time.perf_counter()
        await asyncio.to_thread(shell, f"zstd -d -q -c < {self.root}/bare.xbstream.zst | "
                                f"mbstream -x -C {copy}", self.args.timeout)
        extracted = time.perf_counter()
        await asyncio.to_thread(shell, f"mariabackup --prepare --target-dir={copy} "
                                f"> {self.root}/prepare.out 2>&1", self.args.timeout)
        prepared = time.perf_counter()
        bare_start = await bare.start()
        result = await restore_chain(mine.paths, self.file_store(),
                                     [f"backups/{entry['id']}.xbstream"])
        service_start = await mine.start()
        self.fig["restore"] = {
            "bare": {"receive_s": round(extracted - started, 2),
                     "prepare_s": round(prepared - extracted, 2),
                     "start_s": round(bare_start, 2)},
            "service": {"receive_s": round(result.receive_seconds, 2),
                        "prepare_s": round(result.prepare_seconds, 2),
                        "start_s": round(service_start + result.swap_seconds, 2)},
            "gtid": result.gtid_position}
        for side in ("bare", "service"):
            self.fig["restore"][side]["total_s"] = round(
                sum(self.fig["restore"][side].values()), 2)

    def restore_node(self, backup_id: str) -> float:
        started = time.perf_counter()
        node = int(self.manager.post("restore_node", backup=backup_id)["serviceNode"]["id"])

        def done() -> bool:
            state = self.manager.node(node).get("restore", {}).get("state")
            if state == "failed":
                raise BenchError(f"restore_node failed: {self.manager.node(node)['restore']}")
            return state == "done"

        wait_until(done, self.args.timeout, 0.1, "restore_node done")
        seconds = time.perf_counter() - started
        self.manager.note_pids(node)
        self.manager.post("remove_nodes", serviceNodeId=node)
        return seconds

    # -- 3. throughput while a backup runs --------------------------------------------

    def throughput(self) -> None:
        seconds = self.args.write_time
        alone = float(_TPS.findall(self.sysbench("run", seconds))[0])
        self.sync()
        holder: dict[str, Any] = {}

        def backup() -> None:
            time.sleep(1)
            holder["entry"], holder["s"] = self.service_backup()

        thread = threading.Thread(target=backup)
        thread.start()
        during = float(_TPS.findall(self.sysbench("run", seconds))[0])
        thread.join()
        self.fig["throughput"] = {"alone_tps": alone, "during_backup_tps": during,
                                  "backup_s": round(holder.get("s", 0.0), 2)}

    # -- 4. replay ---------------------------------------------------------------------

    async def replays(self, bare: Scratch, mine: Scratch, start: str) -> None:
        store = self.file_store()
        end = GtidPosition.parse(self.gtid(self.master))
        await asyncio.to_thread(wait_until, lambda: asyncio.run(self._archived_to(end)),
                                self.args.timeout, 0.5, "the archive holding the writes")
        begin = GtidPosition.parse(start)
        files = await self.cut(store, begin, end)
        for scratch in (bare, mine):
            session = Session(scratch.info)
            await session.execute("RESET MASTER")
            await adopt_gtid_position(session, start)
            session.close()
            # Both from a quiet server: the restore's own flushing and purge done.
            await asyncio.to_thread(Native(scratch.paths.socket, scratch.paths.client_cnf,
                                           self.args.timeout).settle)
        started = time.perf_counter()
        await asyncio.to_thread(
            shell, f"mariadb-binlog {' '.join(str(f) for f in files)} | mariadb "
            f"--defaults-extra-file={bare.paths.client_cnf} --binary-mode", self.args.timeout)
        bare_s = time.perf_counter() - started
        started = time.perf_counter()
        done = await replay(store, mine.paths, begin, Target(gtid=end))
        service_s = time.perf_counter() - started
        self.fig["replay"] = {"transactions": done.transactions, "bare_s": round(bare_s, 2),
                              "service_s": round(service_s, 2), "segments": len(files),
                              "decode_bare_s": round(await self.decode_bare(files), 2),
                              "decode_service_s": round(await self.decode(store, begin, end),
                                                        2)}
        for scratch in (bare, mine):
            found = (await Session(scratch.info).execute(
                "SELECT @@global.gtid_binlog_pos AS p"))[0]["p"]
            if GtidPosition.parse(found).sequence(0) != end.sequence(0):
                raise BenchError(f"a replay ended at {found}, not {end}")

    async def decode_bare(self, files: list[Path]) -> float:
        """Seconds of ``mariadb-binlog FILES > /dev/null``: the bare replay's decoding."""
        return await asyncio.to_thread(
            shell, f"mariadb-binlog {' '.join(str(f) for f in files)} > /dev/null",
            self.args.timeout)

    async def decode(self, store: FileStore, begin: GtidPosition, end: GtidPosition) -> float:
        """Seconds of the service's replay without the server: each segment fetched,
        decrypted, cut and decoded by ``mariadb-binlog``."""
        started = time.perf_counter()
        done = Replayed(begin)
        for segment in plan(await archived(store), begin):
            chunk, finished = _cut(await store.get_bytes(segment.key), done, Target(gtid=end))
            if chunk is not None:
                await _decode(chunk)
            if finished:
                break
        return time.perf_counter() - started

    async def _archived_to(self, end: GtidPosition) -> bool:
        return position_of(await archived(self.file_store())).contains(end)

    async def cut(self, store: FileStore, begin: GtidPosition, end: GtidPosition) -> list[Path]:
        """The archived transactions after ``begin`` up to ``end`` as standalone binlogs,
        cut as the service's replay cuts them."""
        done = Replayed(begin)
        files: list[Path] = []
        for segment in plan(await archived(store), begin):
            chunk, finished = _cut(await store.get_bytes(segment.key), done, Target(gtid=end))
            if chunk is not None:
                path = self.root / f"cut-{len(files):05d}.bin"
                path.write_bytes(chunk)
                files.append(path)
            if finished:
                break
        return files

    # -- all --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        begun = time.perf_counter()
        self.setup()
        entry = self.backups()
        if self.gtid(self.slave) != entry["gtid"]:
            err.print(f"[yellow]the slave moved after the backup: {entry['gtid']}[/yellow]")
        self.throughput()
        asyncio.run(self.restored(entry))
        self.fig["restore_node_s"] = round(self.restore_node(entry["id"]), 2)
        self.manager.close()
        with SubnetClaim() as claim:
            rpo = argparse.Namespace(seconds=self.args.rpo_time, rate=100.0, interval=5.0)
            self.fig["rpo"] = asyncio.run(archive.measure(self.root / "rpo", claim.subnet, rpo))
        self.fig["total_s"] = round(time.perf_counter() - begun, 1)
        return self.fig


def ratio_row(table: Table, what: str, bare: float, service: float,
              target: float | None) -> None:
    ratio = service / bare if bare else float("inf")
    shown = f"≤ {target:g} {verdict(ratio <= target)}" if target else "report"
    table.add_row(what, f"{bare:.2f}", f"{service:.2f}", f"{ratio:.2f}", shown)


def render(fig: dict[str, Any]) -> None:
    table = Table(title=f"backups and point in time: sysbench {fig['tables']} x "
                        f"{fig['table_size']} rows: tables {fig['data_bytes'] / 1e6:.0f} MB, "
                        f"slave's datadir {fig['datadir_bytes'] / 1e6:.0f} MB (with its logs)")
    for column in ("what", "bare (s)", "service (s)", "ratio", "target"):
        table.add_column(column, justify="left" if column == "what" else "right")
    backup = fig["backup"]
    ratio_row(table, f"full backup, file store (call to done; median of "
              f"{len(backup['runs']['bare'])})", backup["bare_s"],
              backup["service_s"], TARGETS["backup"])
    ratio_row(table, "  the agent's own time (list_backups)", backup["bare_s"],
              backup["agent_s"], None)
    ratio_row(table, "  into S3 (moto server, take_backup)", backup["bare_s"],
              backup["s3_s"], None)
    table.add_row("  bytes: zstd alone / in the store",
                  f"{backup['bare_bytes'] / 1e6:.1f} MB", f"{backup['stored_bytes'] / 1e6:.1f} MB",
                  "", "")
    restore = fig["restore"]
    ratio_row(table, "restore: fetch, decompress, extract, prepare, start",
              restore["bare"]["total_s"], restore["service"]["total_s"], TARGETS["restore"])
    for phase, label in (("receive_s", "fetch, decrypt, zstd -d, mbstream -x"),
                         ("prepare_s", "mariabackup --prepare"),
                         ("start_s", "mariadbd started (service: and the swap)")):
        ratio_row(table, f"  {label}", restore["bare"][phase], restore["service"][phase], None)
    ratio_row(table, "  restore_node by id, to restored (with node boot)",
              restore["bare"]["total_s"], fig["restore_node_s"], None)
    replayed = fig["replay"]
    ratio_row(table, f"binlog replay, {replayed['transactions']} transactions in "
              f"{replayed['segments']} segments", replayed["bare_s"], replayed["service_s"],
              TARGETS["replay"])
    ratio_row(table, "  decoding alone (service: fetch, decrypt, cut, mariadb-binlog)",
              replayed["decode_bare_s"], replayed["decode_service_s"], None)
    written = fig["throughput"]
    ratio_row(table, f"master's oltp_write_only tps, without / during a backup from the "
              f"slave ({written['backup_s']:.0f} s)", written["alone_tps"],
              written["during_backup_tps"], None)
    rpo = fig["rpo"]
    worst = rpo["worst_s"]
    met = verdict(worst is not None and worst <= rpo["interval"])
    table.add_row(f"recovery point: commit to store, interval {rpo['interval']:g} s, "
                  f"{rpo['transactions']} commits", f"median {rpo['median_s']}",
                  f"worst {worst}", "",
                  f"≤ {rpo['interval']:g} {met}")
    table.add_row("total benchmark time", f"{fig['total_s']:.0f} s", "", "", "")
    Console(width=150).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tables", type=int, default=2,
                        help="sysbench tables (default %(default)s)")
    parser.add_argument("--table-size", type=int, default=1_000_000,
                        help="rows a table (default %(default)s: ~250 MB a table)")
    parser.add_argument("--write-time", type=int, default=20,
                        help="seconds of each oltp_write_only run (default %(default)s)")
    parser.add_argument("--rpo-time", type=float, default=30.0,
                        help="seconds of the recovery point's write load (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the backup comparison, order alternating "
                             "(default %(default)s)")
    parser.add_argument("--buffer-pool", default="256M",
                        help="innodb_buffer_pool_size of every server (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="limit of every single wait, in seconds (default %(default)s)")
    args = parser.parse_args(argv)
    if min(args.tables, args.table_size, args.write_time, args.repeat) < 1 \
            or args.rpo_time <= 0:
        parser.error("--tables, --table-size, --write-time, --repeat and --rpo-time must be "
                     "positive")
    holder: list[dict[str, Any]] = []

    def measure(root: Path) -> None:
        with SubnetClaim() as claim:
            bench = Bench(args, root, claim.subnet)
            try:
                holder.append(bench.run())
            finally:
                bench.manager.close()

    if not run_measured("cqbk-", measure) or not holder:
        return 1
    render(holder[0])
    print(json.dumps(holder[0], sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
