"""Pure domain logic: service state derivation, node transitions, diagnosis."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conpaassql.domain.diagnosis import TARGET, Observation, Situation, Thresholds, diagnose
from conpaassql.domain.node import Node
from conpaassql.domain.states import (
    NODE_TRANSITIONS,
    NodeState,
    Role,
    ServiceState,
    can_move,
    derive_service_state,
)

N = NodeState
S = ServiceState
LIMITS = Thresholds(failure_threshold=3, boot_timeout=300.0, cloud_grace=10.0)


# --- derive_service_state -----------------------------------------------------------


@pytest.mark.parametrize(("nodes", "expected"), [
    ([], S.INIT),
    ([N.TERMINATED], S.INIT),
    ([N.TERMINATED, N.TERMINATED], S.INIT),
    ([N.PENDING], S.PROLOGUE),
    ([N.PENDING, N.PENDING], S.PROLOGUE),
    ([N.BOOTING], S.PROLOGUE),
    ([N.PENDING, N.BOOTING], S.PROLOGUE),
    ([N.PENDING, N.FAILED], S.PROLOGUE),
    ([N.RUNNING, N.BOOTING], S.ADAPTING),
    ([N.RUNNING, N.PENDING], S.ADAPTING),
    ([N.RUNNING, N.TERMINATING], S.ADAPTING),
    ([N.RUNNING], S.RUNNING),
    ([N.RUNNING, N.RUNNING, N.RUNNING], S.RUNNING),
    ([N.RUNNING, N.TERMINATED], S.RUNNING),
    ([N.FAILED], S.ERROR),
    ([N.FAILED, N.FAILED], S.ERROR),
    ([N.FAILED, N.TERMINATED], S.ERROR),
])
@pytest.mark.parametrize("current", [S.INIT, S.PROLOGUE, S.RUNNING, S.ADAPTING, S.ERROR])
def test_derive_service_state(current: ServiceState, nodes: list[NodeState],
                              expected: ServiceState) -> None:
    assert derive_service_state(current, nodes) is expected


def test_derive_is_independent_of_node_order() -> None:
    nodes = [N.BOOTING, N.RUNNING, N.FAILED, N.TERMINATED]
    assert derive_service_state(S.RUNNING, nodes) is S.ADAPTING
    assert derive_service_state(S.RUNNING, list(reversed(nodes))) is S.ADAPTING


@pytest.mark.parametrize("current", [S.EPILOGUE, S.STOPPED])
@pytest.mark.parametrize("nodes", [[], [N.RUNNING], [N.FAILED], [N.TERMINATING],
                                   [N.TERMINATED], [N.RUNNING, N.BOOTING]])
def test_epilogue_and_stopped_are_kept(current: ServiceState, nodes: list[NodeState]) -> None:
    assert derive_service_state(current, nodes) is current


@settings(derandomize=True, max_examples=200)
@given(current=st.sampled_from(list(ServiceState)),
       nodes=st.lists(st.sampled_from(list(NodeState)), max_size=6))
def test_derive_properties(current: ServiceState, nodes: list[NodeState]) -> None:
    state = derive_service_state(current, nodes)
    if current in (S.EPILOGUE, S.STOPPED):
        assert state is current
        return
    assert state not in (S.EPILOGUE, S.STOPPED)
    live = [node for node in nodes if node.is_live]
    assert (state is S.INIT) == (not live)
    if state is S.RUNNING:
        assert all(node in (N.RUNNING, N.FAILED, N.TERMINATED) for node in nodes)
        assert N.RUNNING in nodes
    if state is S.ERROR:
        assert all(node is N.FAILED for node in live)


# --- node transitions ---------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), [
    (N.PENDING, N.BOOTING), (N.PENDING, N.RUNNING), (N.PENDING, N.FAILED),
    (N.PENDING, N.TERMINATING), (N.PENDING, N.TERMINATED),
    (N.BOOTING, N.RUNNING), (N.BOOTING, N.FAILED), (N.BOOTING, N.TERMINATING),
    (N.RUNNING, N.FAILED), (N.RUNNING, N.TERMINATING), (N.RUNNING, N.TERMINATED),
    (N.FAILED, N.RUNNING), (N.FAILED, N.TERMINATING), (N.FAILED, N.TERMINATED),
    (N.TERMINATING, N.TERMINATED),
])
def test_legal_moves(current: NodeState, target: NodeState) -> None:
    assert can_move(current, target)


@pytest.mark.parametrize(("current", "target"), [
    (N.RUNNING, N.PENDING), (N.RUNNING, N.BOOTING), (N.BOOTING, N.PENDING),
    (N.FAILED, N.PENDING), (N.FAILED, N.BOOTING),
    (N.TERMINATING, N.RUNNING), (N.TERMINATING, N.FAILED), (N.TERMINATING, N.PENDING),
    (N.TERMINATED, N.PENDING), (N.TERMINATED, N.RUNNING), (N.TERMINATED, N.TERMINATING),
    (N.TERMINATED, N.TERMINATED),
])
def test_illegal_moves(current: NodeState, target: NodeState) -> None:
    assert not can_move(current, target)


@pytest.mark.parametrize("state", list(NodeState))
def test_no_self_moves_and_every_state_has_rules(state: NodeState) -> None:
    assert state in NODE_TRANSITIONS
    assert not can_move(state, state)


@pytest.mark.parametrize("state", [N.PENDING, N.BOOTING, N.RUNNING, N.FAILED, N.TERMINATING])
def test_every_state_can_end(state: NodeState) -> None:
    assert can_move(state, N.TERMINATED)


def test_terminated_is_final_and_leaving_never_returns() -> None:
    assert NODE_TRANSITIONS[N.TERMINATED] == frozenset()
    assert NODE_TRANSITIONS[N.TERMINATING] == frozenset({N.TERMINATED})
    assert not N.TERMINATING.is_live
    assert not N.TERMINATED.is_live
    assert all(state.is_live for state in (N.PENDING, N.BOOTING, N.RUNNING, N.FAILED))


# --- diagnose -----------------------------------------------------------------------


def seen(state: NodeState, **changes: object) -> Observation:
    base = Observation(state=state, probed=False, mysqld_answering=False, probe_failures=0,
                       in_cloud=True, cloud_running=False, age=1.0, state_age=1.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_healthy() -> None:
    assert diagnose(seen(N.RUNNING, probed=True, mysqld_answering=True), LIMITS) is (
        Situation.HEALTHY)


@pytest.mark.parametrize("state", [N.PENDING, N.BOOTING])
def test_ready_from_pending_and_booting(state: NodeState) -> None:
    situation = diagnose(seen(state, probed=True, mysqld_answering=True), LIMITS)
    assert situation is Situation.READY
    assert TARGET[situation] is N.RUNNING
    assert can_move(state, TARGET[situation])


def test_recovered() -> None:
    situation = diagnose(seen(N.FAILED, probed=True, mysqld_answering=True,
                              state_age=1000.0, age=5000.0), LIMITS)
    assert situation is Situation.RECOVERED
    assert TARGET[situation] is N.RUNNING


def test_still_failed() -> None:
    assert diagnose(seen(N.FAILED, probe_failures=50), LIMITS) is Situation.STILL_FAILED
    assert diagnose(seen(N.FAILED, probed=True), LIMITS) is Situation.STILL_FAILED
    assert Situation.STILL_FAILED not in TARGET


def test_mysqld_down() -> None:
    situation = diagnose(seen(N.RUNNING, probed=True, mysqld_answering=False), LIMITS)
    assert situation is Situation.MYSQLD_DOWN
    assert TARGET[situation] is N.FAILED


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_agent_not_lost_before_threshold(failures: int) -> None:
    assert diagnose(seen(N.RUNNING, probe_failures=failures), LIMITS) is Situation.HEALTHY


@pytest.mark.parametrize("failures", [3, 4, 100])
def test_agent_lost_at_threshold(failures: int) -> None:
    situation = diagnose(seen(N.RUNNING, probe_failures=failures), LIMITS)
    assert situation is Situation.AGENT_LOST
    assert TARGET[situation] is N.FAILED


def test_failure_threshold_is_configurable() -> None:
    one = dataclasses.replace(LIMITS, failure_threshold=1)
    assert diagnose(seen(N.RUNNING, probe_failures=1), one) is Situation.AGENT_LOST
    ten = dataclasses.replace(LIMITS, failure_threshold=10)
    assert diagnose(seen(N.RUNNING, probe_failures=9), ten) is Situation.HEALTHY


@pytest.mark.parametrize("state", [N.PENDING, N.BOOTING])
def test_boot_timeout(state: NodeState) -> None:
    assert diagnose(seen(state, state_age=300.0, age=300.0), LIMITS) is not (
        Situation.BOOT_TIMEOUT)
    situation = diagnose(seen(state, state_age=301.0, age=301.0), LIMITS)
    assert situation is Situation.BOOT_TIMEOUT
    assert TARGET[situation] is N.FAILED
    # Too long since the node was asked for, even if the last state change was recent.
    assert diagnose(seen(state, state_age=5.0, age=601.0), LIMITS) is Situation.BOOT_TIMEOUT
    assert diagnose(seen(state, state_age=5.0, age=599.0), LIMITS) is not (
        Situation.BOOT_TIMEOUT)


def test_booted_node_that_answers_is_ready_even_late() -> None:
    situation = diagnose(seen(N.BOOTING, probed=True, mysqld_answering=True,
                              state_age=1000.0, age=1000.0), LIMITS)
    assert situation is Situation.READY


def test_gone_from_cloud_only_after_grace() -> None:
    assert diagnose(seen(N.PENDING, in_cloud=False, age=5.0), LIMITS) is (
        Situation.WAITING_FOR_CLOUD)
    assert diagnose(seen(N.PENDING, in_cloud=False, age=10.0), LIMITS) is (
        Situation.WAITING_FOR_CLOUD)
    for state in (N.PENDING, N.BOOTING, N.RUNNING, N.FAILED):
        situation = diagnose(seen(state, in_cloud=False, age=11.0, probed=True,
                                  mysqld_answering=True), LIMITS)
        assert situation is Situation.GONE_FROM_CLOUD
        assert TARGET[situation] is N.TERMINATED
        assert can_move(state, N.TERMINATED)


def test_cloud_list_not_read_is_not_gone() -> None:
    assert diagnose(seen(N.RUNNING, in_cloud=None, age=1e6, probed=True,
                         mysqld_answering=True), LIMITS) is Situation.HEALTHY


def test_cloud_started() -> None:
    situation = diagnose(seen(N.PENDING, cloud_running=True), LIMITS)
    assert situation is Situation.CLOUD_STARTED
    assert TARGET[situation] is N.BOOTING
    # An agent that answers while mysqld does not yet also shows the node started.
    assert diagnose(seen(N.PENDING, probed=True), LIMITS) is Situation.CLOUD_STARTED


def test_waiting_for_cloud_and_for_agent() -> None:
    assert diagnose(seen(N.PENDING), LIMITS) is Situation.WAITING_FOR_CLOUD
    assert diagnose(seen(N.BOOTING, cloud_running=True), LIMITS) is (
        Situation.WAITING_FOR_AGENT)
    assert diagnose(seen(N.BOOTING, probed=True), LIMITS) is Situation.WAITING_FOR_AGENT
    assert Situation.WAITING_FOR_CLOUD not in TARGET
    assert Situation.WAITING_FOR_AGENT not in TARGET


@pytest.mark.parametrize("state", [N.TERMINATING, N.TERMINATED])
def test_leaving_nodes(state: NodeState) -> None:
    assert diagnose(seen(state, in_cloud=False, age=1e6, probed=True, mysqld_answering=True),
                    LIMITS) is Situation.LEAVING
    assert Situation.LEAVING not in TARGET


OBSERVATIONS = st.builds(
    Observation,
    state=st.sampled_from(list(NodeState)),
    probed=st.booleans(),
    mysqld_answering=st.booleans(),
    probe_failures=st.integers(0, 10),
    in_cloud=st.none() | st.booleans(),
    cloud_running=st.booleans(),
    age=st.floats(0, 2000, allow_nan=False),
    state_age=st.floats(0, 2000, allow_nan=False),
)


@settings(derandomize=True, max_examples=200)
@given(observation=OBSERVATIONS)
def test_every_diagnosed_transition_is_legal(observation: Observation) -> None:
    situation = diagnose(observation, LIMITS)
    target = TARGET.get(situation)
    if target is not None:
        assert can_move(observation.state, target), (observation, situation)
    if situation is Situation.AGENT_LOST:
        assert observation.probe_failures >= LIMITS.failure_threshold
    if situation is Situation.GONE_FROM_CLOUD:
        assert observation.in_cloud is False
        assert observation.age > LIMITS.cloud_grace


def test_every_situation_is_reachable() -> None:
    examples = {
        Situation.HEALTHY: seen(N.RUNNING, probed=True, mysqld_answering=True),
        Situation.WAITING_FOR_CLOUD: seen(N.PENDING),
        Situation.CLOUD_STARTED: seen(N.PENDING, cloud_running=True),
        Situation.WAITING_FOR_AGENT: seen(N.BOOTING),
        Situation.READY: seen(N.BOOTING, probed=True, mysqld_answering=True),
        Situation.RECOVERED: seen(N.FAILED, probed=True, mysqld_answering=True),
        Situation.MYSQLD_DOWN: seen(N.RUNNING, probed=True),
        Situation.AGENT_LOST: seen(N.RUNNING, probe_failures=3),
        Situation.BOOT_TIMEOUT: seen(N.BOOTING, state_age=301.0),
        Situation.GONE_FROM_CLOUD: seen(N.RUNNING, in_cloud=False, age=11.0),
        Situation.STILL_FAILED: seen(N.FAILED),
        Situation.LEAVING: seen(N.TERMINATING),
    }
    assert set(examples) == set(Situation)
    for situation, observation in examples.items():
        assert diagnose(observation, LIMITS) is situation


# --- Node ---------------------------------------------------------------------------


def test_node_with_state_and_agent_url() -> None:
    node = Node(3, "conpaassql-3", "local", N.PENDING, created_at=1.0, state_since=1.0)
    assert node.agent_url is None
    assert node.role is Role.NONE
    moved = node.with_state(N.BOOTING, 5.0)
    assert (moved.state, moved.state_since, moved.created_at) == (N.BOOTING, 5.0, 1.0)
    assert node.state is N.PENDING
    placed = dataclasses.replace(moved, ip="127.0.0.12", agent_port=60001)
    assert placed.agent_url == "https://127.0.0.12:60001/"
