"""A physical copy sent straight over a TCP socket: mariabackup writes it, mbstream reads it.

The HTTP stream (``Backup.chunks`` relayed by two agents) costs each agent a
Python copy of every byte. Here the receiving node listens on a port of its own
for one connection; the sending node connects, writes a one-time ticket, and
then hands the connected socket to ``mariabackup --backup --stream=xbstream``
as its standard output, while the receiver hands its end to ``mbstream -x`` as
standard input. No byte of the copy passes through Python on either side.

The ticket (random, given to the sender over the authenticated agent RPC) is
how the receiver tells its sender from anyone else who connects: a connection
that does not start with it is closed. As both tools block on the socket, each
side watches its tool's I/O counters and kills it when the copy stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conpaassql.errors import MySQLError, UnreachableError
from conpaassql.files import write_private
from conpaassql.mysql.backup import (
    BACKUP_PREFIX,
    MBSTREAM,
    XBSTREAM_MAGIC,
    backup_cnf,
    backup_command,
    check_extracted,
    default_parallel,
    render_backup_cnf,
    tool_error,
    tree_size,
)
from conpaassql.mysql.binaries import find_binary, tail
from conpaassql.mysql.datadir import remove_leftovers
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import collect, kill

log = logging.getLogger(__name__)

TICKET_BYTES = 32
#: Longest wait, once connected, for the ticket and then the copy's first bytes.
HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
#: How often the I/O counters of a tool are read.
PROGRESS_POLL = 1.0


def new_ticket() -> str:
    return secrets.token_hex(TICKET_BYTES)


def io_counter(pid: int, field: str) -> int | None:
    """``rchar`` or ``wchar`` of a process (``/proc/PID/io``); None where unreadable."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name == field:
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


async def follow(process: asyncio.subprocess.Process, field: str,
                 stall_timeout: float) -> tuple[bool, int | None]:
    """Wait for ``process``, killing it once its ``field`` counter stays still
    ``stall_timeout`` s: (whether it was killed for that, the counter as last read,
    up to ``PROGRESS_POLL`` before the end).

    Without readable counters, only the process's end is waited for.
    """
    last, since = io_counter(process.pid, field), time.monotonic()
    while process.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process.wait()), PROGRESS_POLL)
            break
        now, count = time.monotonic(), io_counter(process.pid, field)
        if count is None or count != last:
            last, since = count if count is not None else last, now
        elif now - since >= stall_timeout:
            kill(process)
            await process.wait()
            return True, last
    return False, last


async def _finish(process: asyncio.subprocess.Process, field: str,
                  stall_timeout: float) -> tuple[bool, int, str]:
    """Wait for a tool on a socket (killed if its ``field`` counter stalls): whether it
    stalled, its exit status and the tail of its stderr. Killed if the wait is left."""
    assert process.stderr is not None
    errors = asyncio.create_task(collect(process.stderr))
    try:
        stalled, _ = await follow(process, field, stall_timeout)
        status = await process.wait()
        return stalled, status, (await errors).decode("utf-8", "replace")
    except BaseException:
        kill(process)
        await process.wait()
        errors.cancel()
        raise


@dataclass(frozen=True)
class Sent:
    seconds: float


