"""Streams through ``zstd`` and the frames, never whole in memory.

Compression is the ``zstd`` program through pipes: it runs beside Python on
another core, a readable file descriptor (``mariabackup``'s stdout) becomes its
stdin with no copy through Python, and on restore its stdout can be a file
descriptor (``mbstream -x``'s stdin). Encryption and hashing run in a worker
thread, a frame batch at a time, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncGenerator, AsyncIterable
from typing import IO, Any

from conpaassql.backup.errors import BackupStoreError, CorruptObjectError
from conpaassql.backup.format import FRAME_SIZE, FrameDecoder, FrameEncoder
from conpaassql.backup.keys import BackupKey
from conpaassql.backup.progress import JobProgress, bytes_read

log = logging.getLogger(__name__)

#: What a put reads: chunks, or a readable file descriptor (or a file object of one).
Source = AsyncIterable[bytes] | int | IO[bytes]
PIPE_LIMIT = 1 << 20
ZSTD_LEVEL = 3


def zstd_program() -> str:
    found = shutil.which("zstd")
    if not found:
        raise BackupStoreError("zstd", detail="the zstd program is not installed")
    return found


async def _start_zstd(args: list[str], stdin: Any, stdout: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        zstd_program(), "-q", "-c", *args, stdin=stdin, stdout=stdout,
        stderr=asyncio.subprocess.PIPE, limit=PIPE_LIMIT)


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Kill zstd and reap it. ``wait()`` returns only once each of its pipes is seen
    closed, and a stdout nobody reads any more (a failed upload) stops being read when
    its buffer is full: it would never see the end. What is left is read and dropped."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    if process.stdout is not None:
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(_drain(process.stdout), CLOSE_WAIT)
    await process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(PIPE_LIMIT):
        pass


async def _zstd_result(process: asyncio.subprocess.Process, what: str) -> str | None:
    """None when zstd ended well; otherwise its first line of complaint."""
    code = await process.wait()
    if code == 0:
        return None
    assert process.stderr is not None
    text = (await process.stderr.read(4096)).decode("utf-8", "replace").strip()
    return f"zstd {what} failed ({code}): {text.splitlines()[0] if text else 'no message'}"


#: Seconds a pipe to a stopped tool may take to close: its end is then dropped.
CLOSE_WAIT = 5.0


async def _feed(stdin: asyncio.StreamWriter, chunks: AsyncIterable[bytes],
                progress: JobProgress | None = None) -> None:
    finished = False
    try:
        async for chunk in chunks:
            if progress is not None:
                progress.bytes += len(chunk)
            stdin.write(chunk)
            await stdin.drain()
        finished = True
    finally:
        if finished:
            stdin.close()
        else:  # cut short: what is buffered for the tool is dropped, not flushed
            stdin.transport.abort()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(stdin.wait_closed(), CLOSE_WAIT)


def _descriptor(source: Source) -> int | None:
    if isinstance(source, int):
        return source
    fileno = getattr(source, "fileno", None)
    return fileno() if callable(fileno) else None


async def encode(source: Source, key: BackupKey, name: str, level: int = ZSTD_LEVEL,
                 progress: JobProgress | None = None
                 ) -> AsyncGenerator[tuple[bytes, FrameEncoder], None]:
    """The stored bytes of ``source`` in blocks of about a frame, each with the encoder
    (its ``digest`` and ``size`` are complete after the last block). ``progress``
    counts the bytes read of ``source`` and the stored bytes yielded."""
    descriptor = _descriptor(source)
    process = await _start_zstd([f"-{level}"],
                                descriptor if descriptor is not None else asyncio.subprocess.PIPE,
                                asyncio.subprocess.PIPE)
    feeder = None
    if descriptor is None:
        assert process.stdin is not None and not isinstance(source, int)
        feeder = asyncio.create_task(
            _feed(process.stdin, source, progress))  # type: ignore[arg-type]
    elif progress is not None:  # zstd reads the descriptor itself
        progress.sampler = lambda: bytes_read(process.pid)
    encoder = FrameEncoder(key, name)
    try:
        if progress is not None:
            progress.stored += len(encoder.header)
        yield encoder.header, encoder
        assert process.stdout is not None
        pending = bytearray()
        while data := await process.stdout.read(PIPE_LIMIT):
            pending += data
            if len(pending) > FRAME_SIZE:
                block = bytes(pending)
                pending.clear()
                out = await asyncio.to_thread(encoder.update, block)
                if progress is not None:
                    progress.stored += len(out)
                yield out, encoder
            if feeder is not None and feeder.done() and feeder.exception():
                break
        if feeder is not None:
            await feeder
        failure = await _zstd_result(process, "compression")
        if failure:
            raise BackupStoreError(name, detail=failure)
        block = bytes(pending)
        out = await asyncio.to_thread(lambda: encoder.update(block) + encoder.finish())
        if progress is not None:
            progress.sample()
            progress.sampler = None
            progress.stored += len(out)
        yield out, encoder
    finally:
        if progress is not None:
            progress.sampler = None
        if feeder is not None and not feeder.done():
            feeder.cancel()
        await _stop(process)
        if feeder is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(feeder, CLOSE_WAIT)


async def _decrypt_into(stdin: asyncio.StreamWriter, stored: AsyncGenerator[bytes, None],
                        decoder: FrameDecoder, sha256: str, size: int,
                        progress: JobProgress | None) -> None:
    """Authenticated bytes only go on to zstd; the whole object's checksum is checked
    at its end. ``progress`` counts the stored bytes read."""
    try:
        async with contextlib.aclosing(stored) as blocks:
            async for block in blocks:
                if progress is not None:
                    progress.bytes += len(block)
                plain = await asyncio.to_thread(decoder.update, block)
                if plain:
                    stdin.write(plain)
                    await stdin.drain()
        decoder.finish()
        check_whole(decoder, sha256, size)
    finally:
        stdin.close()
        with contextlib.suppress(ConnectionError):
            await stdin.wait_closed()


def check_whole(decoder: FrameDecoder, sha256: str, size: int) -> None:
    """The bytes read were the ones recorded at the put."""
    if decoder.size != size:
        raise decoder.corrupt(f"{decoder.size} bytes read, {size} recorded")
    if decoder.digest.hexdigest() != sha256:
        raise decoder.corrupt("its sha256 differs from the one recorded")


class Decoding:
    """One object read back: ``chunks()`` yields its bytes, or ``into`` a descriptor."""

    def __init__(self, stored: AsyncGenerator[bytes, None], key: BackupKey, name: str,
                 sha256: str, size: int, progress: JobProgress | None = None) -> None:
        self._stored = stored
        self._progress = progress
        self._decoder = FrameDecoder(key, name)
        self._sha256 = sha256
        self._size = size
        self.name = name

    async def chunks(self, into: int | None = None) -> AsyncGenerator[bytes, None]:
        """The original bytes (none when ``into`` is given: they go to that descriptor).
        It raises ``CorruptObjectError`` at the first bad frame, and at the end if the
        object is cut short or its checksum differs: until then the bytes are partial."""
        process = await _start_zstd(["-d"], asyncio.subprocess.PIPE,
                                    into if into is not None else asyncio.subprocess.PIPE)
        assert process.stdin is not None
        feeder = asyncio.create_task(_decrypt_into(process.stdin, self._stored,
                                                   self._decoder, self._sha256, self._size,
                                                   self._progress))
        feeder.add_done_callback(lambda task: _kill_on_failure(task, process))
        try:
            if process.stdout is not None:
                while data := await process.stdout.read(PIPE_LIMIT):
                    yield data
            await feeder
            failure = await _zstd_result(process, "decompression")
            if failure:
                raise CorruptObjectError(self.name, detail=failure)
        finally:
            if not feeder.done():
                feeder.cancel()
            await _stop(process)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder


def _kill_on_failure(task: asyncio.Task[None], process: asyncio.subprocess.Process) -> None:
    """A refused frame stops zstd at once: no more bytes flow out of it."""
    if not task.cancelled() and task.exception() is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
