"""Diagnose what the manager observed of a node into one named situation.

The reconcile loop observes (agent probe, cloud list), calls ``diagnose`` and
then acts on the situation: each situation names at most one state transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from conpaassql.domain.states import NodeState


class Situation(StrEnum):
    HEALTHY = "healthy"
    WAITING_FOR_CLOUD = "waiting for the cloud"
    CLOUD_STARTED = "cloud started the node"
    WAITING_FOR_AGENT = "waiting for the agent"
    READY = "agent registered and mysqld answering"
    RECOVERED = "mysqld answering again"
    MYSQLD_DOWN = "mysqld not answering"
    AGENT_LOST = "agent unreachable"
    BOOT_TIMEOUT = "boot timed out"
    GONE_FROM_CLOUD = "gone from the cloud"
    STILL_FAILED = "still failed"
    LEAVING = "being removed"


#: The node state each situation leads to (absent: no change).
TARGET: dict[Situation, NodeState] = {
    Situation.CLOUD_STARTED: NodeState.BOOTING,
    Situation.READY: NodeState.RUNNING,
    Situation.RECOVERED: NodeState.RUNNING,
    Situation.MYSQLD_DOWN: NodeState.FAILED,
    Situation.AGENT_LOST: NodeState.FAILED,
    Situation.BOOT_TIMEOUT: NodeState.FAILED,
    Situation.GONE_FROM_CLOUD: NodeState.TERMINATED,
}


@dataclass(frozen=True)
class Observation:
    """What one reconcile cycle saw of one node."""

    state: NodeState
    probed: bool  # the agent answered the probe
    mysqld_answering: bool
    probe_failures: int  # consecutive failed probes, this one included
    in_cloud: bool | None  # None: the cloud list was not read this cycle
    cloud_running: bool
    age: float  # seconds since the node was requested
    state_age: float  # seconds in its current state


@dataclass(frozen=True)
class Thresholds:
    failure_threshold: int = 3
    boot_timeout: float = 300.0
    cloud_grace: float = 10.0  # a new node may not be listed yet


def diagnose(seen: Observation, limits: Thresholds) -> Situation:
    """Name the situation of a node from what was observed of it."""
    if not seen.state.is_live:
        return Situation.LEAVING
    if seen.in_cloud is False and seen.age > limits.cloud_grace:
        return Situation.GONE_FROM_CLOUD
    if seen.probed and seen.mysqld_answering:
        if seen.state is NodeState.RUNNING:
            return Situation.HEALTHY
        if seen.state is NodeState.FAILED:
            return Situation.RECOVERED
        return Situation.READY
    if seen.state in (NodeState.PENDING, NodeState.BOOTING):
        return _booting(seen, limits)
    if seen.state is NodeState.RUNNING:
        if seen.probed:
            return Situation.MYSQLD_DOWN
        if seen.probe_failures >= limits.failure_threshold:
            return Situation.AGENT_LOST
        return Situation.HEALTHY
    return Situation.STILL_FAILED


def _booting(seen: Observation, limits: Thresholds) -> Situation:
    if seen.state_age > limits.boot_timeout or seen.age > 2 * limits.boot_timeout:
        return Situation.BOOT_TIMEOUT
    if seen.state is NodeState.PENDING:
        if seen.cloud_running or seen.probed:
            return Situation.CLOUD_STARTED
        return Situation.WAITING_FOR_CLOUD
    return Situation.WAITING_FOR_AGENT
