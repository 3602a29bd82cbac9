"""The history's words for a failover and a switchover once done, and how they are read
back: ``/metrics`` counts them from the history, so that its counters survive a restart
of the manager. Written and read here only, so the two cannot drift apart."""

from __future__ import annotations

import re

#: The entries, as ``LIKE`` patterns of the store's ``events_since``.
FAILOVER_DONE = "failover: node % is the master (was node %"
SWITCHOVER_DONE = "switchover: node % is the master (was node %"
_RESUMED = re.compile(r"writes resumed after ([0-9.]+) s")


def failover_done(master: int, lost: int, reason: str, seconds: float) -> str:
    return (f"failover: node {master} is the master (was node {lost}: {reason}); "
            f"writes resumed after {seconds:.2f} s")


def switchover_done(master: int, previous: int, blocked: float) -> str:
    return (f"switchover: node {master} is the master (was node {previous}); "
            f"writes blocked for {blocked:.3f} s")


def is_failover(message: str) -> bool:
    return message.startswith("failover")


def failover_seconds(message: str) -> float | None:
    """How long writes stopped, as ``failover_done`` wrote it."""
    found = _RESUMED.search(message)
    return float(found.group(1)) if found else None
