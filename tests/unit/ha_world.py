"""A manager's HA parts for unit tests: the real ``Replication`` and ``Reconciler``,
the real store on a temporary SQLite file, and the real typed agent client
(``AgentLink``) whose transport is a fake that records every call and answers from a
script (each answer parsed by the protocol's reply model, as an agent's would be)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.cloud.clouds import Clouds
from conpaassql.config import ManagerConfig
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import ConpaasSQLError, UnreachableError
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.authority import Authority
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.cycle import Snapshot, frozen
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.manager.store import Store
from conpaassql.protocol.agent import AgentMethod
from conpaassql.protocol.base import Reply as ReplyModel
from conpaassql.protocol.base import Request
from conpaassql.protocol.report import StateReport
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
            reply = self.states.get(node.id, unreachable)
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


def unreachable(node: Node, request: Request | None) -> ConpaasSQLError:
    return UnreachableError(f"node {node.id}", detail="connection refused")


def drained(positions: Mapping[int, str]) -> Callable[[Node, Request | None], Any]:
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


async def slaves_say_nothing(nodes: Sequence[Node], stopped_at: float) -> dict[int, float]:
    """Slaves that do not say when they last confirmed a master's lease."""
    return {node.id: stopped_at for node in nodes}


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
    replication.leases.ask = slaves_say_nothing  # no health port to ask
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
