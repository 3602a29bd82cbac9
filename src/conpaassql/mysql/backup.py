"""Physical copies of a running server with mariabackup, streamed: how a slave is seeded.

``Backup`` runs ``mariabackup --backup --stream=xbstream`` on a running server
and hands its output over chunk by chunk, as it is produced. The server keeps
serving reads and writes meanwhile: InnoDB files are copied hot along with the
redo log written during the copy, and only the short ``BACKUP STAGE
BLOCK_COMMIT`` at the end holds commits back, to read the binlog (GTID)
position the copy stands at.

``restore`` is the other end: the stream goes into ``mbstream -x`` in a staging
directory next to the datadir, ``mariabackup --prepare`` applies the copied
redo log (the copy becomes consistent as of that GTID position), and the
staging directory is swapped in place of the datadir. The copy carries no
binary log: the restored server starts with an empty ``@@gtid_binlog_pos``, and
the position of its data is the one returned (``adopt_gtid_position`` records
it as ``@@gtid_slave_pos``, from which a slave replicates with
``MASTER_USE_GTID=slave_pos``).

mariabackup logs in as root through its own defaults file (mode 0600), which
includes the server's ``my.cnf`` (mariabackup reads the server's groups for the
datadir, the InnoDB layout and ``tmpdir``) and adds a ``[mariabackup]`` group
with root's credentials: no password is ever on a command line or in a log.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from conpaassql.errors import MySQLError, WrongStateError
from conpaassql.files import write_private
from conpaassql.mysql.binaries import find_binary, run_program, tail
from conpaassql.mysql.config import render_client_cnf, resolve_run_as
from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import (
    ROOT_USER,
    _chown_tree,
    _needs_chown,
    remove_init_file,
    remove_leftovers,
)
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import ToolOutput, kill, pipe_into

log = logging.getLogger(__name__)

BACKUP = ("mariadb-backup", "mariabackup")
MBSTREAM = ("mbstream",)
MAX_PARALLEL = 4
#: What every xbstream starts with (the header of its first chunk).
XBSTREAM_MAGIC = b"XBSTCK01"
#: Where a copy records its binlog position (the older name first: 10.11 writes it).
BINLOG_INFO_FILES = ("xtrabackup_binlog_info", "mariadb_backup_binlog_info")
#: Written last into every stream: a copy without one of them was cut short.
INFO_FILES = ("xtrabackup_info", "mariadb_backup_info")
#: Buffer pool of ``--prepare`` (it applies the redo log copied with the data).
PREPARE_MEMORY = "128M"
PREPARE_TIMEOUT = 6 * 3600.0
BACKUP_PREFIX = ".backup-"
STAGING_PREFIX = ".seed-"

_GTID_LIST = re.compile(r"\d+-\d+-\d+(,\d+-\d+-\d+)*")
_LOG_PREFIX = re.compile(
    r"^(\[\d+\]\s+)?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+)?(\d+ \[\w+\]\s+)?")
_ERROR_WORDS = re.compile(r"error|fail|fatal|denied|cannot|can't|unable|abort|not found",
                          re.IGNORECASE)

#: Runs a datadir swap: ``swap(install, undo)``. ``install`` puts the copy in place
#: of the datadir (or leaves the old one in place and raises); ``undo`` puts the
#: old datadir back after a successful ``install``.
#: Extracts a copy into the directory given: the bytes received.
Receive = Callable[[Path], Awaitable[int]]
SwapRunner = Callable[[Callable[[], None], Callable[[], None]], Awaitable[None]]


def backup_cnf(paths: ServerPaths) -> Path:
    """mariabackup's defaults file (mode 0600): holds root's password."""
    return paths.base / "backup.cnf"


def render_backup_cnf(paths: ServerPaths, password: str, user: str = ROOT_USER) -> str:
    """``!include`` of the server's ``my.cnf``, then a ``[mariabackup]`` login group.

    The include comes first so that the login group's ``user`` (root) wins over
    the server group's ``user`` (the account mariadbd runs as).
    """
    cnf = os.fspath(paths.cnf)
    if any(bad in cnf for bad in ("\n", "\r", "\0")):
        raise MySQLError("the path of my.cnf contains a newline")
    header, _, options = render_client_cnf(paths, user, password).partition("\n")
    if header != "[client]":
        raise MySQLError("unexpected client option file layout")
    return f"# Written by conpaassql; changes are overwritten.\n!include {cnf}\n\n" \
           f"[mariabackup]\n{options}"


def default_parallel() -> int:
    return max(1, min(MAX_PARALLEL, os.cpu_count() or 1))


def backup_command(paths: ServerPaths, target: Path, parallel: int | None = None) -> list[str]:
    """mariabackup streaming a copy of the server to its standard output (paths only)."""
    return [
        find_binary(*BACKUP),
        f"--defaults-file={backup_cnf(paths)}",  # must come first
        "--backup",
        "--stream=xbstream",
        f"--target-dir={target}",
        f"--parallel={parallel or default_parallel()}",
    ]


def _strip_log_prefix(line: str) -> str:
    return _LOG_PREFIX.sub("", line.strip(), count=1)


def tool_error(what: str, status: int | None, output: str,
               secrets: tuple[str, ...] = ()) -> MySQLError:
    """``MySQLError`` with the last error line a tool printed and its last lines as detail."""
    for secret in secrets:
        if secret:
            output = output.replace(secret, "***")
    lines = [_strip_log_prefix(line) for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_WORDS.search(line)]
    found = errors[-1] if errors else (lines[-1] if lines else "")
    how = f"exit status {status}" if status is not None else "it stopped"
    message = f"{what} failed ({how})" + (f": {found}" if found else "")
    return MySQLError(message[:2000], detail=tail(output, 12) or None)


class Backup:
    """A running ``mariabackup --backup --stream=xbstream`` read as it produces.

    ``chunks`` yields the stream; ``close`` (idempotent) kills mariabackup if it
    is still running and removes its working directory: call it when the
    consumer goes away, whether or not ``chunks`` was ever iterated.
    """

    def __init__(self, output: ToolOutput, target: Path, password: str) -> None:
        self._output = output
        self._target = target
        self._password = password
        self.started = time.monotonic()
        self.finished = False  # mariabackup completed OK and everything was read

    @property
    def sent(self) -> int:
        return self._output.sent

    @classmethod
    async def start(cls, paths: ServerPaths, password: str, *,
                    parallel: int | None = None) -> Backup:
        """Start the copy; a failure before its first byte raises ``MySQLError`` here,
        with mariabackup's own error line (e.g. ``Access denied for user 'root'...``)."""
        await asyncio.to_thread(remove_leftovers, paths.base, BACKUP_PREFIX)
        write_private(backup_cnf(paths), render_backup_cnf(paths, password))
        target = Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=paths.base))
        try:
            output = await ToolOutput.start(backup_command(paths, target, parallel),
                                            cwd=paths.base)
            if not output.first:
                status, text = await output.finish()
                raise tool_error("mariabackup", status, text, (password,))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        log.info("mariabackup pid %d streaming a copy of %s", output.process.pid,
                 paths.datadir)
        return cls(output, target, password)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The xbstream; ``MySQLError`` at the end if mariabackup failed part-way."""
        try:
            async for block in self._output.blocks():
                yield block
            status, text = await self._output.finish()
            if status != 0 or "completed OK!" not in text[-2000:]:
                raise tool_error("mariabackup", status, text, (self._password,))
            self.finished = True
            log.info("mariabackup pid %d done: %d bytes in %.2f s", self._output.process.pid,
                     self.sent, time.monotonic() - self.started)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop mariabackup (if still running) and remove its working directory.

        All but the final wait happens before the first ``await``, so that it is
        done even when called from a task being cancelled (a reader gone away).
        """
        if self._output.running:
            log.warning("mariabackup pid %d stopped after %d bytes: the reader went away",
                        self._output.process.pid, self.sent)
        kill(self._output.process)  # before its working directory goes
        shutil.rmtree(self._target, ignore_errors=True)
        await self._output.close()


