"""Copying the master into a node that is to become its slave, one copy at a time.

The copy is physical, streamed from the master's agent to the node's with the
manager's grant for that pair; the node then replicates from the copy's GTID
position. It runs in the background: the reconcile loop, ``reseed`` and the
configuration's rolling restart only ask whether one is under way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.manager.service import NodeService
from conpaassql.protocol.agent import CopyMethod, SeedRequest
from conpaassql.rpc.grants import make_grant

SEED_TIMEOUT = 3600.0

#: Makes a node replicate from the master at a GTID position (``Replication``'s).
PointAtMaster = Callable[[Node, str | None], Awaitable[None]]


class Seeder:
    def __init__(self, nodes: NodeService, topology_lock: asyncio.Lock,
                 point_at_master: PointAtMaster) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self.topology_lock = topology_lock
        self.point_at_master = point_at_master
        self._copying: set[int] = set()

    @property
    def copying(self) -> frozenset[int]:
        return frozenset(self._copying)

    def start(self, node_id: int, why: str) -> bool:
        """Copy the master into the node in the background; False if a copy runs."""
        if self._copying:
            return False
        self._copying.add(node_id)
        self.nodes.spawn(self._seed(node_id, why), f"seed node {node_id}")
        return True

    async def _seed(self, node_id: int, why: str) -> None:
        """Copy the master into the node, then make it replicate from the copy's
        position (under the topology lock, and only if the master is still the one
        copied)."""
        try:
            master = self.nodes.master()
            node = self.nodes.node(node_id)
            if master is None or master.agent_url is None:
                raise WrongStateError(detail="no master to copy")
            self.rt.store.record_event(f"node {node_id}: {why}: copying node {master.id}",
                                       node_id)
            started = time.monotonic()
            answer = await self.rt.agents.seed_from(node, SeedRequest(
                source=master.agent_url, method=cast(CopyMethod, self.rt.config.seed_method),
                grant=make_grant(self.rt.authority.grant_key, master.id, node.id,
                                 node.ip or "")), timeout=SEED_TIMEOUT)
            async with self.topology_lock:
                current = self.nodes.master()
                if current is None or current.id != master.id:
                    raise WrongStateError(detail="the master changed during the copy")
                await self.point_at_master(node, answer.gtid_position)
            self.rt.store.record_event(
                f"node {node_id} is a slave of node {master.id} (copy of "
                f"{answer.bytes} bytes in {time.monotonic() - started:.1f} s, "
                f"{answer.method})",
                node_id)
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"node {node_id}: copying the master failed: "
                                       f"{str(exc)[:300]}", node_id)
            raise
        finally:
            self._copying.discard(node_id)

    def reseed(self, node_id: int) -> dict[str, Any]:
        """Make ``node_id`` a slave of the master from a fresh copy of it."""
        node = self.nodes.node(node_id)
        master = self.nodes.master()
        if master is not None and master.id == node_id:
            raise WrongStateError(detail=f"node {node_id} is the master: use "
                                  "set_up_replica_master on another node first")
        if node.state is not NodeState.RUNNING:
            raise WrongStateError(detail=f"node {node_id} is {node.state}, not RUNNING")
        if self._copying:
            raise BusyError(detail=f"busy: node {', '.join(map(str, self._copying))} is "
                            "being copied")
        self.start(node_id, "asked to become a slave")
        return {"serviceNode": node_id, "state": "copying the master"}
