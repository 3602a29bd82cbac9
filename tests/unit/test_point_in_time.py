"""A point in time for restore_node: the time read, the window, the backup chosen."""

from __future__ import annotations

from typing import Any

import pytest

from conpaassql.backup.catalog import BackupRecord
from conpaassql.backup.segments import Segment
from conpaassql.domain.gtid import GtidPosition
from conpaassql.errors import InvalidArgumentError
from conpaassql.manager.point_in_time import choose, parse_time, window

T = 1796637600.0  # 2026-12-07 10:00:00 UTC


def backup(backup_id: str, finished: float, **more: Any) -> BackupRecord:
    fields: dict[str, Any] = {"state": "done", "started": finished - 5, "finished": finished,
                              **more}
    return BackupRecord(backup_id, "full", **fields)


def segment(last_time: int) -> Segment:
    position = GtidPosition.parse("0-1-9")
    return Segment("binlogs/x", 1, "b.000001", 4, 100, position, position, last_time - 1,
                   last_time, 1, float(last_time))


@pytest.mark.parametrize("given", [
    "2026-12-07 10:00:00", "2026-12-07T10:00:00", "2026-12-07T10:00:00Z",
    "2026-12-07T11:00:00+01:00", "1796637600", 1796637600, T])
def test_times_are_read_naive_ones_as_utc(given: str | float) -> None:
    assert parse_time(given) == T


@pytest.mark.parametrize("given", ["yesterday", "", "nan", "-5", "2026-13-07 10:00:00"])
def test_what_is_not_a_time_is_refused(given: str) -> None:
    with pytest.raises(InvalidArgumentError, match="not a time"):
        parse_time(given)


def test_the_latest_backup_finished_within_the_target_second_is_chosen() -> None:
    records = [backup("20261207T095000Z-full-aaaaaa", T - 600.5),
               backup("20261207T095500Z-full-bbbbbb", T + 0.7),
               backup("20261207T095600Z-full-cccccc", T + 1.2),
               backup("20261207T095700Z-full-dddddd", T - 10, state="failed")]
    segments = [segment(int(T) + 30)]
    assert window(records, segments) == (T - 601, T + 30)
    assert choose(records, segments, T).id == "20261207T095500Z-full-bbbbbb"
    assert choose(records, segments, T - 1).id == "20261207T095000Z-full-aaaaaa"
    assert choose(records, segments, T + 30.9).id == "20261207T095600Z-full-cccccc"


@pytest.mark.parametrize("target", [T - 602, T + 31])
def test_a_time_outside_the_window_is_refused_with_it(target: float) -> None:
    records = [backup("20261207T095000Z-full-aaaaaa", T - 600.5)]
    with pytest.raises(InvalidArgumentError) as refused:
        choose(records, [segment(int(T) + 30)], target)
    assert ("restorable from 2026-12-07 09:49:59 UTC to 2026-12-07 10:00:30 UTC"
            in str(refused.value))


def test_without_a_backup_nothing_is_restorable() -> None:
    assert window([], [segment(int(T))]) == (None, None)
    with pytest.raises(InvalidArgumentError, match="restorable from nothing"):
        choose([], [segment(int(T))], T)
