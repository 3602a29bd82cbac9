"""What the clouds say of the service's nodes: their lists, read in the background.

Every ``cloud_list_interval`` each cloud's nodes are listed, in parallel, in a task
of its own, so that a slow or unreachable cloud holds up neither the probes nor a
failover; the reconcile loop takes each finished listing once. A node made after
its listing was asked for, or whose creation is still on its way, is not judged by
it. Nodes the store has finished with but a cloud still has (a crash mid-destroy)
are destroyed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from conpaassql.cloud.base import CloudNode, CloudNodeState
from conpaassql.cloud.clouds import Clouds
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import ConpaasSQLError

log = logging.getLogger(__name__)

#: Seconds a cloud may take to list its nodes before this listing goes without it.
LIST_TIMEOUT = 60.0
#: Where a node's details keep when its cloud first answered for it (wall clock).
IN_CLOUD_SINCE = "in_cloud_since"


def in_cloud_since(node: Node) -> float:
    """When the cloud made the node (when it was asked for, if not known)."""
    since = node.details.get(IN_CLOUD_SINCE)
    return float(since) if isinstance(since, int | float) else node.created_at


@dataclass(frozen=True)
class CloudView:
    """What one listing says of one node."""

    in_cloud: bool | None  # None: this listing cannot tell
    running: bool = False
    record: CloudNode | None = None


@dataclass(frozen=True)
class Listing:
    started: float  # wall-clock time the lists were asked for
    clouds: dict[str, dict[str, CloudNode]]  # cloud -> its ref -> node; absent: no answer

    def view(self, node: Node, creating: bool) -> CloudView:
        listed = self.clouds.get(node.cloud)
        if listed is None or creating:
            return CloudView(None)
        record = find(node, listed)
        if record is None or record.state is CloudNodeState.TERMINATED:
            if in_cloud_since(node) >= self.started:
                return CloudView(None)  # made after this listing was asked for
            return CloudView(False, record=record)
        return CloudView(True, record.state is CloudNodeState.RUNNING, record)


def find(node: Node, listed: dict[str, CloudNode]) -> CloudNode | None:
    if node.cloud_ref and node.cloud_ref in listed:
        return listed[node.cloud_ref]
    return next((item for item in listed.values() if item.node_id == node.id), None)


Spawn = Callable[[Coroutine[Any, Any, Any], str], None]


class CloudWatch:
    """Lists the service's clouds in the background, one listing at a time."""

    def __init__(self, clouds: Clouds, interval: float, spawn: Spawn,
                 timeout: float = LIST_TIMEOUT) -> None:
        self.clouds = clouds
        self.interval = interval
        self.timeout = timeout
        self._spawn = spawn
        self._task: asyncio.Task[Listing] | None = None
        self._last_start = 0.0  # monotonic
        self._destroying: set[tuple[str, str]] = set()

    def take(self) -> Listing | None:
        """A listing that finished since the last call (once); starts the next when due."""
        finished = None
        if self._task is not None and self._task.done():
            task, self._task = self._task, None
            if not task.cancelled():
                finished = task.result()
        now = time.monotonic()
        if self._task is None and (not self._last_start or
                                   now - self._last_start >= self.interval):
            self._last_start = now
            self._task = asyncio.create_task(self._list(), name="list the clouds")
        return finished

    async def _list(self) -> Listing:
        started = time.time()
        drivers = list(self.clouds)
        answers = await asyncio.gather(
            *(asyncio.wait_for(driver.list_nodes(), self.timeout) for driver in drivers),
            return_exceptions=True)
        clouds: dict[str, dict[str, CloudNode]] = {}
        for driver, answer in zip(drivers, answers, strict=True):
            name = driver.cloud_name
            if isinstance(answer, ConpaasSQLError):
                log.warning("cannot list the nodes of cloud %s: %s", name, answer)
            elif isinstance(answer, TimeoutError):
                log.warning("cloud %s did not list its nodes in %.0f s", name, self.timeout)
            elif isinstance(answer, BaseException):
                log.error("listing the nodes of cloud %s failed", name, exc_info=answer)
            else:
                clouds[name] = {node.ref: node for node in answer}
        return Listing(started, clouds)

    def destroy_leftovers(self, listing: Listing, known: dict[int, Node]) -> None:
        """Destroy, in the background, what a cloud still has of nodes the store has
        finished with (once at a time per node)."""
        for cloud_name, listed in listing.clouds.items():
            for item in listed.values():
                node = known.get(item.node_id) if item.node_id is not None else None
                key = (cloud_name, item.ref)
                if node is None or node.state is not NodeState.TERMINATED or \
                        item.state is CloudNodeState.TERMINATED or key in self._destroying:
                    continue
                log.info("destroying leftover node %s of cloud %s (terminated node %s)",
                         item.ref, cloud_name, node.id)
                self._destroying.add(key)
                self._spawn(self._destroy(key), f"destroy leftover {item.ref}")

    async def _destroy(self, key: tuple[str, str]) -> None:
        cloud_name, ref = key
        try:
            await self.clouds.get(cloud_name).destroy_node(ref)
        except ConpaasSQLError as exc:
            log.warning("could not destroy leftover %s of cloud %s: %s", ref, cloud_name, exc)
        finally:
            self._destroying.discard(key)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
