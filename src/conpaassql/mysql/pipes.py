"""Streams into and out of the native tools (mariadb, mariadb-dump, mariabackup, mbstream).

One place for what every such pipe needs: writing with back-pressure, reading in
large blocks, keeping the tail of stderr for the error message, and killing the
tool when the other end goes away.

Bytes cross these pipes in large blocks, which is what makes them cheap: a
tool's input is written by a thread, one blocking ``write`` per chunk into a
pipe grown to a megabyte (asyncio's pipe transport would write 64 KiB per wake-up
and shift its buffer each time); a tool's output is block-buffered (``stdbuf``)
where the tool writes through stdio, a page at a time otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

READ_CHUNK = 256 * 1024
STDERR_LIMIT = 64 * 1024
#: Bytes gathered from a tool's output before they are passed on: mariadb-dump
#: writes 4 KiB at a time, and every chunk costs a trip through each process.
OUTPUT_BLOCK = 1 << 20
#: How much a reader of a tool's output buffers before it stops reading the pipe
#: (asyncio's default, 64 KiB, would pause and resume it many times per block).
READ_LIMIT = 2 * OUTPUT_BLOCK
#: The capacity asked of the pipes to and from a tool (Linux caps it at
#: ``/proc/sys/fs/pipe-max-size``, 1 MiB by default).
PIPE_SIZE = 1 << 20


def grow_pipe(descriptor: int, size: int = PIPE_SIZE) -> None:
    """Ask for a pipe of ``size`` bytes; the kernel's default (64 KiB) stays if refused."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, size)


def block_buffered(args: Sequence[str], size: int = OUTPUT_BLOCK) -> list[str]:
    """``args`` run with their standard output buffered in blocks of ``size`` (through
    coreutils' ``stdbuf``, when there is one): a stdio tool writing into a pipe
    otherwise writes 4 KiB at a time, and every write wakes its reader."""
    wrapper = shutil.which("stdbuf")
    return [*args] if wrapper is None else [wrapper, f"-o{size}", *args]


async def collect(stream: asyncio.StreamReader, limit: int = STDERR_LIMIT) -> bytes:
    """Everything ``stream`` says, keeping only the last ``limit`` bytes."""
    kept = b""
    while chunk := await stream.read(READ_CHUNK):
        kept = (kept + chunk)[-limit:]
    return kept


async def read_block(stream: asyncio.StreamReader, size: int = OUTPUT_BLOCK) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream."""
    try:
        return await stream.readexactly(size)
    except asyncio.IncompleteReadError as end:
        return end.partial


def _write_all(descriptor: int, data: bytes | bytearray) -> bool:
    """Blocking: all of ``data`` into the pipe; ``False`` once the reader has gone."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(descriptor, view):]
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


class PipeWriter:
    """The writing end of a pipe, written by a thread a chunk at a time.

    The descriptor is closed only once no write is pending on it (a write still
    running after its caller was cancelled ends when the reader is killed).
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self._pending: asyncio.Future[bool] | None = None
        self._closed = False

    async def write(self, data: bytes | bytearray) -> bool:
        """Write and wait for room; ``False`` once the reader has gone."""
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, _write_all, self.descriptor, data)
        return await asyncio.shield(self._pending)

    async def close(self) -> None:
        """Close the pipe (the reader sees its end), after the write in progress."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            with contextlib.suppress(Exception):
                await self._pending
        os.close(self.descriptor)


def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


async def gathered(chunks: AsyncIterator[bytes],
                   size: int = PIPE_SIZE) -> AsyncIterator[bytes | bytearray]:
    """``chunks`` in blocks of at least ``size`` bytes (the last one may be smaller):
    a request's body comes in pieces of some 64-256 KiB, and each write is a trip to
    a thread. A block yielded is not touched afterwards."""
    block = bytearray()
    async for chunk in chunks:
        block += chunk
        if len(block) >= size:
            yield block
            block = bytearray()
    if block:
        yield block


async def pipe_into(args: Sequence[str], chunks: AsyncIterator[bytes],
                    cwd: Path | None = None) -> tuple[int, str]:
    """Feed ``chunks`` to the program's standard input: (exit status, the tail of stderr).

    The program may stop reading early (its error is on stderr): the rest of
    ``chunks`` is then left unread. If ``chunks`` raises, the program is killed
    (a half-received input is never acted on) and the error goes on.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    grow_pipe(write_end)
    stdin = PipeWriter(write_end)
    try:
        process = await asyncio.create_subprocess_exec(
            *args, stdin=read_end, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, cwd=cwd)
    except BaseException:
        await stdin.close()
        raise
    finally:
        os.close(read_end)
    assert process.stderr is not None
    errors = asyncio.create_task(collect(process.stderr))
    try:
        async for block in gathered(chunks):
            if not await stdin.write(block):
                break
        await stdin.close()
        status = await process.wait()
    except BaseException:
        kill(process)
        await stdin.close()
        await process.wait()
        errors.cancel()
        raise
    return status, (await errors).decode("utf-8", "replace")


class ToolOutput:
    """A running program whose standard output is read in blocks as it is produced.

    Its stderr is collected from the start (a program that fills that pipe would
    stall). ``start`` returns once the first block is read; an empty one means
    the program ended without output, and ``finish`` then tells how.
    """

    def __init__(self, process: asyncio.subprocess.Process, errors: asyncio.Task[bytes],
                 first: bytes) -> None:
        self.process = process
        self.first = first
        self.sent = 0
        self._errors = errors

    @classmethod
    async def start(cls, args: Sequence[str], cwd: Path | None = None) -> ToolOutput:
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, limit=READ_LIMIT)
        assert process.stdout is not None and process.stderr is not None
        errors = asyncio.create_task(collect(process.stderr))
        try:
            first = await read_block(process.stdout)
        except BaseException:
            kill(process)
            await process.wait()
            errors.cancel()
            raise
        return cls(process, errors, first)

    async def blocks(self) -> AsyncIterator[bytes]:
        """The output, the first block included; ``finish`` afterwards tells how it ended."""
        assert self.process.stdout is not None
        chunk, self.first = self.first, b""
        while chunk:
            self.sent += len(chunk)
            yield chunk
            chunk = await read_block(self.process.stdout)

    async def finish(self) -> tuple[int, str]:
        """Wait for the program: (exit status, the tail of its stderr)."""
        status = await self.process.wait()
        return status, (await self._errors).decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def close(self) -> None:
        """Kill it if it still runs (idempotent). All but the final wait happens before
        the first ``await``, so it is done even from a task being cancelled."""
        kill(self.process)
        self._errors.cancel()
        await self.process.wait()
