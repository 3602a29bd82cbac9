"""A point in time for ``restore_node``: the time read, the restorable window, and
the backup to start from.

A backup's data is its GTID position, which mariabackup reads while commits are
held: every transaction in it was committed before the backup finished. So the
backup to start from is the latest done one that finished at or before the target
second (binlog times are whole seconds: a backup finished within the target second
holds nothing committed after it); the archived binlogs bring it from its position
to the end of that second. The window runs from the first done backup's finish to
the later of the last archived commit and the last backup's finish (whole seconds).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from conpaassql.backup.catalog import BackupRecord
from conpaassql.backup.segments import Segment
from conpaassql.errors import InvalidArgumentError

TIME_FORMATS = ("ISO 8601 ('2026-12-07 10:00:00', UTC when no zone is given, or "
                "'2026-12-07T10:00:00+01:00') or epoch seconds")


def parse_time(value: str | float | int) -> float:
    """Epoch seconds from ``value``; a naive ISO 8601 time is UTC."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise InvalidArgumentError("time", detail=f"{text[:60]!r} is not a time: give "
                                           f"{TIME_FORMATS}") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError("time", detail=f"not a time: {value!r}")
    return seconds


def shown(seconds: float | None) -> str:
    if seconds is None:
        return "nothing"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def window(records: list[BackupRecord], segments: list[Segment],
           archived_time: float | None = None) -> tuple[float | None, float | None]:
    """The restorable window, epoch seconds (None, None without a done backup);
    ``archived_time``: the last archived commit's, if ``segments`` are not given."""
    finished = [r.finished for r in records if r.state == "done" and r.finished is not None]
    if not finished:
        return None, None
    archived = [float(s.last_time) for s in segments]
    if archived_time is not None:
        archived.append(archived_time)
    latest = max([*finished, *archived])
    return math.floor(min(finished)), math.floor(latest)


def choose(records: list[BackupRecord], segments: list[Segment],
           target: float, archived_time: float | None = None) -> BackupRecord:
    """The latest done backup whose data is at or before ``target``; refused with
    the window when ``target`` is outside it."""
    start, end = window(records, segments, archived_time)
    if start is None or end is None or not start <= target < end + 1:
        raise InvalidArgumentError("time", detail=f"{shown(target)} is outside the "
                                   f"restorable window: restorable from {shown(start)} to "
                                   f"{shown(end)} (times in UTC)")
    done = [r for r in records if r.state == "done" and r.finished is not None
            and r.finished < math.floor(target) + 1]
    return max(done, key=lambda r: r.finished or 0.0)