@dataclass(frozen=True)
class RestoreResult:
    gtid_position: str  # e.g. "0-1-57" ("" for a server that never wrote a transaction)
    binlog_file: str  # the source's binlog file and offset at the copy's point
    binlog_offset: int
    received: int  # bytes of xbstream
    data_bytes: int  # bytes of the restored datadir
    receive_seconds: float  # transfer and extraction
    prepare_seconds: float
    swap_seconds: float  # stop, swap, start (when the swap restarts the server)
    seconds: float  # all of it

    def as_dict(self) -> dict[str, object]:
        return {
            "gtid_position": self.gtid_position, "binlog_file": self.binlog_file,
            "binlog_offset": self.binlog_offset, "bytes": self.received,
            "data_bytes": self.data_bytes,
            "receive_seconds": round(self.receive_seconds, 3),
            "prepare_seconds": round(self.prepare_seconds, 3),
            "swap_seconds": round(self.swap_seconds, 3),
            "seconds": round(self.seconds, 3),
        }


async def extract(directory: Path, chunks: AsyncIterator[bytes],
                  parallel: int | None = None) -> int:
    """Pipe an xbstream into ``mbstream -x`` in ``directory``; the bytes received.

    ``MySQLError`` when the stream is not an xbstream, when mbstream fails, or
    when the copy lacks the files written at its end (it was cut short). If
    ``chunks`` raises, mbstream is killed and the error goes on.
    """
    received = 0

    async def checked() -> AsyncIterator[bytes]:
        nonlocal received
        head = b""
        async for chunk in chunks:
            if len(head) < len(XBSTREAM_MAGIC):
                head += chunk[: len(XBSTREAM_MAGIC) - len(head)]
                if not XBSTREAM_MAGIC.startswith(head):
                    raise MySQLError("the copy is not an xbstream (mariabackup --stream)")
            received += len(chunk)
            yield chunk

    command = [find_binary(*MBSTREAM), "-x", f"--directory={directory}",
               f"--parallel={parallel or default_parallel()}"]
    status, text = await pipe_into(command, checked())
    if status != 0:
        if "xb_stream_read_chunk" in text:  # it read to the end in the middle of a chunk
            raise MySQLError("the copy is incomplete (it ends in the middle of a file)",
                             detail=tail(text, 5))
        raise tool_error("mbstream", status, text)
    if received == 0:
        raise MySQLError("the copy is empty")
    check_extracted(directory)
    return received


