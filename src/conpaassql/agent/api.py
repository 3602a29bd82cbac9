"""The agent's RPC methods (docs/protocol.md, "Agent methods")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from conpaassql.agent.admin_api import AdminApi
from conpaassql.agent.archive_api import ArchiveApi
from conpaassql.agent.cert_api import CertificateApi
from conpaassql.agent.data_api import DataApi
from conpaassql.agent.dump_logins import DumpLogins
from conpaassql.agent.options_api import OptionsApi
from conpaassql.agent.replication_api import ReplicationApi
from conpaassql.agent.seed_api import SeedApi
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.store_api import StoreApi
from conpaassql.agent.supervisor import Supervisor
from conpaassql.agent.verify_api import VerifyApi
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError
from conpaassql.mysql.config import PROTECTED_OPTIONS, normalise_option, validate_option_value
from conpaassql.mysql.status import MetricsSampler, rate_name, read_status, read_variables
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    ConfigurationRequest,
    NoRequest,
    OkReply,
    PerformanceReply,
    ServerStateReply,
)
from conpaassql.protocol.report import LeaseHeld, MysqldStatus, ReplicationStatus, StateReport
from conpaassql.rpc.openrpc import add_discovery
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)

SECTIONS = frozenset({"mysqld", "mariadbd", "server", "mariadb"})
SAMPLE_INTERVAL = 1.0
OWN_STATEMENTS = "Agent_statements"


class AgentApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.sampler = MetricsSampler()
        self.version: str | None = None
        self.replication = ReplicationApi(settings, supervisor)
        self.certificates = CertificateApi(settings, supervisor)
        self.options = OptionsApi(settings, supervisor)
        self.archive = ArchiveApi(settings, supervisor)
        self.dump_logins = DumpLogins(supervisor)

    def registry(self) -> Registry:
        registry = Registry()
        protocol.register(registry, protocol.GET_SERVER_STATE, self.get_server_state)
        protocol.register(registry, protocol.START_SERVER, self.start_server)
        protocol.register(registry, protocol.STOP_SERVER, self.stop_server)
        protocol.register(registry, protocol.RESTART_SERVER, self.restart_server)
        protocol.register(registry, protocol.SET_SERVER_CONFIGURATION,
                          self.set_server_configuration)
        protocol.register(registry, protocol.GET_SERVER_PERFORMANCE,
                          self.get_server_performance)
        DataApi(self.settings, self.supervisor, self.dump_logins).register(registry)
        AdminApi(self.settings, self.supervisor).register(registry)
        SeedApi(self.settings, self.supervisor).register(registry)
        store = StoreApi(self.settings, self.supervisor)
        store.register(registry)
        VerifyApi(store).register(registry)
        self.replication.register(registry)
        self.certificates.register(registry)
        self.options.register(registry)
        self.archive.register(registry)
        add_discovery(registry, "conpaassql agent", access="manager")
        return registry

    async def state_report(self) -> StateReport:
        """What the agent tells of itself: the probe's answer and the heartbeat."""
        context = self.settings.context
        answering = await self.supervisor.answering()
        mysqld = MysqldStatus(**self.supervisor.report(answering), version=self.version)
        replication: ReplicationStatus | None = None
        if answering:
            replication = await self.replication.status()
        return StateReport(
            id=context.node_id,
            node_id=context.node_id,
            service_id=context.service_id,
            name=f"conpaassql-agent-{context.node_id}",
            ip=self.settings.bind,
            port=self.settings.agent_port,
            mysqld_port=self.settings.mysql_port,
            health_port=self.settings.health_port,
            tls_names=self.certificates.names(),
            state=self.supervisor.state.value,
            mysqld=mysqld,
            replication=replication,
            lease=self._lease_held(),
            **self.options.report(),
        )

    def _lease_held(self) -> LeaseHeld | None:
        """The master's lease as held, for the manager to know which slaves it asks."""
        intent = self.supervisor.intent
        return intent.lease.as_held() if intent.master else None

    async def get_server_state(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """The agent's state and its server's (the manager's liveness probe)."""
        return ServerStateReply.model_validate({"return": await self.state_report()}).wire()

    async def start_server(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """Start mysqld (and keep it running)."""
        await self.supervisor.start()
        return OkReply().wire()

    async def stop_server(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """Stop mysqld; it stays stopped until ``start_server``."""
        await self.supervisor.stop()
        return OkReply().wire()

    async def restart_server(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        await self.supervisor.restart()
        return OkReply().wire()

    async def set_server_configuration(self, params: ConfigurationRequest,
                                       ctx: CallContext) -> dict[str, Any]:
        """Set one server option in my.cnf and restart mysqld with it."""
        if params.section.lower() not in SECTIONS:
            raise InvalidArgumentError("section", detail=f"one of {sorted(SECTIONS)}")
        name = normalise_option(params.id_param)
        if name in PROTECTED_OPTIONS:
            raise InvalidArgumentError("id_param", detail=f"{name} is managed by the agent")
        value = validate_option_value(params.value)
        before = self.settings.overrides()

        def apply() -> None:
            self.settings.save_overrides({**before, name: value})

        def revert() -> None:
            self.settings.save_overrides(before)

        await self.supervisor.reconfigure(apply, revert)
        return OkReply().wire()

    async def get_server_performance(self, params: NoRequest,
                                     ctx: CallContext) -> dict[str, Any]:
        """Figures read from the server: rates over the last seconds and gauges."""
        if self.supervisor.state is not AgentState.RUNNING:
            return PerformanceReply(state=self.supervisor.state.value).wire()
        await self._sample()
        latest = self.sampler.latest()
        rates = self.sampler.rates()
        own = rates.pop(rate_name(OWN_STATEMENTS), 0.0)
        return PerformanceReply.model_validate({
            "state": self.supervisor.state.value,
            **rates,
            # Questions less the agent's own probes and samples.
            "queries_per_second": max(0.0, rates.get("questions_per_second", 0.0) - own),
            # Less the agent's own connection, whose status query was running.
            "connections": max(0, latest.get("Threads_connected", 0) - 1),
            "threads_running": max(0, latest.get("Threads_running", 0) - 1),
            "uptime": latest.get("Uptime", 0),
            "questions": latest.get("Questions", 0),
            "slow_queries": latest.get("Slow_queries", 0),
            "total_connections": latest.get("Connections", 0),
        }).wire()

    async def _sample(self) -> None:
        try:
            status = await read_status(self.supervisor.session)
        except ConpaasSQLError as exc:
            log.debug("status sample failed: %s", exc)
            return
        status[OWN_STATEMENTS] = self.supervisor.session.statements
        self.sampler.add(time.monotonic(), status)

    async def sample_forever(self) -> None:
        """Keep a recent history of the server's counters for the rates."""
        while True:
            if self.supervisor.state is AgentState.RUNNING:
                await self._sample()
                await self.dump_logins.sweep_now_and_then()
                if self.version is None:
                    with contextlib.suppress(ConpaasSQLError):
                        found = await read_variables(self.supervisor.session, ["version"])
                        self.version = found.get("version")
            await asyncio.sleep(SAMPLE_INTERVAL)
