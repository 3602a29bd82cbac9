"""Which node each HAProxy server slot holds, and what to change when the list of
nodes changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conpaassql.router.settings import DEFAULT_HEALTH_PORT


@dataclass(frozen=True)
class Target:
    """A node as the router routes to it: its MySQL address and its health port."""

    node_id: int
    ip: str
    port: int
    health_port: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.node_id, "ip": self.ip, "port": self.port,
                "health_port": self.health_port}


def targets_of(records: Iterable[Mapping[str, Any]]) -> dict[int, Target]:
    """The nodes of ``list_nodes``' ``nodes`` records (or of the router's cache) that
    have an address; the health checks tell which of them take connections."""
    found: dict[int, Target] = {}
    for record in records:
        ip = str(record.get("ip") or "")
        if not ip:
            continue
        node_id = int(record["id"])
        found[node_id] = Target(node_id, ip, int(record.get("port") or 3306),
                                int(record.get("health_port") or DEFAULT_HEALTH_PORT))
    return found


@dataclass(frozen=True)
class Plan:
    freed: list[int]  # slots to put in maintenance
    filled: list[tuple[int, Target]]  # slots to point at a node
    left_out: list[Target]  # nodes for which no slot is free


class Slots:
    """Slot numbers 1..count, each empty or holding one node."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.held: dict[int, Target] = {}  # slot -> node

    def plan(self, targets: Mapping[int, Target]) -> Plan:
        """Free the slots of nodes gone or moved, fill free slots with new nodes."""
        freed = [slot for slot, target in self.held.items()
                 if targets.get(target.node_id) != target]
        kept = {target.node_id for slot, target in self.held.items() if slot not in freed}
        free = [slot for slot in range(1, self.count + 1)
                if slot not in self.held or slot in freed]
        new = [target for node_id, target in sorted(targets.items()) if node_id not in kept]
        filled = list(zip(free, new, strict=False))
        return Plan(sorted(freed), filled, new[len(filled):])

    def apply(self, plan: Plan) -> None:
        for slot in plan.freed:
            self.held.pop(slot, None)
        for slot, target in plan.filled:
            self.held[slot] = target

    def clear(self) -> None:
        self.held.clear()
