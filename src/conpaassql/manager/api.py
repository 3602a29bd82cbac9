"""The manager's RPC methods: params, checks, and the seed-era result shapes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, ValidationError, model_validator

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError, MissingArgumentError
from conpaassql.logs import tail_lines
from conpaassql.manager import views
from conpaassql.manager.admin_api import AdminApi
from conpaassql.manager.backup_api import BackupApi
from conpaassql.manager.client_certs import ClientCertificates
from conpaassql.manager.configuration_api import ConfigurationApi
from conpaassql.manager.data_api import DataApi
from conpaassql.manager.loop_monitor import LoopMonitor
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.restore_from import FirstRestore
from conpaassql.manager.router_api import RouterApi
from conpaassql.manager.service import NodeService
from conpaassql.manager.targets import NODE_ID_ALIASES
from conpaassql.protocol.agent import PerformanceReply
from conpaassql.protocol.report import StateReport, mysqld_answering
from conpaassql.rpc.openrpc import add_discovery
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.tls import node_of_name
from conpaassql.rpc.types import Flag, NodeId, Params, PositiveInt, Text

SERVICE_TYPE = "conpaas-mysql"
MAX_LOG_BYTES = 1 << 20
MAX_HISTORY = 1000


class AddNodesParams(Params):
    function: Text | None = None
    count: PositiveInt | None = None
    cloud: Text | None = None

    @model_validator(mode="after")
    def _function_is_agent(self) -> AddNodesParams:
        if self.function is not None and self.function != "agent":
            raise InvalidArgumentError("function", detail="only 'agent' is supported")
        return self


class RemoveNodesParams(Params):
    serviceNodeId: NodeId | None = Field(default=None, validation_alias=NODE_ID_ALIASES)
    count: PositiveInt | None = None


class NodeParams(Params):
    serviceNodeId: NodeId = Field(validation_alias=NODE_ID_ALIASES)


class RegisterParams(Params):
    state: dict[str, Any]

    def report(self) -> StateReport:
        """The agent's report, parsed here, where it arrives."""
        try:
            return StateReport.model_validate(self.state)
        except ValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InvalidArgumentError("state", detail=f"{where}: {problem['msg']}") from None


class ReplicaParams(Params):
    id: NodeId = Field(validation_alias=AliasChoices("id", "serviceNodeId", "serviceNameId",
                                                     "serviceName"))


class LogParams(Params):
    lines: PositiveInt | None = None


class PerformanceParams(Params):
    reset_loop_lag: Flag = False


class HistoryParams(Params):
    limit: Annotated[PositiveInt, Field(le=MAX_HISTORY)] = 100
    serviceNodeId: NodeId | None = Field(default=None, validation_alias=NODE_ID_ALIASES)


