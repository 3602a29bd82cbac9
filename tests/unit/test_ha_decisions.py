"""The HA decisions, table-driven: snapshots of a service fed to the real decision and
acting code (``Replication``, ``Reconciler``), the real store on a temporary SQLite
file, and the real typed agent client (``AgentLink``) whose transport is a fake that
records every call and answers from a script (each answer parsed by the protocol's
reply model, as an agent's would be).

Each case says what the agents must be asked, in order: fence before promote, the
most advanced candidate promoted, the others repointed, nothing on a suspect or
hidden master."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.cloud.clouds import Clouds
from conpaassql.config import ManagerConfig
from conpaassql.domain.diagnosis import Situation
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState
from conpaassql.domain.topology import Topology
from conpaassql.errors import ConpaasSQLError, UnreachableError
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.api import ManagerApi, RegisterParams
from conpaassql.manager.authority import Authority
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.cycle import Act, CycleResult, Outcome, Snapshot, frozen
from conpaassql.manager.reconcile import NODE_ACTIONS, Reconciler
from conpaassql.manager.replication import TOPOLOGY_ACTIONS, Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.manager.store import Store
from conpaassql.protocol.agent import AgentMethod, MasterRequest, SlaveRequest
from conpaassql.protocol.base import Reply as ReplyModel
from conpaassql.protocol.base import Request
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.registry import CallContext
from conpaassql.rpc.tls import client_context

T = TypeVar("T")
Req = TypeVar("Req", bound=Request)
Rep = TypeVar("Rep", bound=ReplyModel)

#: A scripted answer: a value, an error to raise, or a function of (node, params).
Reply = Any


class FakeAgents(AgentLink):
    """The typed client, its transport replaced: records each call (verb, node and
    request) and answers from ``replies`` (``states`` for the probe).

    ``hold`` makes a verb wait for an event before it answers (a long action)."""

    def __init__(self, tls: ssl.SSLContext, service_id: str) -> None:
        super().__init__("agent secret", tls, service_id)
        self.calls: list[tuple[str, int]] = []
        self.requests: list[Request | None] = []
        self.replies: dict[str, Reply] = dict(DEFAULT_REPLIES)
        self.states: dict[int, Reply] = {}  # node -> its get_server_state report
        self.hold: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}

    async def _call(self, node: Node, method: AgentMethod[Req, Rep], request: Req | None,
                    timeout: float | None) -> Rep:
        verb = method.name
        self.calls.append((verb, node.id))
        self.requests.append(request)
        if verb in self.started:
            self.started[verb].set()
        if verb in self.hold:
            await self.hold[verb].wait()
        if verb == "get_server_state":
            reply = self.states.get(node.id, _unreachable)
        else:
            reply = self.replies.get(verb, {})
        if callable(reply):
            reply = reply(node, request)
        if isinstance(reply, BaseException):
            raise reply
        if verb == "get_server_state":
            reply = {"return": reply}
        assert method.reply is not None
        return method.reply.model_validate(reply)

    def verbs(self) -> list[tuple[str, int]]:
        """The calls, probes left out."""
        return [call for call in self.calls if call[0] != "get_server_state"]


def _unreachable(node: Node, request: Request | None) -> ConpaasSQLError:
    return UnreachableError(f"node {node.id}", detail="connection refused")


def _drained(positions: Mapping[int, str]) -> Callable[[Node, Request | None], Any]:
    """drain_relay_log answers: what each node applied (absent: it could not drain)."""
    def reply(node: Node, request: Request | None) -> Any:
        if node.id not in positions:
            return {"drained": False}
        return {"drained": True, "replication": {"gtid_current_pos": positions[node.id]}}
    return reply


DEFAULT_REPLIES: dict[str, Reply] = {
    "fence": {"state": "STOPPED"},
    "source_address": lambda node, request: {"address": node.ip},
    "set_replica_hosts": {"removed": []},
    "seed_from": {"gtid_position": "0-1-10", "bytes": 1000, "method": "physical"},
}


class RecordingCloud(CloudDriver):
    def __init__(self) -> None:
        super().__init__("default")
        self.rebooted: list[str] = []

    async def create_node(self, request: NodeRequest) -> CloudNode:
        return CloudNode(f"vm-{request.node_id}", request.node_id, request.name, None,
                         CloudNodeState.RUNNING)

    async def list_nodes(self) -> list[CloudNode]:
        return []

    async def destroy_node(self, ref: str) -> None:
        pass

    async def reboot_node(self, ref: str) -> None:
        self.rebooted.append(ref)


@dataclass
class World:
    """One manager's parts, wired as ``manager.app`` does, around the fakes."""

    nodes: NodeService
    replication: Replication
    reconciler: Reconciler
    agents: FakeAgents
    cloud: RecordingCloud

    @property
    def store(self) -> Store:
        return self.nodes.rt.store

    def add(self, role: Role, state: NodeState = NodeState.RUNNING,
            registered: float | None = 1.0) -> Node:
        node = self.store.new_node("conpaassql-agent", "default", 60000, 3306)
        for step in (NodeState.BOOTING, NodeState.RUNNING, NodeState.FAILED):
            if node.state is state:
                break
            node = self.store.move_node(node.id, step, "set up by the test")
        return self.store.update_node(node.id, role=role, ip=f"10.0.0.{node.id}",
                                      cloud_ref=f"vm-{node.id}", registered_at=registered)

    def snapshot(self, probes: Mapping[int, dict[str, Any] | None],
                 failures: Mapping[int, int] | None = None,
                 silent: Mapping[int, int] | None = None) -> Snapshot:
        reports = {node: None if raw is None else StateReport.model_validate(raw)
                   for node, raw in probes.items()}
        return Snapshot(at=1e9, nodes=tuple(self.store.nodes(include_terminated=True)),
                        probes=frozen(reports), failures=frozen(failures),
                        silent=frozen(silent), seeding=self.replication.seeding)

    def roles(self) -> dict[int, Role]:
        return {node.id: node.role for node in self.store.nodes()}

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` in an event loop, then stop what the manager left running."""
        async def main() -> T:
            try:
                return await work
            finally:
                await self.reconciler.close()
                await self.nodes.close()
        return asyncio.run(main())

    async def settle(self) -> None:
        """Let background copies (seeding) run to their end."""
        while self.replication.seeding:
            await asyncio.sleep(0)


def make_world(tmp_path: Path, **config: Any) -> World:
    store = Store(tmp_path / "manager.db")
    authority = Authority.load_or_create(tmp_path / "pki", store.service_id)
    agents = FakeAgents(client_context(authority.manager_files), store.service_id)
    cloud = RecordingCloud()
    runtime = Runtime(
        config=replace(ManagerConfig(), **config), store=store, clouds=Clouds([cloud]),
        agents=agents, secrets=ServiceSecrets.load(tmp_path),
        manager_url="https://127.0.0.1:50001/", authority=authority)
    nodes = NodeService(runtime)
    replication = Replication(nodes)
    return World(nodes, replication, Reconciler(runtime, nodes, replication), agents, cloud)


# -- what agents report ------------------------------------------------------------


def report(gtid: str = "0-1-10", *, answering: bool = True, restarts: int = 0,
           read_only: bool = False, slave: dict[str, Any] | None = None,
           stopped: bool = False) -> dict[str, Any]:
    """A ``get_server_state`` report."""
    replication: dict[str, Any] = {"read_only": read_only, "gtid_current_pos": gtid}
    if slave is not None:
        replication["slave"] = slave
    return {"state": "STOPPED" if stopped else "RUNNING",
            "mysqld": {"answering": answering, "restarts": restarts},
            "replication": replication if answering else {}}


def slave(master: int = 1, received: str = "0-1-10", io: str = "Yes", sql: str = "Yes",
          io_errno: int = 0, sql_errno: int = 0) -> dict[str, Any]:
    return {"master_host": f"10.0.0.{master}", "io_running": io, "sql_running": sql,
            "gtid_io_pos": received, "last_io_errno": io_errno, "last_sql_errno": sql_errno,
            "seconds_behind_master": 0}


def quiet(roles: tuple[Role, ...]) -> dict[int, dict[str, Any] | None]:
    """A first cycle's probes that call for nothing but the replication account's
    hosts: the manager learns each mysqld's restarts (a node without a role does
    not answer yet)."""
    master = next((i for i, role in enumerate(roles, 1) if role is Role.MASTER), None)
    if master is None:
        return {i: None for i in range(1, len(roles) + 1)}
    return {i: None if role is Role.NONE else report(slave=None if i == master else
                                                      slave(master))
            for i, role in enumerate(roles, 1)}


# -- the tables are whole ---------------------------------------------------------


def test_every_situation_has_its_handler() -> None:
    assert set(NODE_ACTIONS) == set(Situation)
    assert set(TOPOLOGY_ACTIONS) == set(Topology)


# -- the replication topology, one snapshot at a time -----------------------------


@dataclass(frozen=True)
class Case:
    """Node 1 is the master, 2 and 3 its slaves (unless ``roles`` says otherwise)."""

    name: str
    probes: Mapping[int, dict[str, Any] | None]  # this cycle's reports (None: no answer)
    calls: list[tuple[str, int]]  # what the agents are asked, in order
    action: Act
    situation: Topology
    master_after: int | None = 1
    failures: dict[int, int] = field(default_factory=dict)
    silent: dict[int, int] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    roles: tuple[Role, ...] = (Role.MASTER, Role.SLAVE, Role.SLAVE)
    config: dict[str, Any] = field(default_factory=dict)
    rebooted: tuple[str, ...] = ()  # what the cloud powered off and on


HEALTHY = {1: report("0-1-10"), 2: report("0-1-10", slave=slave()),
           3: report("0-1-10", slave=slave())}
#: What the new master is asked after a failover to node 3, and what node 2 is.
REPOINT_2_AT_3 = [("source_address", 2), ("set_replica_hosts", 3),
                  ("set_up_replica_slave", 2), ("set_up_replica_master", 3)]
LOST_MASTER = {**HEALTHY, 2: report("0-1-10", slave=slave(io="Connecting")),
               3: report("0-1-12", slave=slave(io="Connecting", received="0-1-12"))}

CASES = [
    Case("master crashed: fence, drain both, promote the most advanced, repoint",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3,
         replies={"drain_relay_log": _drained({2: "0-1-11", 3: "0-1-12"})}),
    Case("the candidate is the one that applied the most, whatever its id",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 2), ("source_address", 3), ("set_replica_hosts", 2),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 2)],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=2,
         replies={"drain_relay_log": _drained({2: "0-1-15", 3: "0-1-12"})}),
    Case("a candidate that cannot apply what it received is passed over",
         {**HEALTHY, 1: report("0-1-10", restarts=1)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3,
         replies={"drain_relay_log": _drained({3: "0-1-12"})}),
    Case("master's mysqld silent past the threshold: failover",
         {**HEALTHY, 1: report(answering=False)},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_CRASHED, master_after=3, silent={1: 3},
         replies={"drain_relay_log": _drained({2: "0-1-10", 3: "0-1-11"})}),
    Case("master unreachable, slaves lost it too: its agent cannot fence, the cloud does",
         {**LOST_MASTER, 1: None},
         [("fence", 1), ("drain_relay_log", 2), ("drain_relay_log", 3),
          ("set_up_replica_master", 3), *REPOINT_2_AT_3],
         Act.FAILOVER, Topology.MASTER_UNREACHABLE, master_after=3, failures={1: 3},
         replies={"fence": _unreachable,
                  "drain_relay_log": _drained({2: "0-1-10", 3: "0-1-12"})},
         rebooted=("vm-1",)),
    Case("master hidden (unreachable from the manager only): nothing done",
         {**HEALTHY, 1: None}, [], Act.HOLD, Topology.MASTER_HIDDEN, failures={1: 3}),
    Case("master suspect (not enough failed probes): nothing done",
         {**LOST_MASTER, 1: None}, [], Act.HOLD, Topology.MASTER_SUSPECT, failures={1: 2}),
    Case("master's mysqld silent once: suspect, nothing done",
         {**HEALTHY, 1: report(answering=False)}, [], Act.HOLD, Topology.MASTER_SUSPECT,
         silent={1: 1}),
    Case("master lost with no slave fit to take over: held, its agent restarts mysqld",
         {1: report(restarts=1), 2: report(slave=slave(io_errno=1236)),
          3: report(answering=False)},
         [], Act.HOLD, Topology.MASTER_CRASHED),
    Case("master lost, auto_failover off: held",
         {**HEALTHY, 1: report(restarts=1)}, [], Act.HOLD, Topology.MASTER_CRASHED,
         config={"auto_failover": False}),
    Case("master read-only: made writable (semi-sync on: it has slaves)",
         {**HEALTHY, 1: report(read_only=True)}, [("set_up_replica_master", 1)],
         Act.MAKE_WRITABLE, Topology.MASTER_READ_ONLY),
    Case("no master, a new service: the first healthy node is elected, no drain",
         {1: report("0-1-3"), 2: report("0-2-3"), 3: None}, [("set_up_replica_master", 1)],
         Act.ELECT, Topology.NO_MASTER, roles=(Role.NONE, Role.NONE, Role.NONE)),
    Case("no master among slaves: drained, the one that applied the most is elected",
         {1: report("0-1-10", slave=slave(3)), 2: report("0-1-12", slave=slave(3)),
          3: report("0-1-12")},
         [("drain_relay_log", 1), ("drain_relay_log", 2), ("set_up_replica_master", 2)],
         Act.ELECT, Topology.NO_MASTER, master_after=2,
         roles=(Role.SLAVE, Role.SLAVE, Role.NONE),
         replies={"drain_relay_log": _drained({1: "0-1-11", 2: "0-1-14"})}),
    Case("a new node: the master is copied into it, then it replicates",
         {**HEALTHY, 3: report("0-3-1")},
         [("seed_from", 3), ("source_address", 3), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 1)],
         Act.SEED, Topology.NEW_NODE, roles=(Role.MASTER, Role.SLAVE, Role.NONE)),
    Case("a slave with errant GTIDs (the master lacks its position): copied anew",
         {**HEALTHY, 2: report("0-1-10,0-2-4", slave=slave(io="No", io_errno=1236))},
         [("seed_from", 2), ("source_address", 2), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 2), ("set_up_replica_master", 1)],
         Act.SEED, Topology.SLAVE_BROKEN),
    Case("a diverged old master (ahead on its own server id) rejoining: copied anew",
         {3: report("0-3-20"), 2: report("0-3-20", slave=slave(3)),
          1: report("0-1-25,0-3-18", slave=slave(3, io="No", io_errno=1236))},
         [("seed_from", 1), ("source_address", 1), ("set_replica_hosts", 3),
          ("set_up_replica_slave", 1), ("set_up_replica_master", 3)],
         Act.SEED, Topology.SLAVE_BROKEN, master_after=3,
         roles=(Role.SLAVE, Role.SLAVE, Role.MASTER),
         replies={"seed_from": {"gtid_position": "0-3-20"}}),
    Case("a broken slave (its SQL thread stopped on an error): copied anew",
         {**HEALTHY, 3: report(slave=slave(sql="No", sql_errno=1062))},
         [("seed_from", 3), ("source_address", 3), ("set_replica_hosts", 1),
          ("set_up_replica_slave", 3), ("set_up_replica_master", 1)],
         Act.SEED, Topology.SLAVE_BROKEN),
    Case("a fenced old master (mysqld stopped by its agent): restarted read-only",
         {3: report("0-3-20"), 2: report("0-3-20", slave=slave(3)),
          1: report(answering=False, stopped=True)},
         [("start_server", 1)], Act.RESTART, Topology.SLAVE_STOPPED, master_after=3,
         roles=(Role.SLAVE, Role.SLAVE, Role.MASTER)),
    Case("a stopped slave (left drained by a failover that failed): repointed",
         {**HEALTHY, 2: report(slave=slave(io="No", sql="No"))},
         [("source_address", 2), ("set_replica_hosts", 1), ("set_up_replica_slave", 2),
          ("set_up_replica_master", 1)],
         Act.REPOINT, Topology.SLAVE_UNCONFIGURED),
    Case("a slave replicating from an old master: repointed",
         {**HEALTHY, 3: report(slave=slave(master=9))},
         [("source_address", 3), ("set_replica_hosts", 1), ("set_up_replica_slave", 3),
          ("set_up_replica_master", 1)],
         Act.REPOINT, Topology.SLAVE_UNCONFIGURED),
    Case("healthy: nothing asked", HEALTHY, [], Act.NONE, Topology.HEALTHY),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_topology_decision(tmp_path: Path, case: Case) -> None:
    world = make_world(tmp_path, **case.config)
    for role in case.roles:
        world.add(role)
    world.agents.replies.update(case.replies)

    async def run() -> list[Outcome]:
        await world.replication.reconcile(world.snapshot(quiet(case.roles)))
        world.agents.calls.clear()
        outcomes = await world.replication.reconcile(
            world.snapshot(case.probes, case.failures, case.silent))
        await world.settle()
        return outcomes

    outcomes = world.run(run())
    assert [(o.situation, o.action) for o in outcomes] == [(case.situation, case.action)]
    assert world.agents.verbs() == case.calls
    assert tuple(world.cloud.rebooted) == case.rebooted
    masters = [node for node, role in world.roles().items() if role is Role.MASTER]
    assert masters == ([] if case.master_after is None else [case.master_after])
    if case.action is Act.HOLD:
        assert "held: " in outcomes[0].message


def test_failover_records_its_steps_and_the_service_comes_back(tmp_path: Path) -> None:
    case = CASES[0]
    world = make_world(tmp_path)
    for role in case.roles:
        world.add(role)
    world.agents.replies.update(case.replies)

    async def run() -> None:
        await world.replication.reconcile(world.snapshot(HEALTHY))
        await world.replication.reconcile(world.snapshot(case.probes))

    world.run(run())
    assert world.roles() == {1: Role.SLAVE, 2: Role.SLAVE, 3: Role.MASTER}
    calls, requests = world.agents.calls, world.agents.requests
    promotion = requests[calls.index(("set_up_replica_master", 3))]
    assert isinstance(promotion, MasterRequest)
    assert promotion.semi_sync is False  # writable at once: no slave follows it yet
    repointed = requests[calls.index(("set_up_replica_slave", 2))]
    assert isinstance(repointed, SlaveRequest)
    assert (repointed.master_host, repointed.gtid_position) == ("10.0.0.3", None)
    messages = [entry.message for entry in world.store.history(limit=50)]
    fenced = messages.index("failover: node 1 fenced (mysqld stopped by its agent)")
    promoted = next(i for i, m in enumerate(messages)
                    if m.startswith("failover: node 3 is the master (was node 1"))
    assert fenced < promoted
    assert world.replication.last_failover is not None
    assert world.replication.last_failover["to"] == 3
    assert world.store.service_state()[0] is not ServiceState.ADAPTING


def test_a_failover_that_finds_no_candidate_after_draining_fails_and_says_so(
        tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.SLAVE):
        world.add(role)
    world.agents.replies["drain_relay_log"] = _drained({})

    async def run() -> list[Outcome]:
        await world.replication.reconcile(world.snapshot(quiet((Role.MASTER, Role.SLAVE))))
        world.agents.calls.clear()
        return await world.replication.reconcile(world.snapshot(
            {1: report(restarts=1), 2: report(slave=slave())}))

    [outcome] = world.run(run())
    assert outcome.action is Act.FAILED
    assert outcome.message.startswith("master's mysqld crashed: failed: ")
    assert world.agents.verbs() == [("fence", 1), ("drain_relay_log", 2)]
    assert world.roles() == {1: Role.MASTER, 2: Role.SLAVE}  # no promotion


def test_a_second_new_node_waits_for_the_first_copy(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.NONE, Role.NONE):
        world.add(role)
    world.agents.hold["seed_from"] = asyncio.Event()

    async def run() -> list[Outcome]:
        outcomes = await world.replication.reconcile(world.snapshot(
            {1: report(), 2: report("0-2-1"), 3: report("0-3-1")}))
        world.agents.hold["seed_from"].set()
        await world.settle()
        return outcomes

    outcomes = world.run(run())
    assert [(o.node, o.action) for o in outcomes] == [(2, Act.SEED), (3, Act.HOLD)]
    assert outcomes[1].message == "node 3: held: one copy at a time (node 2 is being copied)"


# -- the node states, whole cycles ------------------------------------------------


@dataclass(frozen=True)
class NodeCase:
    name: str
    state: NodeState
    probes: list[Reply]  # one get_server_state answer per cycle (an error: no answer)
    moves: list[NodeState]  # its state after each cycle
    situation: Situation  # the last cycle's
    action: Act  # the last cycle's


NODE_CASES = [
    NodeCase("booting, mysqld answers: RUNNING", NodeState.BOOTING, [report()],
             [NodeState.RUNNING], Situation.READY, Act.MOVE),
    NodeCase("booting, no agent yet: waits", NodeState.BOOTING, [_unreachable],
             [NodeState.BOOTING], Situation.WAITING_FOR_AGENT, Act.NONE),
    NodeCase("running, mysqld down: FAILED", NodeState.RUNNING, [report(answering=False)],
             [NodeState.FAILED], Situation.MYSQLD_DOWN, Act.MOVE),
    NodeCase("running, agent unreachable: FAILED at the third failed probe",
             NodeState.RUNNING, [_unreachable] * 3,
             [NodeState.RUNNING, NodeState.RUNNING, NodeState.FAILED], Situation.AGENT_LOST,
             Act.MOVE),
    NodeCase("running, one failed probe: still healthy", NodeState.RUNNING, [_unreachable],
             [NodeState.RUNNING], Situation.HEALTHY, Act.NONE),
    NodeCase("failed, mysqld answers again: RUNNING", NodeState.FAILED, [report()],
             [NodeState.RUNNING], Situation.RECOVERED, Act.MOVE),
    NodeCase("failed, still down: stays", NodeState.FAILED, [report(answering=False)],
             [NodeState.FAILED], Situation.STILL_FAILED, Act.NONE),
]


@pytest.mark.parametrize("case", NODE_CASES, ids=[case.name for case in NODE_CASES])
def test_node_state_decision(tmp_path: Path, case: NodeCase) -> None:
    world = make_world(tmp_path)
    node = world.add(Role.NONE, case.state)
    seen = []

    async def run() -> CycleResult:
        result = None
        for answer in case.probes:
            world.agents.states[node.id] = answer
            result = await world.reconciler.cycle()
            seen.append(world.store.get_node(node.id).state)  # type: ignore[union-attr]
        assert result is not None
        return result

    result = world.run(run())
    assert seen == case.moves
    [outcome] = [o for o in result.outcomes if isinstance(o.situation, Situation)]
    assert (outcome.situation, outcome.action) == (case.situation, case.action)


def test_a_node_found_ready_is_given_its_role_in_the_same_cycle(tmp_path: Path) -> None:
    """Found ready by the probe before its heartbeat came: it has run all the same (were
    its cloud to lose it, it would be replaced)."""
    world = make_world(tmp_path)
    node = world.add(Role.NONE, NodeState.BOOTING, registered=None)
    world.agents.states[node.id] = report()
    result = world.run(world.reconciler.cycle())
    assert world.agents.calls == [("get_server_state", 1), ("set_up_replica_master", 1)]
    assert world.roles() == {1: Role.MASTER}
    assert world.nodes.node(1).registered_at is not None
    assert result.line == ("RUNNING: node 1: agent registered and mysqld answering -> "
                           "RUNNING; node 1 elected master (1 running)")


def test_a_heartbeat_moves_no_state_and_the_next_cycle_does(tmp_path: Path) -> None:
    """An agent the manager cannot reach yet told it is up: recorded, the loop woken,
    and the node moved by the loop (from what it told) rather than by its call."""
    world = make_world(tmp_path)
    node = world.add(Role.NONE, NodeState.BOOTING)
    world.agents.states[node.id] = _unreachable
    world.reconciler.note_report(node, StateReport.model_validate(report()))
    assert world.reconciler.due
    assert world.store.get_node(node.id) == node
    world.run(world.reconciler.cycle())
    assert world.store.get_node(node.id).state is NodeState.RUNNING  # type: ignore[union-attr]
    assert world.roles() == {1: Role.NONE}  # its role waits for a probe that answers


def test_a_heartbeat_that_says_nothing_new_does_not_wake_the_loop(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    node = world.add(Role.MASTER)
    world.reconciler.note_report(node, StateReport.model_validate(report()))
    assert not world.reconciler.due
    world.reconciler.note_report(node, StateReport.model_validate(
        {**report(), "event": "mysqld restarted"}))
    assert world.reconciler.due


def test_a_node_being_copied_is_not_failed_for_its_stopped_mysqld(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    world.add(Role.MASTER)
    world.add(Role.NONE)
    world.agents.states = {1: report(), 2: report("0-2-1")}
    world.agents.hold["seed_from"] = asyncio.Event()

    async def run() -> CycleResult:
        await world.reconciler.cycle()  # starts the copy into node 2
        world.agents.states[2] = report(answering=False)
        result = await world.reconciler.cycle()
        world.agents.hold["seed_from"].set()
        await world.settle()
        return result

    result = world.run(run())
    assert world.store.get_node(2).state is NodeState.RUNNING  # type: ignore[union-attr]
    assert "node 2: held: its mysqld is stopped while the master's copy goes in" in \
        result.log_line
    assert "node 2" not in result.line  # neither failed nor acted on


# -- handlers record, the loop acts -----------------------------------------------


def test_a_heartbeat_is_answered_in_the_middle_of_a_failover(tmp_path: Path) -> None:
    """The cycle waits on the old master's fence; an agent's heartbeat is answered at
    once, changes no state, and wakes the loop when it is news."""
    world = make_world(tmp_path)
    for role in (Role.MASTER, Role.SLAVE, Role.NONE):
        world.add(role, NodeState.RUNNING)
    world.store.move_node(3, NodeState.FAILED, "set up by the test")
    world.agents.states = {1: report(), 2: report(slave=slave()), 3: report(answering=False)}
    world.agents.replies["drain_relay_log"] = _drained({2: "0-1-10"})
    world.agents.hold["fence"] = asyncio.Event()
    world.agents.started["fence"] = asyncio.Event()
    api = ManagerApi(world.nodes, world.reconciler, world.replication, tmp_path / "log")
    heartbeat = {"service_id": world.store.service_id, "node_id": 3, "ip": "10.0.0.3",
                 **report()}

    async def run() -> tuple[dict[str, Any], NodeState, bool]:
        await world.reconciler.cycle()
        world.agents.states[1] = report(restarts=1)
        cycle = asyncio.create_task(world.reconciler.cycle())
        await world.agents.started["fence"].wait()
        assert not world.reconciler.due
        answer = await api.register_node(RegisterParams(state=heartbeat),
                                         CallContext("register_node", principal="node-3"))
        state = world.store.get_node(3).state  # type: ignore[union-attr]
        woken = world.reconciler.due
        assert not cycle.done()  # the failover is still waiting on the fence
        world.agents.hold["fence"].set()
        await cycle
        return answer, state, woken

    answer, state_during, woken = world.run(run())
    assert answer == {"result": "OK"}
    assert state_during is NodeState.FAILED  # the loop moves it, not the heartbeat
    assert woken
    assert world.reconciler.reports[3].mysqld_answering
    assert world.roles()[2] is Role.MASTER
