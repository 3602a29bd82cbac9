"""The manager's record of one node of the service."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from conpaassql.domain.states import NodeState, Role


@dataclass(frozen=True)
class Node:
    id: int
    name: str
    cloud: str
    state: NodeState
    role: Role = Role.NONE
    ip: str | None = None
    agent_port: int = 60000
    mysql_port: int = 3306
    cloud_ref: str | None = None  # the cloud's own id for the VM or process group
    created_at: float = 0.0
    state_since: float = 0.0
    registered_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def with_state(self, state: NodeState, at: float) -> Node:
        return replace(self, state=state, state_since=at)

    @property
    def agent_url(self) -> str | None:
        if not self.ip:
            return None
        return f"https://{self.ip}:{self.agent_port}/"
