"""The manager's event-loop lag monitor: its figures, its bounded window, a stall it
sees on a real loop, and the figures ``get_service_performance`` gives of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from conpaassql.manager.api import ManagerApi, PerformanceParams
from conpaassql.manager.loop_monitor import LoopMonitor
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.rpc.registry import CallContext
from tests.unit.test_node_service import service


def test_figures_are_the_nearest_rank_p99_and_the_max_in_milliseconds() -> None:
    monitor = LoopMonitor()
    for lag_ms in range(1, 201):  # 1 ms ... 200 ms, in any order
        monitor.record(((lag_ms * 37) % 200 + 1) / 1000)
    figures = monitor.figures()
    assert figures["samples"] == 200
    assert figures["loop_lag_p99_ms"] == 198.0
    assert figures["loop_lag_max_ms"] == 200.0
    assert figures["interval_ms"] == 10.0
    monitor.record(0.0)  # 201 samples: the 199th smallest (ceil(0.99 * 201))
    assert monitor.figures()["loop_lag_p99_ms"] == 198.0
    one = LoopMonitor()
    one.record(0.0125)
    assert one.figures()["loop_lag_p99_ms"] == one.figures()["loop_lag_max_ms"] == 12.5


def test_no_sample_gives_no_figure_and_an_early_wake_counts_as_none() -> None:
    monitor = LoopMonitor()
    assert monitor.figures()["loop_lag_max_ms"] is None
    monitor.record(-0.001)
    assert monitor.figures()["loop_lag_max_ms"] == 0.0


def test_the_window_keeps_the_last_samples_and_a_reset_starts_a_new_one() -> None:
    monitor = LoopMonitor(window=3)
    for lag in (0.5, 0.001, 0.002, 0.003):
        monitor.record(lag)
    assert monitor.figures()["samples"] == 3
    assert monitor.figures()["loop_lag_max_ms"] == 3.0  # the 500 ms one fell out
    monitor.reset()
    assert monitor.figures()["samples"] == 0


@pytest.mark.parametrize(("interval", "window"), [(0.0, 10), (0.01, 0)])
def test_nonsense_settings_are_refused(interval: float, window: int) -> None:
    with pytest.raises(ValueError):
        LoopMonitor(interval, window)


def test_a_blocked_loop_shows_as_lag() -> None:
    async def scenario() -> dict[str, object]:
        monitor = LoopMonitor(interval=0.005)
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # what blocking I/O on the loop does
        await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor.figures()

    figures = asyncio.run(scenario())
    assert isinstance(figures["samples"], int) and figures["samples"] > 1
    # The timer was set at most 5 ms before the block began; it could fire only after.
    assert isinstance(figures["loop_lag_max_ms"], float)
    assert figures["loop_lag_max_ms"] >= 190.0


def test_service_performance_gives_the_window_and_resets_it(tmp_path: Path) -> None:
    nodes, _ = service(tmp_path)
    replication = Replication(nodes)
    monitor = LoopMonitor()
    api = ManagerApi(nodes, Reconciler(nodes.rt, nodes, replication), replication,
                     tmp_path / "manager.log", monitor)
    ctx = CallContext("get_service_performance")
    monitor.record(0.004)
    monitor.record(0.030)

    async def ask(reset: bool) -> dict[str, object]:
        return await api.get_service_performance(PerformanceParams(reset_loop_lag=reset), ctx)

    kept = asyncio.run(ask(False))
    assert kept["nodes"] == [] and kept["unreachable"] == []
    assert kept["manager"] == monitor.figures()
    assert monitor.figures()["loop_lag_max_ms"] == 30.0
    reset = asyncio.run(ask(True))
    assert reset["manager"] == kept["manager"]  # the window that ends
    assert monitor.figures()["samples"] == 0
    assert PerformanceParams.model_validate({"reset_loop_lag": "true"}).reset_loop_lag
