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
from conpaassql.protocol.report import LeaseHeld
from conpaassql.rpc.endpoint import base_url


class Leases:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        #: The node this manager last made the master (None: the store's master).
        self.holder: int | None = None
        self.revoked: set[int] = set()  # lost masters: never renewed again
        self.granted: dict[int, float] = {}  # monotonic time of each node's last lease
        self.lengths: dict[int, float] = {}  # the longest lease each node was given
        #: Per master, the slave lists (health ports) it may hold: the one it last said
        #: it holds (``heard``) and each one sent to it since.
        self.lists: dict[int, list[tuple[str, ...]]] = {}
        self.acknowledged: set[int] = set()  # masters that said which list they hold
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
        told = tuple(map(_address, slaves))
        sent = self.lists.setdefault(node.id, [])
        if told not in sent:
            sent.append(told)
        return {"lease": self.seconds, "slaves": list(told),
                "source": f"{node.ip}:{node.mysql_port}"}

    def heard(self, node_id: int, held: LeaseHeld | None) -> None:
        """What a master's heartbeat says its lease holds (before it is answered): the
        lists sent before are out of its reach now."""
        if held is None:
            return
        self.lists[node_id] = [] if held.slaves is None else [tuple(held.slaves)]
        self.acknowledged.add(node_id)
        self.lengths[node_id] = max(self.lengths.get(node_id, 0.0), held.seconds)

    def last_grant(self, node_id: int) -> float:
        return self.granted.get(node_id, self.started)

    def lists_of(self, node: Node, nodes: Iterable[Node]) -> list[tuple[str, ...]]:
        """The slave lists ``node`` may renew its lease with: the one it holds and those
        sent since; not heard from yet (this manager started since), also the store's
        running slaves (an earlier manager may have named them)."""
        lists = list(self.lists.get(node.id, []))
        if node.id not in self.acknowledged:
            lists.append(tuple(_address(n) for n in nodes if n.id != node.id
                               and n.role is Role.SLAVE and n.state is NodeState.RUNNING
                               and n.ip))
        return lists

    def check_bounded(self, old: Node, stopping: Iterable[int], nodes: Iterable[Node],
                      did: str = "did not stop") -> set[str]:
        """The slaves (health ports) ``old`` may ask; ``WrongStateError`` unless, in each
        list it may hold, those ``stopping`` (stopped, or to be drained) leave too few
        to renew its lease."""
        nodes = list(nodes)
        address = {n.id: _address(n) for n in nodes}
        name = {a: str(i) for i, a in address.items()}
        stopped = {address[i] for i in stopping if i in address}
        lists = self.lists_of(old, nodes)
        for told in lists:
            unconfirmed = set(told) - stopped
            if bounded(len(set(told)), len(unconfirmed)):
                continue
            why = (f"node(s) {', '.join(sorted(name.get(a, a) for a in unconfirmed))} "
                   f"{did} replicating from it") if told else "it knew no slave"
            if len(lists) > 1:
                why += " in a list of slaves it may hold (it has not said it holds the last)"
            raise WrongStateError(detail=f"node {old.id} may keep its lease while cut off "
                                  f"({why}): not promoting another")
        return {a for told in lists for a in told}

    def ends_by(self, old: Node, stopped: Mapping[int, float],
                nodes: Iterable[Node]) -> float:
        """When (monotonic) the lease of the lost master ``old`` surely ran out: it could
        be renewed until the manager's last answer to it and, through its slaves, until
        the latest confirmation of the slaves ``stopped`` (node: when it may have given
        its last). ``WrongStateError`` when the slaves that did not stop could renew it
        on their own: there is no end to wait for."""
        nodes = list(nodes)
        told = self.check_bounded(old, stopped.keys(), nodes)
        address = {n.id: _address(n) for n in nodes}
        latest = max((at for node, at in stopped.items() if address.get(node) in told),
                     default=-math.inf)
        return promote_after(self.last_grant(old.id), latest, self.length(old.id))


def _address(node: Node) -> str:
    """A node's health port as a master's lease names it."""
    return f"{node.ip}:{health_port(node)}"


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