class ManagerApi:
    """Binds the manager's use cases to RPC method names."""

    def __init__(self, nodes: NodeService, reconciler: Reconciler, replication: Replication,
                 log_file: Path, monitor: LoopMonitor | None = None) -> None:
        self.nodes = nodes
        self.monitor = monitor or LoopMonitor()
        self.reconciler = reconciler
        self.replication = replication
        self.log_file = log_file
        self.rt = nodes.rt
        self.routers = RouterApi(nodes)
        self.backups = BackupApi(nodes)
        self.first_restore = FirstRestore(self.backups.backups, replication)

    def registry(self) -> Registry:
        registry = Registry()
        registry.add("add_nodes", "POST", self.add_nodes, AddNodesParams)
        registry.add("remove_nodes", "POST", self.remove_nodes, RemoveNodesParams)
        registry.add("list_nodes", "GET", self.list_nodes)
        registry.add("get_node_info", "GET", self.get_node_info, NodeParams)
        registry.add("get_service_info", "GET", self.get_service_info)
        registry.add("get_service_history", "GET", self.get_service_history, HistoryParams)
        registry.add("get_service_performance", "GET", self.get_service_performance,
                     PerformanceParams)
        registry.add("shutdown", "POST", self.shutdown)
        registry.add("getLog", "GET", self.get_log, LogParams)
        registry.add("register_node", "POST", self.register_node, RegisterParams,
                     access="agent")
        registry.add("set_up_replica_master", "POST", self.set_up_replica_master, ReplicaParams)
        registry.add("set_up_replica_slave", "POST", self.set_up_replica_slave, ReplicaParams)
        DataApi(self.nodes).register(registry)
        AdminApi(self.nodes).register(registry)
        self.backups.register(registry)
        ClientCertificates(self.nodes).register(registry)
        self.routers.register(registry)
        ConfigurationApi(self.reconciler.configuration).register(registry)
        add_discovery(registry, "conpaassql manager")
        return registry

    async def add_nodes(self, params: AddNodesParams, ctx: CallContext) -> dict[str, Any]:
        """Add agent nodes; they are PENDING now and provisioned in the background."""
        if params.function is not None and params.count is not None:
            raise InvalidArgumentError("count", detail="give either function or count")
        count = params.count or 1
        created = await self.first_restore.add_nodes(count, params.cloud)
        shown = [views.node_summary(node) for node in created]
        return {"serviceNode": shown[0] if len(shown) == 1 else shown, "nodes": shown}

    async def remove_nodes(self, params: RemoveNodesParams, ctx: CallContext) -> dict[str, Any]:
        """Remove a node by id, or ``count`` nodes (newest first, the master last)."""
        if params.serviceNodeId is None and params.count is None:
            raise MissingArgumentError("serviceNodeId")
        if params.serviceNodeId is not None and params.count is not None:
            raise InvalidArgumentError("count", detail="give either serviceNodeId or count")
        if params.serviceNodeId is not None:
            removed = [self.nodes.remove_node(params.serviceNodeId)]
        else:
            removed = self.nodes.remove_count(params.count or 0)
        return {"result": "OK", "removed": [node.id for node in removed]}

    async def list_nodes(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """The ids of the service's nodes (and a short record of each)."""
        nodes = self.nodes.live_nodes()
        return {
            "serviceNode": [node.id for node in nodes],
            "masters": [node.id for node in nodes if node.role is Role.MASTER],
            "slaves": [node.id for node in nodes if node.role is Role.SLAVE],
            "nodes": [views.node_summary(node) for node in nodes],
        }

    async def get_node_info(self, params: NodeParams, ctx: CallContext) -> dict[str, Any]:
        """One node; ``isRunningMySQL`` is asked of its agent now (what it says is kept
        for the reconcile loop, which moves the node's state if it calls for it)."""
        node = self.nodes.node(params.serviceNodeId)
        report = await self._live_report(node)
        if report is not None:
            self.reconciler.note_report(node, report)
        answering = mysqld_answering(report)
        info = views.node_details(node, report, answering)
        progress = await self.backups.backups.restore_progress(node)
        if progress is not None:
            info["restore"] = {**info["restore"], "progress": progress}
        master_report = self._master_report(node)
        info["replication"] = views.replication_of(node, report, master_report,
                                                   node.id in self.replication.seeding)
        info["history"] = [entry.as_dict() for entry in
                           self.rt.store.history(limit=20, node_id=node.id)]
        return {"serviceNode": info}

    async def _live_report(self, node: Node) -> StateReport | None:
        if not node.state.is_live or node.ip is None:
            return None
        try:
            return await self.rt.agents.get_server_state(
                node, timeout=self.rt.config.probe_timeout)
        except ConpaasSQLError:
            return None

    def _master_report(self, node: Node) -> StateReport | None:
        master = self.nodes.master()
        if master is None or master.id == node.id:
            return None
        return self.reconciler.reports.get(master.id)

    async def set_up_replica_master(self, params: ReplicaParams,
                                    ctx: CallContext) -> dict[str, Any]:
        """Planned switchover: node ``id`` becomes the master; nothing is lost."""
        self.reconciler.configuration.check_idle()
        if self.nodes.node(params.id).role is Role.RESTORED:
            result = await self.replication.promote_restored(params.id)
        else:
            result = await self.replication.switchover(params.id)
        return {"serviceNode": views.node_summary(self.nodes.node(params.id)), **result}

    async def set_up_replica_slave(self, params: ReplicaParams,
                                   ctx: CallContext) -> dict[str, Any]:
        """Make node ``id`` a slave of the master, from a fresh copy of the master."""
        self.reconciler.configuration.check_idle()
        result = self.replication.seeder.reseed(params.id)
        return {"serviceNode": views.node_summary(self.nodes.node(params.id)), **result}

    async def get_service_info(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """State, type, master, node counts, and the latest transitions."""
        state, since = self.rt.store.service_state()
        nodes = self.nodes.live_nodes()
        master = self.nodes.master()
        reports = self.reconciler.reports
        return {
            "state": state.value,
            "type": SERVICE_TYPE,
            "service_id": self.rt.store.service_id,
            "state_since": since,
            "master": None if master is None else {
                "id": master.id, "ip": master.ip, "port": master.mysql_port,
                "state": master.state.value},
            "nodes": len(nodes),
            "nodes_by_state": views.count_states(nodes),
            "cloud": self.rt.clouds.default.describe(),
            "clouds": self.rt.clouds.names,
            "writer": views.endpoint(master),
            "readers": views.readers(nodes, reports, self.rt.config.max_reader_lag),
            "last_failover": self.replication.last_failover,
            "last_cycle": self.reconciler.last_result,
            "transitions": [entry.as_dict() for entry in self.rt.store.history(limit=30)],
            "backup": {**({} if self.reconciler.archiving is None
                          else self.reconciler.archiving.service_info()),
                       **self.backups.scheduler.service_info()},
            **self.routers.service_info(),
            **({"restore_from": restore} if (restore := self.first_restore.info()) else {}),
        }

    async def get_service_history(self, params: HistoryParams,
                                  ctx: CallContext) -> dict[str, Any]:
        """The service's and its nodes' transitions and events, oldest first (the last
        ``limit``; of one node with ``serviceNodeId``)."""
        if params.serviceNodeId is not None:
            self.nodes.node(params.serviceNodeId)  # an unknown node is an error
        entries = self.rt.store.history(limit=params.limit, node_id=params.serviceNodeId)
        return {"history": [entry.as_dict() for entry in entries]}

    async def get_service_performance(self, params: PerformanceParams,
                                      ctx: CallContext) -> dict[str, Any]:
        """Figures read now from every running node's server; under ``manager``, the
        manager's event-loop lag since the last ``reset_loop_lag`` (which starts a new
        window after this reply's figures)."""
        running = [n for n in self.nodes.live_nodes() if n.state is NodeState.RUNNING]
        answers = await asyncio.gather(
            *(self.rt.agents.get_server_performance(node, timeout=self.rt.config.probe_timeout)
              for node in running),
            return_exceptions=True,
        )
        per_node = []
        unreachable = []
        for node, answer in zip(running, answers, strict=True):
            if isinstance(answer, PerformanceReply):
                per_node.append(views.performance_of(node, answer.wire()))
            else:
                unreachable.append(node.id)
        manager = self.monitor.figures()
        if params.reset_loop_lag:
            self.monitor.reset()
        return {"nodes": per_node, "total": views.totals(per_node), "unreachable": unreachable,
                "manager": manager}

    async def shutdown(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """Destroy every node: EPILOGUE now, STOPPED when they are gone."""
        return {"state": self.nodes.shutdown().value}

    async def get_log(self, params: LogParams, ctx: CallContext) -> dict[str, Any]:
        """The manager's log (the last ``lines`` lines if given)."""
        text = await asyncio.to_thread(tail_lines, self.log_file, params.lines, MAX_LOG_BYTES)
        return {"log": text}

    async def register_node(self, params: RegisterParams, ctx: CallContext) -> dict[str, Any]:
        """Registration and heartbeat of an agent (agents only); answered at once, the
        reconcile loop acts on what it says."""
        report = params.report()
        node = self.nodes.register(report, node_of_name(ctx.principal))
        self.reconciler.note_report(node, report)
        self.routers.certificates.check(self.nodes.node(node.id), report)
        # The master's lease (agent.lease); "result" as the seed answered.
        self.replication.leases.heard(node.id, report.lease)
        return {"result": "OK", **self.replication.leases.answer(
            self.nodes.node(node.id), self.nodes.live_nodes())}
