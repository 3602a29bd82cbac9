"""Physical backups into a backup store, and restores out of it.

``take_backup`` runs ``mariabackup --backup --stream=xbstream`` (with
``--incremental-lsn`` for an incremental) with its standard output a pipe whose
read end is the store's source: zstd reads it straight, the frames are encrypted
as they come, and the object is uploaded as it grows. The backup is never whole
in memory nor on a local disk. ``--extra-lsndir`` puts a copy of the small
metadata files into a private temporary directory as well: ``xtrabackup_checkpoints``
(the LSN range: an incremental's parent is where the next one starts) and the
binlog position.

The GTID position recorded is mariabackup's own: the one it reads under ``BACKUP
STAGE BLOCK_COMMIT`` while commits are held, at the very point the copy stands
at. A ``SELECT @@gtid_current_pos`` before or after the copy would be off by
the transactions committed meanwhile.

``restore_chain`` is the other end: each object (the full backup first, then its
incrementals in order) is fetched, decrypted and decompressed by the store into
``mbstream -x``; the full backup is prepared, each incremental applied with
``--prepare --incremental-dir``, and the result swapped in as the datadir
(``mysql.backup.restore``). A corrupt object fails the restore, naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conpaassql.backup.progress import JobProgress, datadir_size
from conpaassql.backup.store import BackupStore
from conpaassql.errors import MySQLError
from conpaassql.files import write_private
from conpaassql.mysql.backup import (
    BACKUP,
    BINLOG_INFO_FILES,
    PREPARE_MEMORY,
    PREPARE_TIMEOUT,
    RestoreResult,
    SwapRunner,
    backup_cnf,
    backup_command,
    extract,
    prepare,
    read_binlog_info,
    render_backup_cnf,
    restore,
    tool_error,
)
from conpaassql.mysql.binaries import find_binary, run_program
from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import remove_leftovers
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import collect, kill

log = logging.getLogger(__name__)

CHECKPOINTS = "xtrabackup_checkpoints"
_LSN = re.compile(r"^(from_lsn|to_lsn)\s*=\s*(\d+)\s*$", re.MULTILINE)
#: The working directory of a backup into the store (apart from ``Backup``'s, which
#: removes its own leftovers when a seed starts).
WORK_PREFIX = ".store-backup-"
_INFO_GTID = re.compile(r"GTID of the last change '([0-9,-]*)'")

#: Called by the point-in-time part once a backup is restored and the server runs on
#: it: ``replay(session, gtid_position)`` applies the archived binlogs from that
#: position on (the restored copy's, as ``RestoredChain.gtid_position`` gives it).
ReplayHook = Callable[[Session, str], Awaitable[None]]


@dataclass(frozen=True)
class TakenBackup:
    """One backup written to the store."""

    gtid: str  # the copy's GTID position ("" for a server without transactions)
    from_lsn: int
    to_lsn: int
    stored: int  # bytes in the store (compressed, encrypted)
    seconds: float


def read_checkpoints(directory: Path) -> dict[str, int]:
    """``from_lsn`` and ``to_lsn`` of the copy whose metadata is in ``directory``."""
    try:
        text = (directory / CHECKPOINTS).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise MySQLError(f"mariabackup left no {CHECKPOINTS}: {exc}") from None
    found = {name: int(value) for name, value in _LSN.findall(text)}
    if set(found) != {"from_lsn", "to_lsn"}:
        raise MySQLError(f"unreadable {CHECKPOINTS}: {text.strip()[:200]!r}")
    return found


def read_gtid(directory: Path) -> str:
    """The GTID position mariabackup recorded: its binlog info file, or the
    ``binlog_pos`` line of its info file (all ``--extra-lsndir`` may hold)."""
    if any((directory / name).is_file() for name in BINLOG_INFO_FILES):
        return read_binlog_info(directory)[2]
    for name in ("xtrabackup_info", "mariadb_backup_info"):
        path = directory / name
        if path.is_file():
            found = _INFO_GTID.search(path.read_text(encoding="utf-8", errors="replace"))
            if found:
                return found.group(1)
    return ""


async def take_backup(paths: ServerPaths, password: str, store: BackupStore, key: str, *,
                      incremental_lsn: int | None = None,
                      metadata: dict[str, str] | None = None,
                      progress: JobProgress | None = None) -> TakenBackup:
    """Stream a backup of the running server into ``key`` of ``store``.

    An incremental copies the pages changed since ``incremental_lsn`` (its
    parent's ``to_lsn``). If mariabackup fails, the object is deleted and its
    error raised. ``progress`` counts the bytes as they go; a full backup expects
    the datadir's size.
    """
    started = time.monotonic()
    await asyncio.to_thread(remove_leftovers, paths.base, WORK_PREFIX)
    if progress is not None and incremental_lsn is None:
        progress.expected = await asyncio.to_thread(datadir_size, paths.datadir)
    write_private(backup_cnf(paths), render_backup_cnf(paths, password))
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=paths.base))
    target, lsndir = work / "target", work / "lsn"
    target.mkdir()
    lsndir.mkdir()
    command = [*backup_command(paths, target), f"--extra-lsndir={lsndir}"]
    if incremental_lsn is not None:
        command.append(f"--incremental-lsn={incremental_lsn}")
    reader, writer = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=writer,
            stderr=asyncio.subprocess.PIPE, cwd=paths.base)
    except BaseException:
        os.close(reader)
        os.close(writer)
        shutil.rmtree(work, ignore_errors=True)
        raise
    os.close(writer)
    assert process.stderr is not None
    errors = asyncio.create_task(collect(process.stderr))
    try:
        try:
            stored = await store.put(key, reader, metadata, progress)
        finally:
            os.close(reader)
        status = await process.wait()
        text = (await errors).decode("utf-8", "replace")
        if status != 0 or "completed OK!" not in text[-2000:]:
            await store.delete(key)
            raise tool_error("mariabackup", status, text, (password,))
        lsn = read_checkpoints(lsndir)
        gtid = read_gtid(lsndir)
    finally:
        kill(process)
        await process.wait()
        errors.cancel()
        await asyncio.to_thread(shutil.rmtree, work, True)
    return TakenBackup(gtid=gtid, from_lsn=lsn["from_lsn"], to_lsn=lsn["to_lsn"],
                       stored=stored.size, seconds=time.monotonic() - started)


async def apply_incremental(base: Path, increment: Path,
                            use_memory: str = PREPARE_MEMORY) -> None:
    """``mariabackup --prepare --incremental-dir``: ``increment`` applied to ``base``."""
    try:
        status, output = await run_program(
            [find_binary(*BACKUP), f"--defaults-file={base / 'backup-my.cnf'}", "--prepare",
             f"--target-dir={base}", f"--incremental-dir={increment}",
             f"--use-memory={use_memory}"], timeout=PREPARE_TIMEOUT)
    except TimeoutError:
        raise MySQLError(f"mariabackup --prepare took over {PREPARE_TIMEOUT:g} s") from None
    if status != 0 or "completed OK!" not in output[-2000:]:
        raise tool_error("mariabackup --prepare --incremental-dir", status, output)
    # The position is the last increment's (copied here in case this release does not).
    for name in BINLOG_INFO_FILES:
        if (increment / name).is_file():
            shutil.copyfile(increment / name, base / name)


async def restore_chain(paths: ServerPaths, store: BackupStore, keys: Sequence[str], *,
                        run_as: str | None = None, swap: SwapRunner | None = None,
                        progress: JobProgress | None = None) -> RestoreResult:
    """Make the backup in ``keys`` (a full backup's object, then its incrementals'
    in order) the server's datadir; ``RestoreResult`` as ``restore`` gives it.
    ``progress`` counts the stored bytes fetched of the chain's, then names the
    phase: ``fetch``, ``prepare``, ``start`` (the swap and the server's start)."""
    if not keys:
        raise MySQLError("no backup to restore")
    increments: list[Path] = []
    if progress is not None:
        progress.phase = "fetch"
        progress.expected = sum([(await store.head(key)).size for key in keys])

    async def receive(copy: Path) -> int:
        received = await extract(copy, store.get(keys[0], progress))
        for number, key in enumerate(keys[1:], 1):
            directory = copy.parent / f"increment-{number}"
            directory.mkdir(mode=0o700)
            received += await extract(directory, store.get(key, progress))
            increments.append(directory)
        return received

    async def prepare_all(copy: Path) -> None:
        if progress is not None:
            progress.phase = "prepare"
        await prepare(copy)
        for directory in increments:
            await apply_incremental(copy, directory)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(shutil.rmtree, directory)
        if progress is not None:
            progress.phase = "start"

    return await restore(paths, receive, run_as=run_as, swap=swap, prepare_copy=prepare_all)
