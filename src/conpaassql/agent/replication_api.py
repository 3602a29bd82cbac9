"""The agent's replication methods: the manager makes this node a master or a slave.

The node never decides its role: its server boots read-only and stays so until
the manager says it is the master. ``fence`` is how a master that lost its role
is kept from taking writes (read-only, then stopped until told otherwise).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError, WrongStateError
from conpaassql.mysql import replication
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    DrainRequest,
    Fenced,
    GtidWaited,
    MasterRequest,
    NoRequest,
    OkReply,
    ReadOnlyRequest,
    RelayLogDrained,
    ReplicaHostsRequest,
    ReplicaHostsSet,
    ReplicationReply,
    ReplicationStatusReply,
    SlaveRequest,
    SourceAddress,
    SourceRequest,
    WaitRequest,
)
from conpaassql.protocol.report import ReplicationStatus
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)


def _position(text: str | None, param: str) -> str | None:
    if text is None:
        return None
    try:
        return str(GtidPosition.parse(text))
    except ValueError as exc:
        raise InvalidArgumentError(param, detail=str(exc)) from None


def source_address(host: str) -> str:
    """The address this machine's connections to ``host`` come from (the kernel's
    choice of route; a UDP "connection" sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


class ReplicationApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.SET_UP_REPLICA_MASTER, self.set_up_replica_master)
        protocol.register(registry, protocol.SET_UP_REPLICA_SLAVE, self.set_up_replica_slave)
        protocol.register(registry, protocol.SET_READ_ONLY, self.set_read_only)
        protocol.register(registry, protocol.SOURCE_ADDRESS, self.source_address)
        protocol.register(registry, protocol.SET_REPLICA_HOSTS, self.set_replica_hosts)
        protocol.register(registry, protocol.WAIT_FOR_GTID, self.wait_for_gtid)
        protocol.register(registry, protocol.DRAIN_RELAY_LOG, self.drain_relay_log)
        protocol.register(registry, protocol.FENCE, self.fence)
        protocol.register(registry, protocol.GET_REPLICATION_STATUS,
                          self.get_replication_status)

    def _ensure_running(self) -> None:
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")

    async def status(self) -> ReplicationStatus | None:
        """The server's replication state, or ``None`` when it cannot be read now."""
        if self.supervisor.state is not AgentState.RUNNING:
            return None
        try:
            return ReplicationStatus.model_validate(
                await replication.replication_status(self.supervisor.session))
        except ConpaasSQLError as exc:
            log.debug("replication status unavailable: %s", exc)
            return None

    async def set_up_replica_master(self, params: MasterRequest,
                                    ctx: CallContext) -> dict[str, Any]:
        """Make this server the writable master (and hold the replication account)."""
        self._ensure_running()
        session = self.supervisor.session
        await replication.make_master(session, semi_sync=params.semi_sync,
                                      semi_sync_timeout_ms=params.semi_sync_timeout)
        if params.lease is not None:
            self.supervisor.intent.lease.set_length(params.lease)  # the manager's length
        self.supervisor.intent.set(True)
        await replication.ensure_replication_accounts(session, params.replication_password,
                                                      params.replica_hosts)
        log.info("this node is now the master")
        return ReplicationReply(replication=await self.status()).wire()

    async def set_up_replica_slave(self, params: SlaveRequest,
                                   ctx: CallContext) -> dict[str, Any]:
        """Replicate from the given master (read-only), from a copy's GTID position or
        from this server's own."""
        self._ensure_running()
        self.supervisor.intent.set(False)
        master = replication.MasterAddress(params.master_host, params.master_port,
                                           params.replication_password,
                                           ssl_ca=self.settings.tls_files.ca)
        await replication.make_slave(
            self.supervisor.session, master, semi_sync=params.semi_sync,
            gtid_position=_position(params.gtid_position, "gtid_position"))
        log.info("this node now replicates from %s:%d", params.master_host, params.master_port)
        return ReplicationReply(replication=await self.status()).wire()

    async def source_address(self, params: SourceRequest, ctx: CallContext) -> dict[str, Any]:
        """The address this node's connections to ``host`` (its master) come from."""
        try:
            address = await asyncio.to_thread(source_address, params.host)
        except OSError as exc:
            raise InvalidArgumentError("host", detail=f"no route: {exc.strerror or exc}") \
                from None
        return SourceAddress(address=address).wire()

    async def set_replica_hosts(self, params: ReplicaHostsRequest,
                                ctx: CallContext) -> dict[str, Any]:
        """The addresses the replication account may connect from (on the master)."""
        self._ensure_running()
        added, removed = await replication.ensure_replication_accounts(
            self.supervisor.session, params.replication_password, params.replica_hosts)
        if added or removed:
            log.info("replication account hosts: added %s, removed %s", added, removed)
        return ReplicaHostsSet(added=added, removed=removed).wire()

    async def set_read_only(self, params: ReadOnlyRequest, ctx: CallContext) -> dict[str, Any]:
        self._ensure_running()
        if params.read_only:
            self.supervisor.intent.set(False)
        await replication.set_read_only(self.supervisor.session, params.read_only)
        return OkReply().wire()

    async def wait_for_gtid(self, params: WaitRequest, ctx: CallContext) -> dict[str, Any]:
        """Wait until this server has applied ``gtid_position``."""
        self._ensure_running()
        position = _position(params.gtid_position, "gtid_position") or ""
        reached = await replication.wait_for_position(self.settings.connect_info(), position,
                                                      params.timeout)
        return GtidWaited(reached=reached, replication=await self.status()).wire()

    async def drain_relay_log(self, params: DrainRequest, ctx: CallContext) -> dict[str, Any]:
        """Stop receiving from the (lost) master and apply what was received."""
        self._ensure_running()
        drained = await replication.drain_relay_log(self.supervisor.session, params.timeout)
        return RelayLogDrained(drained=drained, replication=await self.status()).wire()

    async def fence(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """Take no more writes: the server is killed at once and stays stopped until
        ``start_server`` (it then starts read-only)."""
        await self.supervisor.fence()
        log.warning("fenced: mysqld stopped on the manager's order")
        return Fenced(state=self.supervisor.state.value).wire()

    async def get_replication_status(self, params: NoRequest,
                                     ctx: CallContext) -> dict[str, Any]:
        return ReplicationStatusReply.model_validate({"return": await self.status()}).wire()
