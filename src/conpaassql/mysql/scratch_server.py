"""A backup checked on a server of its own: ``verify_chain``.

The backup's objects (a full backup, then its incrementals) are fetched out of
the store into a scratch directory beside the node's server (never its datadir),
prepared as a restore prepares them, and a second mariadbd is started on the
copy: its own socket, no TCP port (``skip-networking``), no grant tables
(nobody can reach it but through that socket, in a private directory), no binlog,
no replication. Every user table is checked with ``CHECK TABLE``; then the server
is stopped and the scratch directory removed, whatever happened.

A corrupt object fails the fetch with ``CorruptObjectError`` naming it. The
server gets SIGTERM if the agent dies (unless it changed user: the kernel then
drops the request); a scratch directory left by a dead agent is cleaned at the
next verification, its server killed first (found by its pid file, and checked
to be running in that directory) and its socket directory removed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conpaassql.backup.store import BackupStore
from conpaassql.errors import MySQLError
from conpaassql.mysql.backup import extract, prepare, read_binlog_info, tree_size
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
#: The longest one ``CHECK TABLE`` may take: an hour, more for a big copy (read at
#: ``CHECK_RATE`` bytes a second), never more than the manager waits for the whole.
CHECK_TIMEOUT = 3600.0
CHECK_RATE = 16 * 1024 * 1024
MAX_CHECK_TIMEOUT = 12 * 3600.0
#: The file in a scratch directory that names its socket directory.
SOCKETS_NOTE = "sockets"
PID_NAME = "mariadbd.pid"
PR_SET_PDEATHSIG = 1
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
        f"pid-file={base / PID_NAME}",
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
    await asyncio.to_thread(remove_scratch_leftovers, paths.base)
    made: list[Path] = []
    try:
        base, sockets = await asyncio.to_thread(_make_scratch, paths.base)
        made += [base, sockets]
        copy = base / "data"
        await extract(copy, store.get(keys[0]))
        increments = []
        for number, key in enumerate(keys[1:], 1):
            directory = base / f"increment-{number}"
            await asyncio.to_thread(directory.mkdir, mode=0o700)
            await extract(directory, store.get(key))
            increments.append(directory)
        await prepare(copy)
        for directory in increments:
            await apply_incremental(copy, directory)
            await asyncio.to_thread(shutil.rmtree, directory, True)
        gtid = await asyncio.to_thread(_gtid_of, copy)
        if _needs_chown(owner):
            await asyncio.to_thread(_chown_tree, base, owner)
            await asyncio.to_thread(_chown_tree, sockets, owner)
        tables = await _check_on_server(base, sockets / "mysqld.sock", owner)
    finally:
        for directory in made:
            await asyncio.to_thread(shutil.rmtree, directory, True)
    return Verified(tables=tables, gtid_position=gtid, seconds=time.monotonic() - started)


def _make_scratch(parent: Path) -> tuple[Path, Path]:
    """A scratch directory under ``parent`` (its ``data`` and ``tmp`` made) and a
    socket directory, named in it; the first is removed if the second fails."""
    base = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
    try:
        # The socket's path is short whatever the node's directory (a unix socket's is not).
        sockets = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX))
        (base / SOCKETS_NOTE).write_text(str(sockets), encoding="utf-8")
        (base / "data").mkdir(mode=0o700)
        (base / "tmp").mkdir(mode=0o700)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return base, sockets


def remove_scratch_leftovers(parent: Path) -> None:
    """Scratch directories of a verification cut short (the agent died): their
    server killed, their socket directory and themselves removed."""
    for leftover in parent.glob(f"{SCRATCH_PREFIX}*"):
        _kill_leftover_server(leftover)
        with contextlib.suppress(OSError, ValueError):
            sockets = Path((leftover / SOCKETS_NOTE).read_text(encoding="utf-8").strip())
            if sockets.name.startswith(SOCKET_PREFIX) and sockets.is_dir():
                shutil.rmtree(sockets, ignore_errors=True)
    remove_leftovers(parent, SCRATCH_PREFIX)


def _kill_leftover_server(leftover: Path) -> None:
    """SIGKILL the server named by ``leftover``'s pid file, if it still runs in it
    (a pid reused by another process is left alone)."""
    try:
        pid = int((leftover / PID_NAME).read_text(encoding="utf-8").strip())
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, ValueError):
        return
    if pid <= 1 or (cwd != leftover and leftover not in cwd.parents):
        return
    log.warning("killing the leftover scratch server pid %d in %s", pid, leftover)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In the child before exec: the scratch server gets SIGTERM if the agent dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def check_timeout(data_bytes: int) -> float:
    """The read timeout of the scratch server's statements for a copy this big."""
    return min(MAX_CHECK_TIMEOUT, max(CHECK_TIMEOUT, data_bytes / CHECK_RATE))


def _gtid_of(copy: Path) -> str:
    try:
        return read_binlog_info(copy)[2]
    except MySQLError:
        return ""


async def _check_on_server(base: Path, socket: Path, run_as: str) -> int:
    cnf = base / "my.cnf"
    layout = await asyncio.to_thread(copy_layout, base / "data")
    await asyncio.to_thread(_write_cnf, cnf, scratch_cnf(base, socket, run_as, layout))
    timeout = check_timeout(await asyncio.to_thread(tree_size, base / "data"))
    log_fd = os.open(base / "error.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = await asyncio.create_subprocess_exec(
            find_binary(*SERVER), f"--defaults-file={cnf}", stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fd, stderr=log_fd, cwd=base,
            preexec_fn=_die_with_parent)
    finally:
        os.close(log_fd)
    try:
        info = ConnectInfo(socket=socket, user="root", password="", read_timeout=timeout)
        await _wait_ready(process, info, base)
        return await check_tables(info)
    finally:
        await _stop(process)


def _write_cnf(cnf: Path, text: str) -> None:
    cnf.write_text(text, encoding="utf-8")
    os.chmod(cnf, 0o644)


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
