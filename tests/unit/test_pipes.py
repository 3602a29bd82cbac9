"""Streams into and out of real programs (sh, cat, head): every byte through, a reader
that stops early, an input that breaks off, a stdio tool's output in blocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conpaassql.mysql.pipes import ToolOutput, block_buffered, gathered, pipe_into

CHUNK = 1 << 20


async def pattern(chunks: int, size: int = CHUNK) -> AsyncIterator[bytes]:
    for index in range(chunks):
        yield bytes([index % 251]) * size


def test_every_byte_goes_through_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    status, errors = asyncio.run(pipe_into(["sh", "-c", f"cat > {out}; echo done >&2"],
                                           pattern(9)))
    assert (status, errors) == (0, "done\n")
    expected = hashlib.sha256(b"".join(bytes([i % 251]) * CHUNK for i in range(9)))
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected.hexdigest()


def test_a_reader_that_stops_early_leaves_the_rest_unread() -> None:
    taken = []

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in pattern(64):
            taken.append(len(chunk))
            yield chunk

    status, errors = asyncio.run(pipe_into(["sh", "-c", "head -c 10 >/dev/null; "
                                            "echo stopped >&2; exit 3"], counted()))
    assert (status, errors) == (3, "stopped\n")
    assert len(taken) < 64


def test_an_input_that_breaks_off_kills_the_program(tmp_path: Path) -> None:
    marker = tmp_path / "finished"

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * CHUNK
        raise ConnectionError("the upload broke off")

    with pytest.raises(ConnectionError):
        asyncio.run(pipe_into(["sh", "-c", f"cat >/dev/null; touch {marker}"], broken()))
    assert not marker.exists()


def test_a_cancelled_feed_while_the_pipe_is_full_ends_and_kills() -> None:
    async def scenario() -> None:
        feeding = asyncio.create_task(pipe_into(["sleep", "30"], pattern(64)))
        await asyncio.sleep(0.5)  # the pipe is full: a write is blocked in its thread
        feeding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(feeding, 10)

    asyncio.run(scenario())


def test_no_descriptor_is_left_open() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        asyncio.run(pipe_into(["cat"], pattern(2)))
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.skipif(shutil.which("stdbuf") is None, reason="no stdbuf")
def test_a_block_buffered_tool_says_all_and_its_status() -> None:
    async def run(args: list[str]) -> tuple[bytes, int]:
        output = await ToolOutput.start(block_buffered(args, 1 << 16))
        text = b"".join([block async for block in output.blocks()])
        return text, (await output.finish())[0]

    expected = "".join(f"{i}\n" for i in range(1, 300001)).encode()
    assert asyncio.run(run(["seq", "300000"])) == (expected, 0)
    assert asyncio.run(run(["sh", "-c", "echo partial; exit 4"])) == (b"partial\n", 4)
    assert block_buffered(["x"], 4096)[1:] == ["-o4096", "x"]


def test_small_chunks_are_gathered_into_blocks(tmp_path: Path) -> None:
    async def sizes() -> list[int]:
        return [len(block) async for block in gathered(pattern(250, 10_000), 64_000)]

    assert asyncio.run(sizes()) == [70_000] * 35 + [50_000]
    out = tmp_path / "out"
    status, _ = asyncio.run(pipe_into(["sh", "-c", f"cat > {out}"], pattern(250, 10_000)))
    assert status == 0
    assert out.read_bytes() == b"".join(bytes([i % 251]) * 10_000 for i in range(250))
