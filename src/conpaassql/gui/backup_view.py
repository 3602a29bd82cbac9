"""The Backups page's picture: ``list_backups`` and ``get_service_info``'s ``backup``
part shaped for the template (no I/O here). Times are shown in UTC, as the restore
form takes them.

The timeline is drawn server-side as a small SVG: each backup a bar from its start
to its end (full backups on the upper lane, incrementals below), a line from each
incremental to its parent, and the restorable window as a band under them. Each
backup's ``verified`` (``verify_backup``'s result) is put in words; fields a newer
manager adds to a backup are kept in ``extra``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conpaassql.rpc.units import human_bytes

WIDTH = 1000.0
#: lane -> (top, height) of its bars
LANES = {"full": (8.0, 30.0), "incremental": (50.0, 18.0)}
WINDOW_Y, WINDOW_H = 80.0, 10.0
HEIGHT = 96.0
MIN_BAR = 3.0
KNOWN = ("id", "kind", "state", "started", "finished", "gtid", "bytes", "node", "parent",
         "verified", "progress")


@dataclass(frozen=True)
class Progress:
    """How far a running backup or restore has got (the manager's ``progress``)."""

    phase: str
    done: int
    expected: int | None  # None: unknown (an incremental backup)

    @property
    def percent(self) -> int | None:
        if not self.expected:
            return None
        return min(100, self.done * 100 // self.expected)

    def text(self) -> str:
        amount = human_bytes(self.done)
        if self.expected:
            amount += f" of {human_bytes(max(self.done, self.expected))} ({self.percent}%)"
        return f"{self.phase}, {amount}" if self.phase else amount


def progress_of(value: object) -> Progress | None:
    """``progress`` as ``list_backups`` or ``get_node_info`` shows it, or None."""
    if not isinstance(value, Mapping):
        return None
    done, expected = value.get("bytes"), value.get("expected")
    return Progress(str(value.get("phase") or ""),
                    done if isinstance(done, int) and done > 0 else 0,
                    expected if isinstance(expected, int) and expected > 0 else None)


def utc(at: object, *, seconds: bool = True) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` UTC ("" when not a time)."""
    if not isinstance(at, int | float) or isinstance(at, bool):
        return ""
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(at, UTC).strftime(shape)


def picker(at: object) -> str:
    """Epoch seconds as a ``datetime-local`` value in UTC ("" when not a time)."""
    if not isinstance(at, int | float) or isinstance(at, bool):
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def duration(seconds: object) -> str:
    """A short duration: ``45 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return ""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@dataclass(frozen=True)
class Verification:
    """A backup's verification in words: ``state`` is ``none``, ``running``, ``ok`` or
    ``failed``."""

    state: str
    text: str

    @property
    def settled(self) -> bool:
        return self.state != "running"


NOT_VERIFIED = Verification("none", "not verified")


def verification(value: object) -> Verification:
    """``list_backups``' ``verified`` (None, running, or the result kept)."""
    if not isinstance(value, Mapping):
        return NOT_VERIFIED
    node = value.get("node")
    on = f" on node {node}" if node else ""
    when = utc(value.get("at"))
    if value.get("state") == "running":
        return Verification("running", f"verifying{on}" + (f" since {when} UTC" if when
                                                             else ""))
    at = f" {when} UTC" if when else ""
    if value.get("ok") is True:
        took = duration(value.get("seconds"))
        tables = value.get("tables")
        count = "sound"
        if isinstance(tables, int):
            count = f"{tables} table{'' if tables == 1 else 's'} sound"
        return Verification("ok", f"ok: {count}, verified{at}{on}"
                                  + (f" in {took}" if took else ""))
    error = " ".join(str(value.get("error") or "no reason given").split())
    return Verification("failed", f"failed{at}{on}: {error}")


@dataclass
class Backup:
    """One backup as the page shows it."""

    id: str
    kind: str
    state: str
    started: float | None
    finished: float | None
    gtid: str
    bytes: int | None
    node: str
    parent: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    verified: Verification = NOT_VERIFIED
    progress: Progress | None = None  # while it runs, when its agent told

    @property
    def size(self) -> str:
        return "" if self.bytes is None else human_bytes(self.bytes)

    @property
    def when(self) -> str:
        return utc(self.started)

    @property
    def took(self) -> str:
        if self.started is None:
            return ""
        end = self.finished if self.finished is not None else time.time()
        return duration(end - self.started)

    @property
    def restorable(self) -> bool:
        return self.state == "done"

    def title(self) -> str:
        parts = [f"{self.kind} backup {self.id}", self.state]
        if self.size:
            parts.append(self.size)
        if self.node:
            parts.append(f"node {self.node}")
        parts.append(f"started {self.when} UTC")
        if self.parent:
            parts.append(f"on {self.parent}")
        return ", ".join(parts)


def plain(value: object) -> str:
    """A field the page does not know, as short text (a mapping as ``key value, ...``)."""
    if isinstance(value, Mapping):
        return ", ".join(f"{str(k).replace('_', ' ')} {plain(v)}"
                         for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def backups(listed: Mapping[str, Any]) -> list[Backup]:
    """``list_backups``' entries, oldest first, each with its incrementals' ids."""
    found = []
    for entry in listed.get("backups") or []:
        if not isinstance(entry, Mapping) or not entry.get("id"):
            continue
        size = entry.get("bytes")
        parent = entry.get("parent")
        found.append(Backup(
            id=str(entry["id"]), kind=str(entry.get("kind") or "full"),
            state=str(entry.get("state") or "?"), started=_number(entry.get("started")),
            finished=_number(entry.get("finished")), gtid=str(entry.get("gtid") or ""),
            bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
            node=str(entry.get("node") or ""), parent=str(parent) if parent else None,
            extra={k: plain(v) for k, v in entry.items()
                   if k not in KNOWN and v not in (None, "", [], {})},
            verified=verification(entry.get("verified")),
            progress=progress_of(entry.get("progress"))))
    found.sort(key=lambda b: (b.started or 0.0, b.id))
    by_id = {b.id: b for b in found}
    for backup in found:
        if backup.parent in by_id:
            by_id[backup.parent].children.append(backup.id)
    return found


def descendants(backup_id: str, listed: Sequence[Backup]) -> list[str]:
    """The incrementals built on ``backup_id``, directly or not."""
    by_id = {b.id: b for b in listed}
    found: list[str] = []
    todo = list(by_id[backup_id].children) if backup_id in by_id else []
    while todo:
        current = todo.pop(0)
        found.append(current)
        todo.extend(by_id[current].children if current in by_id else [])
    return found


@dataclass(frozen=True)
class Bar:
    id: str
    x: float
    y: float
    width: float
    height: float
    kind: str
    state: str
    title: str


@dataclass(frozen=True)
class Link:
    x1: float
    y1: float
    x2: float
    y2: float
    title: str


@dataclass(frozen=True)
class Timeline:
    """The SVG's shapes in a ``WIDTH`` x ``HEIGHT`` box."""

    bars: list[Bar]
    links: list[Link]
    window: tuple[float, float] | None
    window_title: str
    start: str
    end: str
    width: float = WIDTH
    height: float = HEIGHT


def timeline(listed: Sequence[Backup], restorable: Mapping[str, Any] | None,
             now: float | None = None) -> Timeline | None:
    """The backups and the restorable window on one time axis ending ``now``
    (None without a backup)."""
    dated = [b for b in listed if b.started is not None]
    if not dated:
        return None
    now = time.time() if now is None else now
    window_from = _number((restorable or {}).get("from"))
    window_to = _number((restorable or {}).get("to"))
    start = min([b.started for b in dated if b.started is not None]
                + ([window_from] if window_from is not None else []))
    span = max(now - start, 1.0)

    def x_of(at: float) -> float:
        return round((min(max(at, start), now) - start) / span * WIDTH, 2)

    bars: dict[str, Bar] = {}
    for backup in dated:
        assert backup.started is not None
        x0 = x_of(backup.started)
        x1 = x_of(backup.finished if backup.finished is not None else now)
        top, height = LANES.get(backup.kind, LANES["incremental"])
        width = round(max(x1 - x0, MIN_BAR), 2)
        bars[backup.id] = Bar(backup.id, min(x0, WIDTH - width), top, width, height,
                              backup.kind, backup.state, backup.title())
    links = []
    for backup in dated:
        parent = bars.get(backup.parent or "")
        if parent is None:
            continue
        child = bars[backup.id]
        links.append(Link(parent.x + parent.width, parent.y + parent.height,
                          child.x, child.y, f"{backup.id} is built on {parent.id}"))
    window = None
    title = "nothing restorable yet"
    if window_from is not None and window_to is not None:
        x0, x1 = x_of(window_from), x_of(window_to)
        window = (x0, round(max(x1 - x0, MIN_BAR), 2))
        title = f"restorable from {utc(window_from)} to {utc(window_to)} UTC"
    return Timeline(list(bars.values()), links, window, title, utc(start), utc(now))


@dataclass(frozen=True)
class Archive:
    """How far the binlog archive reaches (``get_service_info``'s ``backup``)."""

    archiving: bool | None
    archived_to: str
    lag: str
    gap: str
    error: str
    extra: dict[str, Any]


ARCHIVE_KNOWN = ("archiving", "node", "archived_to", "archived_gtid", "archive_lag_seconds",
                 "error", "gap")


def _gap(gap: object) -> str:
    if not gap:
        return ""
    if isinstance(gap, Mapping):
        reached = gap.get("archived_to")
        starts = gap.get("binlogs_from")
        words = [str(gap.get("message") or "").strip()]
        if reached is not None or starts is not None:
            words.append(f"archived to {reached or '—'}, the binlogs start after "
                         f"{starts or '—'}")
        return "; ".join(w for w in words if w)
    return str(gap)


def archive(info: Mapping[str, Any]) -> Archive | None:
    """The archive's status, or None when the manager shows none."""
    part = info.get("backup")
    if not isinstance(part, Mapping):
        return None
    archiving = part.get("archiving")
    return Archive(
        archiving=archiving if isinstance(archiving, bool) else None,
        archived_to=utc(part.get("archived_to")),
        lag=duration(part.get("archive_lag_seconds")),
        gap=_gap(part.get("gap")), error=str(part.get("error") or ""),
        extra={k: plain(v) for k, v in part.items()
               if k not in ARCHIVE_KNOWN and v not in (None, "", [], {})})


def restore_text(node: Mapping[str, Any]) -> tuple[bool, bool, str]:
    """A restored node's progress from its ``get_node_info`` record: (settled, ok,
    text)."""
    node_id = node.get("id", "?")
    state = str(node.get("state") or "?")
    restore = node.get("restore") if isinstance(node.get("restore"), Mapping) else {}
    assert isinstance(restore, Mapping)
    phase = str(restore.get("state") or "waiting")
    source = f"backup {restore.get('backup')}" if restore.get("backup") else "its backup"
    if restore.get("time") is not None:
        source = f"{utc(restore.get('time'))} UTC (from {source})"
    # FAILED is not the end: the node's server is down while its data is replaced
    if state in ("TERMINATING", "TERMINATED"):
        return True, False, f"node {node_id} is {state}: its restore of {source} ended"
    if phase == "failed":
        return True, False, f"restoring node {node_id} to {source} failed: " \
                            f"{restore.get('error') or 'see its log'}"
    if phase == "done" and state == "RUNNING":
        return True, True, f"node {node_id} holds {source}: read-only, apart from " \
                           "replication"
    progress = progress_of(restore.get("progress"))
    step = progress.text() if progress else restore.get("phase") or restore.get("step")
    doing = {"waiting": "waiting for the node to run", "running": "restoring",
             "done": "restored, its server starting"}.get(phase, phase)
    return False, False, f"node {node_id} {state}: {doing}" + (f" ({step})" if step else "")
