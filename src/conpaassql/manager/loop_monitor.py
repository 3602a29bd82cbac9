"""How late the manager's event loop runs: a task that sleeps a short interval and
records by how much it woke later than asked.

Anything that holds the loop (blocking I/O, a long computation) shows up as lag:
every handler, probe and heartbeat waits that long too. The figures are read by
``get_service_performance`` (key ``manager``) and by the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Any

INTERVAL = 0.010  # seconds the task sleeps between two samples
WINDOW = 12_000  # samples kept: two minutes at the interval when the loop is free


class LoopMonitor:
    """Samples the event loop's lag (seconds) into a window of the last ``window``
    samples; ``figures`` gives their count, median, 99th percentile and maximum."""

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
        """Count, p50, p99 and maximum of the window's lags, in milliseconds
        (``None`` while there is no sample)."""
        ordered = sorted(self._samples)
        if not ordered:
            return {"samples": 0, "interval_ms": self.interval * 1000,
                    "loop_lag_p50_ms": None, "loop_lag_p99_ms": None,
                    "loop_lag_max_ms": None}
        return {"samples": len(ordered), "interval_ms": self.interval * 1000,
                "loop_lag_p50_ms": _ms(_rank(ordered, 0.50)),
                "loop_lag_p99_ms": _ms(_rank(ordered, 0.99)),
                "loop_lag_max_ms": _ms(ordered[-1])}


def _rank(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile ``share`` of sorted ``ordered``."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
