"""The master's lease: when a master may answer ``/primary`` 200, when the manager may
make another node writable after losing it.

The manager renews the lease with each heartbeat it answers; while the manager cannot
be reached, a majority of the slaves the manager last named renew it, each saying it
replicates from the master with its IO thread running. A lease is counted from the
moment the renewal was asked for (the heartbeat sent, the round of questions begun),
so that whoever granted it knows a later moment. A master with no slave keeps its
lease while the manager is away: nobody can be promoted over it.
"""

from __future__ import annotations

import math

#: Seconds a lease lasts: the manager's ``[manager] lease``. 2 s outlives one lost
#: heartbeat (the master beats every third of it) and a slow round of slaves, and
#: keeps the wait of a failover through the cloud short (node-kill target: 5 s).
DEFAULT_LEASE = 2.0
#: Seconds the master's self-fence may take: its agent starts it on a timer the moment
#: the lease runs out (not after a round of questions, each bounded by what is left of
#: the lease), sets ``read_only`` on a connection of its own, and kills mysqld if that
#: is not confirmed this soon. Also how late a renewal or a change of role is seen.
CHECK_INTERVAL = 0.2
#: Seconds the manager adds past a lease and ``CHECK_INTERVAL`` before another node
#: takes writes. By then the old server was read-only or killed: what is left to cover
#: is the timer's lateness on a busy event loop, the SIGKILL's delivery (milliseconds)
#: and the rates of the two hosts' monotonic clocks over one lease (parts per million).
MARGIN = 0.3


def majority(known: int) -> int:
    """Confirmations that renew the lease of a master that knows ``known`` slaves."""
    return known // 2 + 1


def slaves_renew(known: int, confirmed: int) -> bool:
    """Whether ``confirmed`` of the ``known`` slaves renew the lease (with no slave
    at all, nobody can be promoted over the master: it keeps it)."""
    return known == 0 or confirmed >= majority(known)


def ask_slaves(remaining: float, lease: float) -> bool:
    """Whether the master asks its slaves now: the manager did not renew the lease for
    half of it."""
    return remaining <= lease / 2


def heartbeat_period(interval: float, lease: float | None) -> float:
    """Seconds between two heartbeats: three per lease while the node holds one."""
    return interval if lease is None or lease <= 0 else min(interval, lease / 3)


def bounded(known: int, unconfirmed: int) -> bool:
    """Whether a lost master's lease surely ends: the slaves that did not stop (could
    not be drained) are too few to renew it. ``known``: the slaves it was told of."""
    return known > 0 and unconfirmed < majority(known)


def promote_after(last_grant: float, slaves_stopped: float, lease: float,
                  check: float = CHECK_INTERVAL, margin: float = MARGIN) -> float:
    """When the lost master's lease surely ran out and its server is read-only: a
    lease past the later of the last renewal the manager gave and the moment its slaves
    stopped replicating (they could renew it until then), plus the master's check
    interval and a margin."""
    start = max(last_grant, slaves_stopped)
    if not math.isfinite(start):
        return start
    return start + lease + check + margin
