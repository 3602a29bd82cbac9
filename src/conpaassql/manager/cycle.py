"""What one reconcile cycle decides from and what it returns.

A cycle takes one frozen ``Snapshot`` (Patroni's ``Cluster``): the nodes as the
store had them (read once), this cycle's probes, what agents told since the last
cycle, the probe failures, the clouds' listing. Deciding reads the snapshot only; acting writes
to the store and the agents. Each finding's handler returns an ``Outcome``; the
cycle's ``CycleResult`` tells them in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from conpaassql.domain.diagnosis import Situation
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState
from conpaassql.domain.topology import Topology
from conpaassql.manager.cloud_watch import CloudView, Listing
from conpaassql.protocol.report import StateReport


def frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only copy (of nothing: an empty mapping)."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Snapshot:
    """The service as one cycle sees it; never changes once taken."""

    at: float  # wall clock when it was taken
    nodes: tuple[Node, ...]  # every node, terminated ones included, by id
    #: This cycle's probe of each probed node: its report, None if it did not answer.
    probes: Mapping[int, StateReport | None] = field(default_factory=frozen)
    #: What agents told since the last snapshot (heartbeats, ``get_node_info``).
    heard: Mapping[int, StateReport] = field(default_factory=frozen)
    failures: Mapping[int, int] = field(default_factory=frozen)  # consecutive failed probes
    #: Consecutive probes its agent answered and its mysqld did not.
    silent: Mapping[int, int] = field(default_factory=frozen)
    listing: Listing | None = None  # the clouds' lists, when one finished since last cycle
    creating: frozenset[int] = frozenset()  # asked of their cloud, no answer yet
    seeding: frozenset[int] = frozenset()  # being copied from the master
    _by_id: Mapping[int, Node] = field(default_factory=frozen, init=False, repr=False,
                                         compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", MappingProxyType({n.id: n for n in self.nodes}))

    def with_nodes(self, changed: Mapping[int, Node]) -> Snapshot:
        """The same snapshot with the nodes the cycle itself changed (moved, or
        completed from the cloud's list) as it changed them."""
        if not changed:
            return self
        return replace(self, nodes=tuple(changed.get(n.id, n) for n in self.nodes))

    def node(self, node_id: int | None) -> Node | None:
        return None if node_id is None else self._by_id.get(node_id)

    @property
    def live(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.state.is_live)

    @property
    def master(self) -> Node | None:
        return next((n for n in self.live if n.role is Role.MASTER), None)

    @property
    def has_slaves(self) -> bool:
        return any(n.role is Role.SLAVE for n in self.live)

    @property
    def replica_hosts(self) -> list[str]:
        """Where slaves connect from: every live node (any may be a slave), at its
        address and wherever it said its connections come from."""
        return sorted({n.ip for n in self.live if n.ip} |
                      {str(n.details["source_address"]) for n in self.live
                       if n.details.get("source_address")})

    def cloud_view(self, node: Node) -> CloudView:
        if self.listing is None:
            return CloudView(None)
        return self.listing.view(node, node.id in self.creating)

    def report(self, node_id: int) -> StateReport | None:
        """What its agent said this cycle: the probe's answer, else what it told since
        the last cycle (an agent that reaches the manager may not be reached by it)."""
        probe = self.probes.get(node_id)
        return probe if probe is not None else self.heard.get(node_id)

    def in_state(self, *states: NodeState) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.state in states)


class Act(StrEnum):
    """What a handler did about a finding."""

    NONE = "nothing to do"
    HOLD = "held"  # something is off, and acting now would be wrong
    MOVE = "state moved"
    ELECT = "master elected"
    FAILOVER = "failed over"
    MAKE_WRITABLE = "master made writable"
    SEED = "copying the master"
    RESTART = "restarted as a slave"
    REPOINT = "repointed at the master"
    SYNC_HOSTS = "replication account synced"
    CONFIGURE = "server configuration given"
    FAILED = "acting failed"

    @property
    def shown(self) -> bool:
        """Told in the cycle's one-line result (what was done, or failed)."""
        return self not in (Act.NONE, Act.HOLD)


@dataclass(frozen=True)
class Outcome:
    """What came of one finding of one cycle."""

    situation: Situation | Topology | None  # None: the cycle as a whole
    node: int | None
    action: Act
    message: str
    #: The node as this handler left it (a state move), for the rest of the cycle.
    moved: Node | None = field(default=None, compare=False, repr=False)

    @classmethod
    def nothing(cls, situation: Situation | Topology, node: int | None) -> Outcome:
        return cls(situation, node, Act.NONE, situation.value)

    @classmethod
    def held(cls, situation: Situation | Topology | None, node: int | None,
             why: str) -> Outcome:
        prefix = "" if node is None else f"node {node}: "
        return cls(situation, node, Act.HOLD, f"{prefix}held: {why}")


@dataclass(frozen=True)
class CycleResult:
    """One cycle's outcomes and the service as the cycle left it."""

    state: ServiceState
    outcomes: tuple[Outcome, ...]
    counts: tuple[tuple[str, int], ...]  # (node state, how many), by state

    @property
    def line(self) -> str:
        """The one-line result ``get_service_info`` shows as ``last_cycle``."""
        tally = ", ".join(f"{n} {s.lower()}" for s, n in self.counts) or "no nodes"
        done = [o.message for o in self.outcomes if o.action.shown]
        if done:
            return f"{self.state}: " + "; ".join(done) + f" ({tally})"
        return f"{self.state}: no action ({tally})"

    @property
    def held(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.action is Act.HOLD)

    @property
    def log_line(self) -> str:
        """The line logged when it changes: the result, and what is held back."""
        held = "; ".join(o.message for o in self.held)
        return f"{self.line}; {held}" if held else self.line


def tally(nodes: list[Node]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.state.value] = counts.get(node.state.value, 0) + 1
    return tuple(sorted(counts.items()))