def check_extracted(directory: Path) -> None:
    """``MySQLError`` unless the copy extracted in ``directory`` holds the files
    mariabackup writes last (without them, it was cut short)."""
    if not any((directory / name).is_file() for name in INFO_FILES):
        raise MySQLError("the copy is incomplete (it ends before mariabackup's info file)")


async def prepare(directory: Path, use_memory: str = PREPARE_MEMORY) -> None:
    """``mariabackup --prepare``: make the copy in ``directory`` consistent."""
    options = directory / "backup-my.cnf"
    if not options.is_file():
        raise MySQLError("the copy is incomplete (no backup-my.cnf)")
    try:
        status, output = await run_program(
            [find_binary(*BACKUP), f"--defaults-file={options}", "--prepare",
             f"--target-dir={directory}", f"--use-memory={use_memory}"],
            timeout=PREPARE_TIMEOUT)
    except TimeoutError:
        raise MySQLError(f"mariabackup --prepare took over {PREPARE_TIMEOUT:g} s") from None
    if status != 0 or "completed OK!" not in output[-2000:]:
        raise tool_error("mariabackup --prepare", status, output)


def read_binlog_info(directory: Path) -> tuple[str, int, str]:
    """(binlog file, offset, GTID position) recorded by the copy in ``directory``.

    The file (``xtrabackup_binlog_info``, or ``mariadb_backup_binlog_info`` in
    newer releases) holds ``binlog.000001<TAB>1075210<TAB>0-1-3``; the GTID list
    may name several domains (``0-1-3,1-2-9``) and is absent when the server
    never wrote a transaction.
    """
    for name in BINLOG_INFO_FILES:
        path = directory / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            break
    else:
        raise MySQLError("the copy records no binlog position (is log-bin off on the source?)")
    fields = text.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise MySQLError(f"unreadable binlog position in {name}: {text.strip()[:200]!r}")
    gtid = "".join(fields[2:])
    if gtid and not _GTID_LIST.fullmatch(gtid):
        raise MySQLError(f"unreadable GTID position in {name}: {gtid[:200]!r}")
    return fields[0], int(fields[1]), gtid


def _drop_backup_metadata(directory: Path) -> None:
    """Remove what only the copy needed (as ``--copy-back`` leaves it out)."""
    for entry in directory.iterdir():
        name = entry.name
        if name.startswith(("xtrabackup_", "mariadb_backup_")) or name == "backup-my.cnf":
            entry.unlink(missing_ok=True)


def tree_size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


async def _swap_directly(install: Callable[[], None], undo: Callable[[], None]) -> None:
    install()


def from_chunks(chunks: AsyncIterator[bytes], parallel: int | None = None) -> Receive:
    """Receives the copy from ``chunks`` (an xbstream as ``Backup.chunks`` yields it)."""
    return lambda directory: extract(directory, chunks, parallel)


