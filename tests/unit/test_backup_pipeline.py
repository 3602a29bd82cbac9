"""The zstd pipes of the backup stores: a stream given up mid-way ends (zstd is
killed and reaped) even when its output was no longer read."""

from __future__ import annotations

import asyncio

from conpaassql.backup import BackupKey
from conpaassql.backup.pipeline import encode
from testbed.streams import MIB, Generated

#: Only a bound on a hang (the close takes milliseconds): not a measure.
HANG = 60.0


def test_an_encode_given_up_mid_way_ends() -> None:
    """As when an upload fails: zstd's output fills the pipe and the stream's buffer,
    whose reading then stops; Python 3.11's ``wait()`` returns only once every pipe
    of the process is seen closed."""

    async def scenario() -> None:
        blocks = encode(Generated(16 * MIB).chunks(), BackupKey.generate(), "given-up")
        header, _ = await anext(blocks)
        assert header
        await asyncio.sleep(1.0)  # zstd compresses on meanwhile, nobody reading it
        await asyncio.wait_for(blocks.aclose(), HANG)

    asyncio.run(scenario())
