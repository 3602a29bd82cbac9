"""The service's history as a timeline: each entry classified, and the service's
states as bands over time, from ``get_service_history`` (no I/O here)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: kind -> (label shown, one-character mark)
KINDS: dict[str, tuple[str, str]] = {
    "failover": ("failover", "!"),
    "switchover": ("switchover", "⇄"),
    "added": ("node added", "+"),
    "removed": ("node removed", "\u2212"),  # minus sign
    "lost": ("node lost", "?"),
    "replaced": ("node replaced", "↻"),
    "master": ("master elected", "★"),
    "failed": ("node failed", "✕"),
    "service": ("service state", "●"),
    "node": ("node state", "○"),
    "data": ("data", "⇣"),
    "event": ("event", "·"),
}
#: Kinds drawn as ticks on the state band.
MARKED = ("failover", "switchover", "added", "removed", "lost", "replaced", "failed")
BAND_WIDTH = 1000.0


@dataclass(frozen=True)
class Event:
    at: float
    time: str
    kind: str
    message: str
    node: int | None
    from_state: str | None
    to_state: str | None

    @property
    def label(self) -> str:
        return KINDS[self.kind][0]

    @property
    def mark(self) -> str:
        return KINDS[self.kind][1]


@dataclass(frozen=True)
class Segment:
    """A span of one service state on the band (x and width in band units)."""

    x: float
    width: float
    state: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    kind: str
    title: str


@dataclass(frozen=True)
class Band:
    segments: list[Segment]
    ticks: list[Tick]
    start: str
    end: str


@dataclass(frozen=True)
class Pattern:
    """How the manager words one kind of history entry: its subject and the state it
    moves to (``None``: any; ``ANY_STATE``: some state), and a regular expression its
    message matches from its start."""

    kind: str
    message: str | None = None
    subject: str | None = None
    to: tuple[str, ...] | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        if self.subject is not None and entry.get("subject") != self.subject:
            return False
        to_state = entry.get("to")
        if self.to == ANY_STATE:
            if to_state is None:
                return False
        elif self.to is not None and to_state not in self.to:
            return False
        return self.message is None or \
            re.match(self.message, str(entry.get("message", ""))) is not None


ANY_STATE = ("*",)
_NODE = r"node \d+"
_LOST = rf"{_NODE} was lost by cloud .+; "
#: The manager's wordings, the first that matches an entry giving its kind (else
#: "event"). tests/unit/test_gui_timeline.py holds the manager's texts for each.
PATTERNS: tuple[Pattern, ...] = (
    # "failover: master node 1 lost (...)" (the service), "failover: node 1 fenced
    # (...)", "failover: node 2 is the master (was node 1: ...); writes resumed ..."
    Pattern("failover", r"failover: "),
    # "switchover to node 2" (the service), "switchover: node 2 is the master ..."
    Pattern("switchover", rf"switchover(: | to {_NODE}$)"),
    Pattern("replaced", rf"{_LOST}{_NODE} replaces it$"),
    Pattern("lost", rf"{_LOST}(not replaced: |replacing it failed: )"),
    Pattern("added", subject="node", to=("PENDING",)),
    Pattern("removed", subject="node", to=("TERMINATING", "TERMINATED")),
    Pattern("failed", subject="node", to=("FAILED",)),
    Pattern("master", rf"{_NODE} is the master$"),
    # "dump of 3145728 bytes loaded into node 1", "load_dump into node 1 failed: ...";
    # a dump sent straight to the node is told by its agent: "node 1: dump of ...";
    # "dump account opened on node 2 for shop" (for a client's own mariadb-dump)
    Pattern("data", rf"({_NODE}: )?(dump of \S+ bytes loaded into {_NODE}$|"
                    rf"(load_dump|send_mysqldump) into {_NODE} failed: |"
                    rf"dump account opened on {_NODE} for )"),
    Pattern("service", subject="service", to=ANY_STATE),
    Pattern("node", to=ANY_STATE),
)


def classify(entry: Mapping[str, Any]) -> str:
    """The kind of one history entry, from its subject, states and message."""
    return next((p.kind for p in PATTERNS if p.matches(entry)), "event")


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def events(history: Iterable[Mapping[str, Any]]) -> list[Event]:
    """The entries as events, newest first."""
    found = []
    for entry in history:
        at = float(entry.get("at") or 0.0)
        node = entry.get("node")
        found.append(Event(at, _when(at), classify(entry), str(entry.get("message", "")),
                           node if isinstance(node, int) else None,
                           entry.get("from"), entry.get("to")))
    found.sort(key=lambda event: event.at, reverse=True)
    return found


def band(history: Sequence[Mapping[str, Any]], now: float | None = None) -> Band | None:
    """The service's states from the first entry to ``now``, and ticks for the
    failovers, switchovers and nodes added or removed (None without history)."""
    if not history:
        return None
    now = time.time() if now is None else now
    ordered = sorted(history, key=lambda entry: float(entry.get("at") or 0.0))
    start = float(ordered[0].get("at") or now)
    span = max(now - start, 1e-6)

    def x_of(at: float) -> float:
        return round((min(max(at, start), now) - start) / span * BAND_WIDTH, 2)

    changes = [(float(e.get("at") or start), str(e["to"])) for e in ordered
               if e.get("subject") == "service" and e.get("to")]
    first = ordered[0]
    state = str(first.get("from") or first.get("to") or "INIT") \
        if first.get("subject") == "service" else "INIT"
    segments = []
    since = start
    for at, new in changes:
        if at > since:
            segments.append(_segment(x_of(since), x_of(at), state, since, at))
        state, since = new, at
    segments.append(_segment(x_of(since), BAND_WIDTH, state, since, now))
    ticks = [Tick(x_of(event.at), event.kind, f"{event.time} {event.message}")
             for event in events(ordered) if event.kind in MARKED]
    return Band(segments, ticks, _when(start), _when(now))


def _segment(x0: float, x1: float, state: str, since: float, until: float) -> Segment:
    return Segment(x0, max(x1 - x0, 0.5), state, f"{state} from {_when(since)} to "
                   f"{_when(until)}")