async def restore(paths: ServerPaths, receive: Receive, *,
                  run_as: str | None = None,
                  use_memory: str = PREPARE_MEMORY,
                  swap: SwapRunner | None = None,
                  prepare_copy: Callable[[Path], Awaitable[None]] | None = None
                  ) -> RestoreResult:
    """Make a copy streamed by ``Backup`` the server's datadir; its GTID position.

    ``receive(directory)`` extracts the copy into the (empty) directory and
    returns the bytes received: ``from_chunks`` for a stream read in Python,
    ``socket_copy.Receiver`` for one read by mbstream off a socket.

    The copy is extracted and prepared in a staging directory under
    ``paths.base`` (the server may keep running meanwhile), then swapped in:
    the datadir is renamed aside, the copy renamed into place, the old one
    removed. Without ``swap`` this happens at once, so the server must be
    stopped; the agent passes its supervisor's ``replace_data``, which stops
    the server just for the swap and puts the old datadir back (``undo``) if
    the server does not start on the copy. ``run_as`` is the server's user as
    in ``ServerSettings``: as root, the copy is chowned to it.

    On any failure the old datadir stays (or is put back) in place, the
    staging directory is removed and the error (``MySQLError``, or whatever
    ``chunks`` raised) goes on. ``prepare_copy`` replaces ``prepare`` (a backup and
    its incrementals).
    """
    started = time.monotonic()
    owner = resolve_run_as(run_as)
    chown = _needs_chown(owner)
    await asyncio.to_thread(remove_leftovers, paths.base, STAGING_PREFIX)
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=paths.base))
    except OSError as exc:
        raise MySQLError(f"cannot create a staging directory in {paths.base}: {exc}") from None
    copy, aside, failed = staging / "data", staging / "old", staging / "failed"
    try:
        copy.mkdir(mode=0o700)
        received = await receive(copy)
        received_at = time.monotonic()
        await (prepare_copy(copy) if prepare_copy else prepare(copy, use_memory))
        prepared_at = time.monotonic()
        binlog_file, offset, gtid = read_binlog_info(copy)
        _drop_backup_metadata(copy)
        os.chmod(copy, 0o700)
        if chown:
            await asyncio.to_thread(_chown_tree, copy, owner)
        data_bytes = await asyncio.to_thread(tree_size, copy)

        def install() -> None:
            had_datadir = paths.datadir.exists()
            if had_datadir:
                os.rename(paths.datadir, aside)
            try:
                os.rename(copy, paths.datadir)
            except BaseException:
                if had_datadir:
                    os.rename(aside, paths.datadir)
                raise
            # A first-boot init file would reset root and drop the copy's accounts.
            remove_init_file(paths)

        def undo() -> None:
            os.rename(paths.datadir, failed)
            if aside.exists():
                os.rename(aside, paths.datadir)

        await (swap or _swap_directly)(install, undo)
        swapped_at = time.monotonic()
    except OSError as exc:
        raise MySQLError(f"restoring the copy failed: {exc}") from None
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    result = RestoreResult(
        gtid_position=gtid, binlog_file=binlog_file, binlog_offset=offset, received=received,
        data_bytes=data_bytes, receive_seconds=received_at - started,
        prepare_seconds=prepared_at - received_at, swap_seconds=swapped_at - prepared_at,
        seconds=time.monotonic() - started)
    log.info("copy restored into %s: %d bytes received, %d of data, GTID position %r,"
             " in %.2f s (prepare %.2f s)", paths.datadir, received, data_bytes, gtid,
             result.seconds, result.prepare_seconds)
    return result


async def ensure_replaceable(session: Session) -> None:
    """Refuse with ``WrongStateError`` to overwrite a server that takes writes.

    Every server boots read-only and only the master is made writable: a
    writable server is a master, whose data a copy must never replace.
    """
    rows = await session.execute("SELECT @@global.read_only AS read_only", idempotent=True)
    if rows and not int(rows[0]["read_only"]):
        raise WrongStateError(detail="this server takes writes (the master?): its data is not "
                              "replaced; make it read-only first")


async def adopt_gtid_position(session: Session, gtid_position: str) -> None:
    """Record a restored copy's position as ``@@gtid_slave_pos`` (so also in
    ``@@gtid_current_pos``): the server has the data up to it, its binlog is empty."""
    if not _GTID_LIST.fullmatch(gtid_position):
        if gtid_position:
            raise MySQLError(f"not a GTID position: {gtid_position[:200]!r}")
        return
    await session.execute("SET GLOBAL gtid_slave_pos = %s", (gtid_position,), idempotent=True)
