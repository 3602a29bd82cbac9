"""The master's lease, as the manager gives it (rules: ``domain.lease``).

Each heartbeat of the master is answered with a lease and the slaves that may
renew it while the manager is away; any other node is told ``{"lease": 0}``. The
manager remembers when it last gave each node a lease, and which slaves it named,
so that a failover through the cloud can wait until the lost master's lease surely
ran out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from conpaassql.domain.lease import bounded, promote_after
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import WrongStateError
from conpaassql.manager.views import health_port


class Leases:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        #: The node this manager last made the master (None: the store's master).
        self.holder: int | None = None
        self.revoked: set[int] = set()  # lost masters: never renewed again
        self.granted: dict[int, float] = {}  # monotonic time of each node's last lease
        self.told: dict[int, tuple[int, ...]] = {}  # the slaves named to each master
        #: A master's lease given by an earlier manager ran out at most a lease after
        #: this one started.
        self.started = time.monotonic()

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

    def revoke(self, node_id: int) -> None:
        """A failover from ``node_id`` begins: its lease is not renewed any more."""
        self.revoked.add(node_id)
        if self.holder == node_id:
            self.holder = None

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

    def ends_by(self, old: Node, stopped: set[int], slaves_stopped: float,
                nodes: Iterable[Node]) -> float:
        """When (monotonic) the lease of the lost master ``old`` surely ran out: it could
        be renewed until the manager's last answer to it and, through its slaves, until
        the slaves ``stopped`` stopped replicating (at ``slaves_stopped``).
        ``WrongStateError`` when the slaves that did not stop could renew it on their own:
        there is no end to wait for."""
        told = self.slaves_told(old, nodes)
        unconfirmed = told - stopped
        if not bounded(len(told), len(unconfirmed)):
            why = (f"node(s) {', '.join(map(str, sorted(unconfirmed)))} did not stop "
                   "replicating from it") if told else "it knew no slave"
            raise WrongStateError(detail=f"node {old.id} may keep its lease while cut off "
                                  f"({why}): not promoting another")
        return promote_after(self.last_grant(old.id), slaves_stopped, self.seconds)
