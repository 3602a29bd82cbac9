"""The cloud driver interface: uniform verbs over every cloud.

A driver creates a node from a request carrying the node's context, lists the
nodes of this service that the cloud has, and destroys one. Each driver maps its
cloud's own node states onto ``CloudNodeState``; anything it does not know is
``UNKNOWN``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from conpaassql.context import NodeContext


class CloudNodeState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    TERMINATED = "TERMINATED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class NodeRequest:
    node_id: int
    name: str
    context: NodeContext


@dataclass(frozen=True)
class CloudNode:
    ref: str  # the cloud's id of the node
    node_id: int | None  # our node id, when the cloud's record tells it
    name: str
    ip: str | None
    state: CloudNodeState
    extra: dict[str, Any] = field(default_factory=dict)


class CloudDriver(abc.ABC):
    """What the manager needs of a cloud."""

    #: The cloud's own state names mapped to ours; the rest is UNKNOWN.
    STATE_MAP: ClassVar[Mapping[str, CloudNodeState]] = {}

    def __init__(self, cloud_name: str = "default") -> None:
        self.cloud_name = cloud_name

    @classmethod
    def map_state(cls, raw: object) -> CloudNodeState:
        return cls.STATE_MAP.get(str(raw), CloudNodeState.UNKNOWN)

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Warm-up done once when the manager starts (default: nothing)."""

    @abc.abstractmethod
    async def create_node(self, request: NodeRequest) -> CloudNode:
        """Ask the cloud for a node that boots an agent from ``request.context``."""

    @abc.abstractmethod
    async def list_nodes(self) -> list[CloudNode]:
        """The nodes of this service that the cloud has now."""

    @abc.abstractmethod
    async def destroy_node(self, ref: str) -> None:
        """Destroy the node; destroying a node already gone is not an error."""

    @abc.abstractmethod
    async def reboot_node(self, ref: str) -> None:
        """Power the node off at once (no shutdown: it may be frozen) and boot it again.

        This fences a node the manager cannot reach: whatever it was doing stops
        before another node takes its role; it comes back from its disks with its
        server read-only, as every server boots.
        """

    def describe(self) -> dict[str, Any]:
        return {"cloud": self.cloud_name, "driver": type(self).__name__}
