"""The master's lease, as the manager gives it (rules: ``domain.lease``).

Each heartbeat of the master is answered with a lease and the slaves that may
renew it while the manager is away; any other node is told ``{"lease": 0}``. The
manager remembers when it last gave each node a lease, and which slaves it named,
so that a failover through the cloud can wait until the lost master's lease surely
ran out: a lease after the later of its last answer to the master and the last
confirmation any stopped slave may have given (each says on its health port how long
ago that was; a slave stopped by the drain gives none after).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from conpaassql.domain.lease import bounded, promote_after
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import WrongStateError
from conpaassql.manager.views import health_port
from conpaassql.rpc.endpoint import base_url


class Leases:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        #: The node this manager last made the master (None: the store's master).
        self.holder: int | None = None
        self.revoked: set[int] = set()  # lost masters: never renewed again
        self.granted: dict[int, float] = {}  # monotonic time of each node's last lease
        self.lengths: dict[int, float] = {}  # the longest lease each node was given
        self.told: dict[int, tuple[int, ...]] = {}  # the slaves named to each master
        #: A master's lease given by an earlier manager ran out at most a lease after
        #: this one started.
        self.started = time.monotonic()
        #: How the stopped slaves are asked when they last confirmed a lease.
        self.ask: Callable[[Sequence[Node], float], Awaitable[dict[int, float]]] = \
            last_confirmations

    def may_hold(self, node: Node) -> bool:
        if node.id in self.revoked:
            return False
        return node.id == self.holder if self.holder is not None else node.role is Role.MASTER

    def making_master(self, node_id: int) -> None:
        """Before ``set_up_replica_master`` (which gives the node a lease)."""
        self.holder = node_id
        self.revoked.discard(node_id)

    def note_grant(self, node_id: int) -> None:
        self.granted[node_id] = time.monotonic()
        self.lengths[node_id] = max(self.lengths.get(node_id, 0.0), self.seconds)

    def length(self, node_id: int) -> float:
        """The longest lease ``node_id`` may hold from this manager: what a lost master's
        wait is counted with."""
        return max(self.seconds, self.lengths.get(node_id, 0.0))

    def revoke(self, node_id: int) -> int | None:
        """A failover from ``node_id`` begins: its lease is not renewed any more. The
        holder before, for ``restore``."""
        holder = self.holder
        self.revoked.add(node_id)
        if self.holder == node_id:
            self.holder = None
        return holder

    def restore(self, node_id: int, holder: int | None) -> None:
        """A failover from ``node_id`` aborted before another node was made the master:
        its lease is renewed again (else it would fence itself for nothing)."""
        self.revoked.discard(node_id)
        if self.holder is None:
            self.holder = holder

    def answer(self, node: Node, nodes: Iterable[Node]) -> dict[str, Any]:
        """The lease part of the answer to ``node``'s heartbeat."""
        if not self.may_hold(node) or node.ip is None:
            return {"lease": 0}
        slaves = [n for n in nodes if n.id != node.id and n.role is Role.SLAVE
                  and n.state is NodeState.RUNNING and n.ip]
        self.note_grant(node.id)
        self.told[node.id] = tuple(n.id for n in slaves)
        return {"lease": self.seconds,
                "slaves": [f"{n.ip}:{health_port(n)}" for n in slaves],
                "source": f"{node.ip}:{node.mysql_port}"}

    def last_grant(self, node_id: int) -> float:
        return self.granted.get(node_id, self.started)

    def slaves_told(self, node: Node, nodes: Iterable[Node]) -> set[int]:
        """The slaves ``node`` may ask to renew its lease: as last told, else (not told by
        this manager) the store's running slaves."""
        told = self.told.get(node.id)
        if told is not None:
            return set(told)
        return {n.id for n in nodes if n.id != node.id and n.role is Role.SLAVE
                and n.state is NodeState.RUNNING}

    def check_bounded(self, old: Node, stopping: Iterable[int], nodes: Iterable[Node],
                      did: str = "did not stop") -> set[int]:
        """The slaves ``old`` may ask; ``WrongStateError`` unless those of them that are
        ``stopping`` (stopped, or to be drained) leave too few to renew its lease."""
        told = self.slaves_told(old, nodes)
        unconfirmed = told - set(stopping)
        if not bounded(len(told), len(unconfirmed)):
            why = (f"node(s) {', '.join(map(str, sorted(unconfirmed)))} {did} "
                   "replicating from it") if told else "it knew no slave"
            raise WrongStateError(detail=f"node {old.id} may keep its lease while cut off "
                                  f"({why}): not promoting another")
        return told

    def ends_by(self, old: Node, stopped: Mapping[int, float],
                nodes: Iterable[Node]) -> float:
        """When (monotonic) the lease of the lost master ``old`` surely ran out: it could
        be renewed until the manager's last answer to it and, through its slaves, until
        the latest confirmation of the slaves ``stopped`` (node: when it may have given
        its last). ``WrongStateError`` when the slaves that did not stop could renew it
        on their own: there is no end to wait for."""
        told = self.check_bounded(old, stopped.keys(), nodes)
        latest = max((at for node, at in stopped.items() if node in told), default=-math.inf)
        return promote_after(self.last_grant(old.id), latest, self.length(old.id))


async def last_confirmations(nodes: Sequence[Node], stopped_at: float,
                             timeout: float = 1.0) -> dict[int, float]:
    """When (monotonic) each slave, stopped by ``stopped_at``, may have confirmed a
    master's lease last, as its ``/health`` says; ``stopped_at`` for one that does not
    say (after it, its IO thread stopped, it confirms nothing)."""
    async with httpx.AsyncClient(timeout=timeout) as client:
        answers = await asyncio.gather(
            *(client.get(base_url(node.ip or "", health_port(node), https=False) + "health")
              for node in nodes),
            return_exceptions=True)
    received = time.monotonic()  # no earlier than any answer
    found = {}
    for node, answer in zip(nodes, answers, strict=True):
        ago = _confirmed_ago(answer)
        found[node.id] = stopped_at if ago is None else min(stopped_at, received - ago)
    return found


def _confirmed_ago(answer: object) -> float | None:
    if not isinstance(answer, httpx.Response):
        return None
    try:
        value = answer.json().get("confirmed_ago")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        return None
    return float(value)
