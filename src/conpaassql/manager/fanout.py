"""One stream of chunks read once and given to several consumers at the pace of the slowest.

Used to send one uploaded dump to several nodes at the same time without holding
it: each consumer has a small queue; a consumer that stops reading (its node
failed) is dropped instead of stalling the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

QUEUE_CHUNKS = 8
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class FanOut:
    """``FanOut(source, n).branches`` are ``n`` iterators over the same chunks."""

    def __init__(self, source: AsyncIterator[bytes], count: int) -> None:
        self._source = source
        self._queues: list[asyncio.Queue[Any]] = [asyncio.Queue(QUEUE_CHUNKS)
                                                  for _ in range(count)]
        self._open = [True] * count
        self._pump: asyncio.Task[None] | None = None
        self.branches = [self._branch(index) for index in range(count)]

    async def _run(self) -> None:
        try:
            async for chunk in self._source:
                await self._put_all(chunk)
                if not any(self._open):
                    return
        except Exception as exc:  # noqa: BLE001 - any failure goes to every consumer
            await self._put_all(_Failed(exc))
            return
        await self._put_all(_END)

    async def _put_all(self, item: Any) -> None:
        for index, queue in enumerate(self._queues):
            if self._open[index]:
                await queue.put(item)

    async def _branch(self, index: int) -> AsyncIterator[bytes]:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="fan out")
        queue = self._queues[index]
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            self._open[index] = False
            while not queue.empty():  # unblock the pump if it waits on us
                queue.get_nowait()

    async def aclose(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
