"""How late the manager's event loop runs: a task that sleeps a short interval and
records by how much it woke later than asked.

Anything that holds the loop (blocking I/O, a long computation) shows up as lag:
every handler, probe and heartbeat waits that long too. The figures are read by
``get_service_performance`` (key ``manager``) and by the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
from collections import deque
from typing import Any

INTERVAL = 0.010  # seconds the task sleeps between two samples
WINDOW = 30_000  # samples kept: five minutes at the interval when the loop is free


class LoopMonitor:
    """Samples the event loop's lag (seconds) into a window of the last ``window``
    samples; ``figures`` gives their count, 99th percentile and maximum."""

    def __init__(self, interval: float = INTERVAL, window: int = WINDOW) -> None:
        if interval <= 0 or window < 1:
            raise ValueError("interval must be positive and window at least 1")
        self.interval = interval
        self._samples: deque[float] = deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop (again if stopped)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="loop monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.record(loop.time() - asked)

    def record(self, lag: float) -> None:
        """One sample: how many seconds after the asked time the task woke."""
        self._samples.append(max(0.0, lag))

    def reset(self) -> None:
        """Forget the samples so far: the next figures are of a new window."""
        self._samples.clear()

    def figures(self) -> dict[str, Any]:
        """Count, p99 and maximum of the window's lags, in milliseconds (``None``
        while there is no sample). Only the top 1 % is ordered: a full window costs
        the loop about a millisecond, not a sort."""
        count = len(self._samples)
        figures: dict[str, Any] = {"samples": count, "interval_ms": self.interval * 1000,
                                   "loop_lag_p99_ms": None, "loop_lag_max_ms": None}
        if count:
            # The nearest-rank p99 is the k-th largest sample.
            top = heapq.nlargest(count - math.ceil(0.99 * count) + 1, self._samples)
            figures["loop_lag_p99_ms"] = _ms(top[-1])
            figures["loop_lag_max_ms"] = _ms(top[0])
        return figures


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
