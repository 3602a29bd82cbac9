"""The service's node lifecycle: add, remove, register, shut down.

Requests are answered at once; provisioning and destruction go on in background
tasks that the reconcile loop also resumes after a manager restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conpaassql.cloud.base import NodeRequest
from conpaassql.cloud.clouds import Clouds
from conpaassql.config import ManagerConfig
from conpaassql.context import NodeContext
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role, ServiceState, derive_service_state
from conpaassql.errors import (
    CloudError,
    ConpaasSQLError,
    ForbiddenError,
    InvalidArgumentError,
    NotFoundError,
    WrongStateError,
)
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.authority import Authority
from conpaassql.manager.cloud_watch import IN_CLOUD_SINCE
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.store import Store
from conpaassql.protocol.report import StateReport, public_report

log = logging.getLogger(__name__)

NODE_NAME_PREFIX = "conpaassql-agent"
#: Lost nodes replaced on one cloud within REPLACEMENT_WINDOW seconds, at most: a cloud
#: that keeps losing nodes is left to its operator rather than asked again and again.
MAX_REPLACEMENTS = 3
REPLACEMENT_WINDOW = 600.0
#: How long a write that arrives while the service's master is being chosen waits for
#: it (the loop elects within a cycle or two of a node coming up).
MASTER_WAIT = 10.0
ADD_STATES = frozenset({ServiceState.INIT, ServiceState.PROLOGUE, ServiceState.RUNNING,
                        ServiceState.ADAPTING, ServiceState.STOPPED, ServiceState.ERROR})


@dataclass
class Runtime:
    """The manager's collaborators, wired once in ``manager.app``."""

    config: ManagerConfig
    store: Store
    clouds: Clouds
    agents: AgentLink
    secrets: ServiceSecrets
    manager_url: str  # where agents call the manager (its TLS port for agents)
    authority: Authority
    state_dir: Path = Path(".")  # the manager's (the file store's default is under it)