async def send_backup(paths: ServerPaths, password: str, host: str, port: int, ticket: str,
                      stall_timeout: float, parallel: int | None = None) -> Sent:
    """Connect to a receiver, present ``ticket`` and let mariabackup write the copy to it.

    ``UnreachableError`` if the receiver cannot be reached; ``MySQLError`` with
    mariabackup's own error line if the copy fails or stalls.
    """
    await asyncio.to_thread(remove_leftovers, paths.base, BACKUP_PREFIX)
    try:
        sock = await asyncio.to_thread(socket.create_connection, (host, port), CONNECT_TIMEOUT)
    except OSError as exc:
        raise UnreachableError(f"{host}:{port}", detail=exc.strerror or str(exc)) from None
    target: Path | None = None
    try:
        sock.settimeout(None)  # blocking: the socket becomes mariabackup's stdout
        await asyncio.to_thread(sock.sendall, bytes.fromhex(ticket))
        write_private(backup_cnf(paths), render_backup_cnf(paths, password))
        target = Path(tempfile.mkdtemp(prefix=BACKUP_PREFIX, dir=paths.base))
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *backup_command(paths, target, parallel), stdin=asyncio.subprocess.DEVNULL,
            stdout=sock.fileno(), stderr=asyncio.subprocess.PIPE, cwd=paths.base)
    except OSError as exc:
        sock.close()
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise UnreachableError(f"{host}:{port}", detail=exc.strerror or str(exc)) from None
    except BaseException:
        sock.close()
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise
    sock.close()  # mariabackup holds the only copy: its exit ends the stream
    log.info("mariabackup pid %d sending a copy of %s to %s:%d", process.pid, paths.datadir,
             host, port)
    try:
        stalled, status, text = await _finish(process, "wchar", stall_timeout)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    if stalled:
        raise MySQLError(f"the copy to {host}:{port} stalled for {stall_timeout:g} s",
                         detail=tail(text, 5) or None)
    if status != 0 or "completed OK!" not in text[-2000:]:
        raise tool_error("mariabackup", status, text, (password,))
    seconds = time.monotonic() - started
    log.info("mariabackup pid %d done: copy sent to %s:%d in %.2f s", process.pid, host, port,
             seconds)
    return Sent(seconds)


class Receiver:
    """A listening socket for one copy, on ``host`` (an address of this node)."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.bind((host, 0))
            self._listener.listen(4)
            self._listener.setblocking(False)
        except BaseException:
            self._listener.close()
            raise
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self.ticket = new_ticket()

    def close(self) -> None:
        self._listener.close()

    async def accept(self) -> socket.socket:
        """The first connection that presents the ticket (others are closed)."""
        loop = asyncio.get_running_loop()
        expected = bytes.fromhex(self.ticket)
        while True:
            conn, peer = await loop.sock_accept(self._listener)
            try:
                presented = await asyncio.wait_for(_read_exactly(conn, len(expected)),
                                                   HANDSHAKE_TIMEOUT)
            except (TimeoutError, OSError):
                presented = b""
            if hmac.compare_digest(presented, expected):
                return conn
            log.warning("closed a connection from %s to the copy port: no valid ticket",
                        peer[0])
            conn.close()

    async def receive(self, directory: Path, connection: socket.socket, stall_timeout: float,
                      parallel: int | None = None) -> int:
        """Run ``mbstream -x`` in ``directory`` on the connection; the bytes of the
        files it wrote (the stream's own framing is not counted: mbstream reads
        it, not this process)."""
        try:
            head = await asyncio.wait_for(_peek(connection, len(XBSTREAM_MAGIC)),
                                          HANDSHAKE_TIMEOUT)
        except TimeoutError:
            connection.close()
            raise MySQLError(f"the copy did not start within {HANDSHAKE_TIMEOUT:g} s") from None
        if not head:
            connection.close()
            raise MySQLError("the copy is empty")
        if not XBSTREAM_MAGIC.startswith(head[: len(XBSTREAM_MAGIC)]):
            connection.close()
            raise MySQLError("the copy is not an xbstream (mariabackup --stream)")
        connection.setblocking(True)  # the socket becomes mbstream's stdin
        try:
            process = await asyncio.create_subprocess_exec(
                find_binary(*MBSTREAM), "-x", f"--directory={directory}",
                f"--parallel={parallel or default_parallel()}", stdin=connection.fileno(),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        finally:
            connection.close()
        stalled, status, text = await _finish(process, "rchar", stall_timeout)
        if stalled:
            raise MySQLError(f"the copy stalled for {stall_timeout:g} s")
        if status != 0:
            if "xb_stream_read_chunk" in text:
                raise MySQLError("the copy is incomplete (it ends in the middle of a file)",
                                 detail=tail(text, 5))
            raise tool_error("mbstream", status, text)
        check_extracted(directory)
        return await asyncio.to_thread(tree_size, directory)


async def _read_exactly(conn: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(conn, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def _peek(conn: socket.socket, size: int) -> bytes:
    """The first ``size`` bytes waiting on ``conn``, left unread (b"" at its end).

    Polled: it is only the few bytes that open a copy.
    """
    while True:
        try:
            head = conn.recv(size, socket.MSG_PEEK)
        except BlockingIOError:
            head = None
        if head is not None and (len(head) >= size or head == b""):
            return head
        await asyncio.sleep(0.005)
