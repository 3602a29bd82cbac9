"""Streams for the backup stores' tests and benchmark: incompressible bytes made
as they are read (never whole in memory) with the sha256 of what was made, and a
reader that keeps only the sha256 and size of what comes back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from conpaassql.backup.store import BackupStore

MIB = 1 << 20


@dataclass
class Generated:
    """``chunks()`` yields ``total`` random bytes; ``digest`` is theirs once read."""

    total: int
    chunk: int = MIB
    fail_after: int | None = None  # raise once this many bytes were given
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    given: int = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while self.given < self.total:
            if self.fail_after is not None and self.given >= self.fail_after:
                raise OSError("the source failed mid-way")
            block = os.urandom(min(self.chunk, self.total - self.given))
            self.digest.update(block)
            self.given += len(block)
            yield block

    def to_pipe(self) -> int:
        """A pipe's read end, written to by a thread (a producer such as mariabackup)."""
        read, write = os.pipe()

        def produce() -> None:
            try:
                while self.given < self.total:
                    block = os.urandom(min(self.chunk, self.total - self.given))
                    self.digest.update(block)
                    self.given += len(block)
                    os.write(write, block)
            finally:
                os.close(write)
        threading.Thread(target=produce, daemon=True).start()
        return read


async def read_back(store: BackupStore, key: str) -> tuple[str, int]:
    """The sha256 and size of the object's original bytes, read as a stream."""
    digest, size = hashlib.sha256(), 0
    async for chunk in store.get(key):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


async def read_back_from_pipe(store: BackupStore, key: str) -> tuple[str, int]:
    """The same, through ``get_into`` a pipe read by a thread (a consumer such as
    ``mbstream -x``)."""
    read, write = os.pipe()
    digest, sizes = hashlib.sha256(), [0]

    def consume() -> None:
        with os.fdopen(read, "rb") as stream:
            while block := stream.read(MIB):
                digest.update(block)
                sizes[0] += len(block)
    consumer = asyncio.get_running_loop().run_in_executor(None, consume)
    try:
        await store.get_into(key, write)
    finally:
        os.close(write)
        await consumer
    return digest.hexdigest(), sizes[0]
