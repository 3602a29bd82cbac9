"""A backup checked on a server of its own: ``verify_chain``.

The backup's objects (a full backup, then its incrementals) are fetched out of
the store into a scratch directory beside the node's server (never its datadir),
prepared as a restore prepares them, and a second mariadbd is started on the
copy: its own socket, no TCP port (``skip-networking``), no grant tables
(nobody can reach it but through that socket, in a private directory), no binlog,
no replication. Every user table is checked with ``CHECK TABLE``; then the server
is stopped and the scratch directory removed, whatever happened.

A corrupt object fails the fetch with ``CorruptObjectError`` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conpaassql.backup.store import BackupStore
from conpaassql.errors import MySQLError
from conpaassql.mysql.backup import extract, prepare, read_binlog_info
from conpaassql.mysql.binaries import SERVER, find_binary, tail
from conpaassql.mysql.config import resolve_run_as
from conpaassql.mysql.connection import ConnectInfo, execute
from conpaassql.mysql.datadir import _chown_tree, _needs_chown, remove_leftovers
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.quoting import quote_identifier
from conpaassql.mysql.store_backup import apply_incremental

log = logging.getLogger(__name__)

SCRATCH_PREFIX = ".verify-"
SOCKET_PREFIX = "conpaassql-verify-"
START_TIMEOUT = 300.0
STOP_TIMEOUT = 120.0
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
#: What ``CHECK TABLE`` answers for a sound table.
SOUND = ("OK", "Table is already up to date")
SHOWN_PROBLEMS = 5
#: The copy's InnoDB layout, which the server it was taken from may have set apart
#: from the defaults: read from its ``backup-my.cnf``.
LAYOUT = ("innodb_page_size", "innodb_data_file_path", "innodb_undo_tablespaces")


@dataclass(frozen=True)
class Verified:
    """A backup restored on a scratch server: its user tables, all sound."""

    tables: int
    gtid_position: str
    seconds: float


def copy_layout(copy: Path) -> list[str]:
    """``name=value`` of the ``LAYOUT`` options the copy's ``backup-my.cnf`` names."""
    try:
        text = (copy / "backup-my.cnf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() in LAYOUT and value.strip() and "\n" not in value:
            found.append(f"{name.strip()}={value.strip()}")
    return found


def scratch_cnf(base: Path, socket: Path, run_as: str, layout: Sequence[str] = ()) -> str:
    """The scratch server's options: only what it needs, and nothing it could reach."""
    lines = [
        "[mariadbd]",
        f"datadir={base / 'data'}",
        f"socket={socket}",
        f"pid-file={base / 'mariadbd.pid'}",
        f"log-error={base / 'error.log'}",
        f"tmpdir={base / 'tmp'}",
        f"user={run_as}",
        "skip-networking",
        "skip-grant-tables",
        "skip-slave-start",
        "event-scheduler=DISABLED",
        "innodb-buffer-pool-size=64M",
        *layout,
        "",
    ]
    return "\n".join(lines)


async def verify_chain(paths: ServerPaths, store: BackupStore, keys: Sequence[str], *,
                       run_as: str | None = None) -> Verified:
    """Restore ``keys`` into a scratch directory under ``paths.base``, start a server
    on it, ``CHECK TABLE`` every user table; ``MySQLError`` naming the tables that
    are not sound."""
    if not keys:
        raise MySQLError("no backup to verify")
    started = time.monotonic()
    owner = resolve_run_as(run_as)
    await asyncio.to_thread(remove_leftovers, paths.base, SCRATCH_PREFIX)
    base = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=paths.base))
    # The socket's path is short whatever the node's directory (a unix socket's is not).
    sockets = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX))
    try:
        copy = base / "data"
        copy.mkdir(mode=0o700)
        (base / "tmp").mkdir(mode=0o700)
        await extract(copy, store.get(keys[0]))
        increments = []
        for number, key in enumerate(keys[1:], 1):
            directory = base / f"increment-{number}"
            directory.mkdir(mode=0o700)
            await extract(directory, store.get(key))
            increments.append(directory)
        await prepare(copy)
        for directory in increments:
            await apply_incremental(copy, directory)
            await asyncio.to_thread(shutil.rmtree, directory, True)
        gtid = _gtid_of(copy)
        if _needs_chown(owner):
            await asyncio.to_thread(_chown_tree, base, owner)
            await asyncio.to_thread(_chown_tree, sockets, owner)
        tables = await _check_on_server(base, sockets / "mysqld.sock", owner)
    finally:
        await asyncio.to_thread(shutil.rmtree, base, True)
        await asyncio.to_thread(shutil.rmtree, sockets, True)
    return Verified(tables=tables, gtid_position=gtid, seconds=time.monotonic() - started)


def _gtid_of(copy: Path) -> str:
    try:
        return read_binlog_info(copy)[2]
    except MySQLError:
        return ""


async def _check_on_server(base: Path, socket: Path, run_as: str) -> int:
    cnf = base / "my.cnf"
    layout = copy_layout(base / "data")
    cnf.write_text(scratch_cnf(base, socket, run_as, layout), encoding="utf-8")
    os.chmod(cnf, 0o644)
    log_fd = os.open(base / "error.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = await asyncio.create_subprocess_exec(
            find_binary(*SERVER), f"--defaults-file={cnf}", stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd, stderr=log_fd, cwd=base)
    finally:
        os.close(log_fd)
    try:
        info = ConnectInfo(socket=socket, user="root", password="", read_timeout=None)
        await _wait_ready(process, info, base)
        return await check_tables(info)
    finally:
        await _stop(process)


async def _wait_ready(process: asyncio.subprocess.Process, info: ConnectInfo,
                      base: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.returncode is not None:
            raise MySQLError(f"the scratch server exited with status {process.returncode} "
                             "on the restored copy", detail=_error_log(base))
        if info.socket.exists():
            with contextlib.suppress(MySQLError):
                await execute(info, "SELECT 1")
                return
        if time.monotonic() >= deadline:
            raise MySQLError(f"the scratch server did not answer within {START_TIMEOUT:g} s",
                             detail=_error_log(base))
        await asyncio.sleep(0.1)


async def check_tables(info: ConnectInfo) -> int:
    """``CHECK TABLE`` on every user table; how many. ``MySQLError`` naming those
    that are not sound."""
    marks = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    rows = await execute(
        info, "SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t FROM information_schema.TABLES "
        f"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({marks}) "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME", SYSTEM_SCHEMAS)
    problems: list[str] = []
    for row in rows:
        name = f"{quote_identifier(str(row['s']))}.{quote_identifier(str(row['t']))}"
        answer = await execute(info, f"CHECK TABLE {name}")
        bad = [f"{r.get('Msg_type')}: {r.get('Msg_text')}" for r in answer
               if str(r.get("Msg_type")).lower() == "error"
               or (str(r.get("Msg_type")).lower() == "status" and r.get("Msg_text") not in SOUND)]
        if bad:
            problems.append(f"{row['s']}.{row['t']} ({'; '.join(bad)[:300]})")
    if problems:
        more = len(problems) - SHOWN_PROBLEMS
        raise MySQLError(f"CHECK TABLE found {len(problems)} damaged table(s) of {len(rows)}: "
                         + ", ".join(problems[:SHOWN_PROBLEMS])
                         + (f" and {more} more" if more > 0 else ""))
    return len(rows)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        log.warning("scratch mariadbd pid %d ignored SIGTERM; killing it", process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _error_log(base: Path) -> str:
    try:
        return tail((base / "error.log").read_text(encoding="utf-8", errors="replace"), 12)
    except OSError:
        return ""
