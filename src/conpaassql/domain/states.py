"""Service and node states, and which transitions between them are legal."""

from __future__ import annotations

from enum import StrEnum


class ServiceState(StrEnum):
    INIT = "INIT"
    PROLOGUE = "PROLOGUE"
    RUNNING = "RUNNING"
    ADAPTING = "ADAPTING"
    EPILOGUE = "EPILOGUE"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


class NodeState(StrEnum):
    PENDING = "PENDING"  # asked of the cloud
    BOOTING = "BOOTING"  # the cloud runs it; its agent has not registered yet
    RUNNING = "RUNNING"  # agent registered and its mysqld answers
    FAILED = "FAILED"  # agent or mysqld not answering
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"

    @property
    def is_live(self) -> bool:
        """Still part of the service (not on its way out)."""
        return self not in (NodeState.TERMINATING, NodeState.TERMINATED)


class Role(StrEnum):
    MASTER = "master"
    SLAVE = "slave"
    NONE = "none"
    #: Built from a backup, standing apart from replication (read-only, never seeded,
    #: repointed nor promoted by the topology; only ``set_up_replica_master`` on it).
    RESTORED = "restored"


class AgentState(StrEnum):
    """The state an agent reports of its MySQL server (docs/protocol.md)."""

    INIT = "INIT"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


NODE_TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    NodeState.PENDING: frozenset(
        {NodeState.BOOTING, NodeState.RUNNING, NodeState.FAILED, NodeState.TERMINATING,
         NodeState.TERMINATED}
    ),
    NodeState.BOOTING: frozenset(
        {NodeState.RUNNING, NodeState.FAILED, NodeState.TERMINATING, NodeState.TERMINATED}
    ),
    NodeState.RUNNING: frozenset({NodeState.FAILED, NodeState.TERMINATING, NodeState.TERMINATED}),
    NodeState.FAILED: frozenset({NodeState.RUNNING, NodeState.TERMINATING, NodeState.TERMINATED}),
    NodeState.TERMINATING: frozenset({NodeState.TERMINATED}),
    NodeState.TERMINATED: frozenset(),
}


def can_move(current: NodeState, target: NodeState) -> bool:
    return target in NODE_TRANSITIONS[current]


def derive_service_state(current: ServiceState, nodes: list[NodeState]) -> ServiceState:
    """The service state that follows from its nodes' states.

    EPILOGUE and STOPPED are set by shutdown and kept until nodes are added again.
    """
    if current in (ServiceState.EPILOGUE, ServiceState.STOPPED):
        return current
    live = [state for state in nodes if state.is_live]
    if not live:
        return ServiceState.INIT
    running = sum(1 for state in live if state is NodeState.RUNNING)
    settling = any(
        state in (NodeState.PENDING, NodeState.BOOTING) for state in nodes
    ) or any(state is NodeState.TERMINATING for state in nodes)
    if running == 0:
        if all(state is NodeState.FAILED for state in live):
            return ServiceState.ERROR
        return ServiceState.PROLOGUE
    if settling:
        return ServiceState.ADAPTING
    return ServiceState.RUNNING
