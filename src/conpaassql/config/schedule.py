"""``[backup] schedule``: when backups start on their own, and when the next one is due.

The grammar, UTC, parts separated by commas::

    schedule = part ("," part)*          a ``full`` part, at most one ``incremental``
    part     = kind "every" duration     e.g. ``full every 24h``
             | kind "daily" HH:MM        e.g. ``full daily 03:00``
    kind     = "full" | "incremental"
    duration = a whole number and a unit: s, m, h or d (``90m``, ``1h``, ``2d``)

``full daily 03:00, incremental every 1h``: a full backup each day at 03:00 UTC,
an incremental each hour between. An ``every`` interval counts from the last
backup of its kind (for an incremental, of either kind: a full one restarts its
count); a ``daily`` time is due when no backup of its kind started since the
last such time. A kind never backed up is due at once (an incremental only once
a backup is done). A failed attempt is retried after ``RETRY`` seconds at the
soonest. Everything is decided from the catalog's times, so a restarted manager
goes on where the last one was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

KINDS = ("full", "incremental")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DAY = 86400.0
#: Seconds before a scheduled backup that failed is tried again (at the soonest).
RETRY = 600.0
_PART = re.compile(r"(?P<kind>[a-z]+)\s+(?:every\s+(?P<count>\d+)\s*(?P<unit>[a-z]+)"
                   r"|daily\s+(?P<hour>\d{1,2}):(?P<minute>\d{2}))")


class ScheduleError(ValueError):
    """A schedule that does not parse; its text says why."""


class Started(Protocol):
    """What the schedule reads of a backup record."""

    kind: str
    state: str
    started: float


@dataclass(frozen=True)
class Rule:
    """One part: every ``interval`` seconds, or daily at ``at`` seconds after midnight."""

    interval: float | None = None
    at: float | None = None

    def __str__(self) -> str:
        if self.at is not None:
            return f"daily {int(self.at // 3600):02d}:{int(self.at % 3600 // 60):02d}"
        assert self.interval is not None
        for unit in ("d", "h", "m"):
            if self.interval % UNITS[unit] == 0:
                return f"every {int(self.interval // UNITS[unit])}{unit}"
        return f"every {int(self.interval)}s"

    def due(self, last: float | None, now: float) -> float:
        """When the next backup is due, ``last`` the previous one's start (None: never)."""
        if self.at is not None:
            slot = math.floor((now - self.at) / DAY) * DAY + self.at  # the last slot <= now
            if last is None or last < slot:
                return slot if last is not None else now
            return slot + DAY
        assert self.interval is not None
        return now if last is None else last + self.interval


@dataclass(frozen=True)
class Schedule:
    full: Rule
    incremental: Rule | None = None

    def __str__(self) -> str:
        text = f"full {self.full}"
        return text if self.incremental is None else f"{text}, incremental {self.incremental}"

    def next(self, records: Sequence[Started], now: float) -> tuple[str, float] | None:
        """The next backup, ``(kind, epoch seconds)``; due when the time is <= ``now``.
        A full one due goes first; None when nothing can be scheduled."""
        full = _when(self.full, [r for r in records if r.kind == "full"], now)
        if full <= now or self.incremental is None:
            return "full", full
        if not any(r.state == "done" for r in records):
            return "full", full  # an incremental needs a backup to build on
        incremental = _when(self.incremental, records, now)
        return ("incremental", incremental) if incremental < full else ("full", full)


def _when(rule: Rule, records: Sequence[Started], now: float) -> float:
    """When ``rule`` is next due given these records: from the last one that did not
    fail; a failure postpones it by ``RETRY``."""
    kept = [r.started for r in records if r.state != "failed"]
    failed = [r.started for r in records if r.state == "failed"]
    due = rule.due(max(kept) if kept else None, now)
    if failed and (not kept or max(failed) > max(kept)):
        due = max(due, max(failed) + RETRY)
    return due


def parse_schedule(text: str) -> Schedule:
    """``text`` as a ``Schedule``; ``ScheduleError`` naming what is wrong."""
    rules: dict[str, Rule] = {}
    for raw in text.lower().split(","):
        part = " ".join(raw.split())
        match = _PART.fullmatch(part)
        if match is None:
            raise ScheduleError(f"{part!r} is not '<full|incremental> every <N><s|m|h|d>' "
                                "nor '<full|incremental> daily HH:MM'")
        kind = match["kind"]
        if kind not in KINDS:
            raise ScheduleError(f"{kind!r} is not a kind of backup (full or incremental)")
        if kind in rules:
            raise ScheduleError(f"{kind} is scheduled twice")
        rules[kind] = _rule(match)
    if "full" not in rules:
        raise ScheduleError("a schedule needs a full part (e.g. 'full every 24h')")
    return Schedule(rules["full"], rules.get("incremental"))


def _rule(match: re.Match[str]) -> Rule:
    if match["count"] is not None:
        unit = UNITS.get(match["unit"])
        if unit is None:
            raise ScheduleError(f"{match['unit']!r} is not a unit: s, m, h or d")
        if int(match["count"]) <= 0:
            raise ScheduleError("an interval is at least 1 of its unit")
        return Rule(interval=float(int(match["count"]) * unit))
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise ScheduleError(f"{hour:02d}:{minute:02d} is not a time of day (00:00 to 23:59)")
    return Rule(at=float(hour * 3600 + minute * 60))