class NodeService:
    """Use cases over the service's nodes."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._tasks: set[asyncio.Task[Any]] = set()
        self._destroying: set[int] = set()
        self._creating: set[int] = set()  # nodes whose cloud has not answered yet
        self._replaced: dict[str, list[float]] = {}  # cloud -> when it last had replacements
        #: Asks the reconcile loop for a cycle now (set by the loop when it starts).
        self.wake_loop: Callable[[], None] = lambda: None

    # -- helpers ----------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        task = asyncio.create_task(work, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed: %s", task.get_name(), task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def creating(self) -> frozenset[int]:
        """The nodes asked of their cloud, whose cloud has not answered yet."""
        return frozenset(self._creating)

    def live_nodes(self) -> list[Node]:
        return [node for node in self.rt.store.nodes() if node.state.is_live]

    def node(self, node_id: int) -> Node:
        node = self.rt.store.get_node(node_id)
        if node is None:
            raise NotFoundError("serviceNodeId", detail=f"no node {node_id} in this service")
        return node

    def refresh_service_state(self, reason: str) -> None:
        current, _ = self.rt.store.service_state()
        states = [node.state for node in self.rt.store.nodes()]
        target = derive_service_state(current, states)
        if target is not current:
            self.rt.store.set_service_state(target, reason)

    def master(self) -> Node | None:
        for node in self.live_nodes():
            if node.role is Role.MASTER:
                return node
        return None

    def master_due(self) -> bool:
        """No running master yet, but one is on its way: no live node is the master and
        one is running, or asked of its cloud or booting, in a service not shutting down."""
        state, _ = self.rt.store.service_state()
        if state in (ServiceState.EPILOGUE, ServiceState.STOPPED):
            return False
        live = self.live_nodes()
        if any(n.role is Role.MASTER for n in live):
            return False  # elected (a failed master is the failover's to replace)
        return any(n.state in (NodeState.PENDING, NodeState.BOOTING, NodeState.RUNNING)
                   for n in live)

    async def await_master(self, timeout: float = MASTER_WAIT) -> None:
        """Return once the service has a running master, or at once when none is due.

        A write that arrives just after the first node came up (the seed's client polls
        ``get_node_info`` until ``isRunningMySQL``, then configures users) waits for the
        election rather than being refused; after ``timeout`` the caller refuses it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.master_due() and loop.time() < deadline:
            self.wake_loop()
            await asyncio.sleep(0.05)

    # -- add --------------------------------------------------------------

    async def add_nodes(self, count: int, cloud: str | None = None,
                        role: Role = Role.NONE) -> list[Node]:
        state, _ = self.rt.store.service_state()
        if state not in ADD_STATES:
            raise WrongStateError(detail=f"cannot add nodes while the service is {state}")
        cloud = cloud or self.rt.clouds.default.cloud_name
        if not self.rt.clouds.knows(cloud):
            raise InvalidArgumentError("cloud", detail=f"no cloud named {cloud!r} "
                                       f"(known: {', '.join(self.rt.clouds.names)})")
        live = len(self.live_nodes())
        if live + count > self.rt.config.max_nodes:
            raise InvalidArgumentError("count", detail=f"the service may have at most "
                                       f"{self.rt.config.max_nodes} nodes ({live} now)")
        if state is ServiceState.STOPPED:
            self.rt.store.set_service_state(ServiceState.INIT, "nodes added after shutdown")
        created = []
        for _ in range(count):
            created.append(await self._create_one(cloud, role))
        self.refresh_service_state(f"{count} node(s) added")
        return created

    async def _create_one(self, cloud: str, role: Role = Role.NONE) -> Node:
        # Every node starts without a role; the replication controller makes the
        # first healthy one the master and copies it into the others. A node to be
        # restored from a backup is ``restored`` from the start: the controller leaves
        # it alone.
        node = self.rt.store.new_node(NODE_NAME_PREFIX, cloud,
                                      self.rt.config.agent_port, self.rt.config.mysql_port,
                                      role)
        context = NodeContext(
            manager_url=self.rt.manager_url,
            service_id=self.rt.store.service_id,
            node_id=node.id,
            secret=self.rt.secrets.agent_secret,
            root_password=self.rt.secrets.root_password,
            agent_port=node.agent_port,
            health_port=self.rt.config.health_port or None,
            mysql_port=node.mysql_port,
            heartbeat_interval=self.rt.config.heartbeat_interval,
            service_options=self.rt.store.server_options() or None,
            ca_cert=self.rt.authority.ca_pem,
            grant_key=self.rt.authority.grant_public_pem,
        )
        issued = self.rt.authority.issue_node(node.id)
        context = replace(context, tls_cert=issued.cert_pem, tls_key=issued.key_pem)
        self._creating.add(node.id)
        try:
            await self.rt.store.durable()  # its id is not given twice after a crash
            driver = self.rt.clouds.get(cloud)
            made = await driver.create_node(NodeRequest(node.id, node.name, context))
        except ConpaasSQLError as exc:
            self.rt.store.move_node(node.id, NodeState.TERMINATED, f"cloud refused: {exc}")
            if isinstance(exc, CloudError):
                raise
            raise CloudError(str(exc)) from None
        finally:
            self._creating.discard(node.id)
        node = self.rt.store.update_node(
            node.id, ip=node.ip or made.ip, cloud_ref=made.ref,
            details={**self.node(node.id).details, IN_CLOUD_SINCE: time.time(),
                     **({"health_port": context.health_port} if context.health_port else {})})
        if not node.state.is_live:
            # Removed (or the service shut down) while its cloud was making it.
            self.rt.store.record_event(f"node {node.id} was removed while its cloud made "
                                       f"it: destroying {made.ref}", node.id)
            await driver.destroy_node(made.ref)
        return node

    async def replace_lost(self, lost: Node) -> Node | None:
        """A node its cloud lost: a new node on the same cloud takes its place.

        Not when the service is shutting down, nor for a node that never ran (a
        cloud that drops nodes while they boot would be asked again and again).
        """
        why = f"node {lost.id} was lost by cloud {lost.cloud}"
        refusal = self._no_replacement(lost)
        if refusal is not None:
            self.rt.store.record_event(f"{why}; not replaced: {refusal}", lost.id)
            return None
        now = time.monotonic()
        self._replaced[lost.cloud] = [*self._recent_replacements(lost.cloud, now), now]
        try:
            node = await self._create_one(lost.cloud)
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"{why}; replacing it failed: {exc}", lost.id)
            return None
        self.rt.store.record_event(f"{why}; node {node.id} replaces it", node.id)
        self.refresh_service_state(f"node {node.id} replaces lost node {lost.id}")
        return node

    def _recent_replacements(self, cloud: str, now: float) -> list[float]:
        return [at for at in self._replaced.get(cloud, []) if now - at < REPLACEMENT_WINDOW]

    def _no_replacement(self, lost: Node) -> str | None:
        """Why the lost node is not to be replaced, if it is not."""
        state, _ = self.rt.store.service_state()
        if not self.rt.config.replace_lost_nodes:
            return "replace_lost_nodes is off"
        if state in (ServiceState.EPILOGUE, ServiceState.STOPPED):
            return f"the service is {state}"
        if lost.registered_at is None:
            return "it never ran"
        if len(self.live_nodes()) >= self.rt.config.max_nodes:
            return f"the service has max_nodes ({self.rt.config.max_nodes}) nodes"
        if len(self._recent_replacements(lost.cloud, time.monotonic())) >= MAX_REPLACEMENTS:
            return (f"{MAX_REPLACEMENTS} nodes of cloud {lost.cloud} were replaced in the "
                    f"last {REPLACEMENT_WINDOW / 60:.0f} minutes")
        if not self.rt.clouds.knows(lost.cloud):
            return f"cloud {lost.cloud} is no longer configured"
        return None

    # -- remove -----------------------------------------------------------

    def remove_node(self, node_id: int, reason: str = "removed on request") -> Node:
        node = self.node(node_id)
        if not node.state.is_live:
            raise WrongStateError(detail=f"node {node_id} is {node.state} already")
        return self._start_removal(node, reason)

    def remove_count(self, count: int) -> list[Node]:
        live = self.live_nodes()
        if count > len(live):
            raise InvalidArgumentError("count", detail=f"the service has {len(live)} nodes")
        # Newest first, the master last.
        ordered = sorted(live, key=lambda n: (n.role is Role.MASTER, -n.id))
        return [self._start_removal(node, "removed on request") for node in ordered[:count]]

    def _start_removal(self, node: Node, reason: str) -> Node:
        node = self.rt.store.move_node(node.id, NodeState.TERMINATING, reason)
        if node.role is Role.MASTER:
            # The replication controller elects the most advanced slave next cycle.
            node = self.rt.store.update_node(node.id, role=Role.NONE)
        self.ensure_destroying(node)
        self.refresh_service_state(f"node {node.id} {reason}")
        return node

    def ensure_destroying(self, node: Node) -> None:
        """Destroy a TERMINATING node in the background (once)."""
        if node.id in self._destroying:
            return
        self._destroying.add(node.id)
        self.spawn(self._destroy(node), f"destroy node {node.id}")

    async def _destroy(self, node: Node) -> None:
        try:
            await self.rt.store.durable()  # destroyed only once its removal is recorded
            if node.cloud_ref:
                await self.rt.clouds.get(node.cloud).destroy_node(node.cloud_ref)
            await self.rt.agents.forget(node)
            self.rt.store.move_node(node.id, NodeState.TERMINATED, "destroyed by the cloud")
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"destroying node {node.id} failed: {exc}", node.id)
            raise
        finally:
            self._destroying.discard(node.id)
        self.refresh_service_state(f"node {node.id} destroyed")
        self._after_destroy()

    def _after_destroy(self) -> None:
        state, _ = self.rt.store.service_state()
        if state is ServiceState.EPILOGUE and not self.rt.store.nodes():
            self.rt.store.set_service_state(ServiceState.STOPPED, "all nodes destroyed")

    # -- shutdown ---------------------------------------------------------

    def shutdown(self) -> ServiceState:
        state, _ = self.rt.store.service_state()
        if state in (ServiceState.EPILOGUE, ServiceState.STOPPED):
            raise WrongStateError(detail=f"the service is {state} already")
        self.rt.store.set_service_state(ServiceState.EPILOGUE, "shutdown requested")
        nodes = self.live_nodes()
        for node in nodes:
            self._start_removal(node, "service shutdown")
        for node in self.rt.store.nodes():
            if node.state is NodeState.TERMINATING:
                self.ensure_destroying(node)
        self._after_destroy()
        return ServiceState.EPILOGUE

    # -- agents calling in ------------------------------------------------

    def register(self, report: StateReport, certified_node: int | None) -> Node:
        """An agent's registration or heartbeat; returns the node as updated.

        ``certified_node`` is the node its TLS certificate names: an agent speaks
        for its own node only.
        """
        node_id = report.node_id
        if report.service_id != self.rt.store.service_id or node_id is None:
            raise ForbiddenError(detail="not an agent of this service")
        if certified_node != node_id:
            raise ForbiddenError(detail=f"the certificate is not node {node_id}'s")
        node = self.rt.store.get_node(node_id)
        if node is None or not node.state.is_live:
            raise ForbiddenError(detail=f"node {node_id} is not part of this service")
        now = time.time()
        first = "last_seen" not in node.details
        details = {**node.details, "agent": public_report(report), "last_seen": now}
        node = self.rt.store.update_node(node.id, details=details,
                                         registered_at=node.registered_at or now,
                                         ip=node.ip or report.ip or None)
        if first:
            self.rt.store.record_event(f"agent of node {node.id} registered", node.id)
        if report.event:
            self.rt.store.record_event(f"node {node.id}: {report.event[:500]}", node.id)
        return node

