"""The agent's replication methods: the manager makes this node a master or a slave.

The node never decides its role: its server boots read-only and stays so until
the manager says it is the master. ``fence`` is how a master that lost its role
is kept from taking writes (read-only, then stopped until told otherwise).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError, WrongStateError
from conpaassql.mysql import replication
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import Flag, Params, PositiveInt, Text

log = logging.getLogger(__name__)

Port = Annotated[int, Field(ge=1, le=65535)]
Timeout = Annotated[float, Field(gt=0, le=3600)]


def _position(text: str | None, param: str) -> str | None:
    if text is None:
        return None
    try:
        return str(GtidPosition.parse(text))
    except ValueError as exc:
        raise InvalidArgumentError(param, detail=str(exc)) from None


def _replica_host(value: str) -> str:
    """An IP address (the replication account's host)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("must be an IP address") from None


ReplicaHosts = Annotated[list[Annotated[Text, AfterValidator(_replica_host)]],
                        Field(max_length=1024)]


class MasterParams(Params):
    replication_password: Text
    semi_sync: Flag = True
    semi_sync_timeout: PositiveInt = 5000  # milliseconds
    replica_hosts: ReplicaHosts = []  # the nodes' addresses: where slaves connect from


class ReplicaHostsParams(Params):
    replication_password: Text
    replica_hosts: ReplicaHosts


class SourceParams(Params):
    host: Annotated[Text, AfterValidator(_replica_host)]


def source_address(host: str) -> str:
    """The address this machine's connections to ``host`` come from (the kernel's
    choice of route; a UDP "connection" sends nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


class SlaveParams(Params):
    master_host: Text
    master_port: Port = 3306
    replication_password: Text
    gtid_position: Text | None = None
    semi_sync: Flag = True


class WaitParams(Params):
    gtid_position: Text
    timeout: Timeout = 30.0


class DrainParams(Params):
    timeout: Timeout = 30.0


class ReadOnlyParams(Params):
    read_only: Flag = True


class ReplicationApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor

    def register(self, registry: Registry) -> None:
        registry.add("set_up_replica_master", "POST", self.set_up_replica_master, MasterParams,
                     access="manager")
        registry.add("set_up_replica_slave", "POST", self.set_up_replica_slave, SlaveParams,
                     access="manager")
        registry.add("set_read_only", "POST", self.set_read_only, ReadOnlyParams,
                     access="manager")
        registry.add("source_address", "GET", self.source_address, SourceParams,
                     access="manager")
        registry.add("set_replica_hosts", "POST", self.set_replica_hosts, ReplicaHostsParams,
                     access="manager")
        registry.add("wait_for_gtid", "POST", self.wait_for_gtid, WaitParams,
                     access="manager")
        registry.add("drain_relay_log", "POST", self.drain_relay_log, DrainParams,
                     access="manager")
        registry.add("fence", "POST", self.fence, access="manager")
        registry.add("get_replication_status", "GET", self.get_replication_status,
                     access="manager")

    def _ensure_running(self) -> None:
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")

    async def status(self) -> dict[str, Any] | None:
        """The server's replication state, or ``None`` when it cannot be read now."""
        if self.supervisor.state is not AgentState.RUNNING:
            return None
        try:
            return await replication.replication_status(self.supervisor.session)
        except ConpaasSQLError as exc:
            log.debug("replication status unavailable: %s", exc)
            return None

    async def set_up_replica_master(self, params: MasterParams,
                                    ctx: CallContext) -> dict[str, Any]:
        """Make this server the writable master (and hold the replication account)."""
        self._ensure_running()
        session = self.supervisor.session
        await replication.make_master(session, semi_sync=params.semi_sync,
                                      semi_sync_timeout_ms=params.semi_sync_timeout)
        await replication.ensure_replication_accounts(session, params.replication_password,
                                                      params.replica_hosts)
        log.info("this node is now the master")
        return {"return": "OK", "replication": await self.status()}

    async def set_up_replica_slave(self, params: SlaveParams,
                                   ctx: CallContext) -> dict[str, Any]:
        """Replicate from the given master (read-only), from a copy's GTID position or
        from this server's own."""
        self._ensure_running()
        master = replication.MasterAddress(params.master_host, params.master_port,
                                           params.replication_password,
                                           ssl_ca=self.settings.tls_files.ca)
        await replication.make_slave(
            self.supervisor.session, master, semi_sync=params.semi_sync,
            gtid_position=_position(params.gtid_position, "gtid_position"))
        log.info("this node now replicates from %s:%d", params.master_host, params.master_port)
        return {"return": "OK", "replication": await self.status()}

    async def source_address(self, params: SourceParams, ctx: CallContext) -> dict[str, Any]:
        """The address this node's connections to ``host`` (its master) come from."""
        try:
            address = await asyncio.to_thread(source_address, params.host)
        except OSError as exc:
            raise InvalidArgumentError("host", detail=f"no route: {exc.strerror or exc}") \
                from None
        return {"return": "OK", "address": address}

    async def set_replica_hosts(self, params: ReplicaHostsParams,
                                ctx: CallContext) -> dict[str, Any]:
        """The addresses the replication account may connect from (on the master)."""
        self._ensure_running()
        added, removed = await replication.ensure_replication_accounts(
            self.supervisor.session, params.replication_password, params.replica_hosts)
        if added or removed:
            log.info("replication account hosts: added %s, removed %s", added, removed)
        return {"return": "OK", "added": added, "removed": removed}

    async def set_read_only(self, params: ReadOnlyParams, ctx: CallContext) -> dict[str, Any]:
        self._ensure_running()
        await replication.set_read_only(self.supervisor.session, params.read_only)
        return {"return": "OK"}

    async def wait_for_gtid(self, params: WaitParams, ctx: CallContext) -> dict[str, Any]:
        """Wait until this server has applied ``gtid_position``."""
        self._ensure_running()
        position = _position(params.gtid_position, "gtid_position") or ""
        reached = await replication.wait_for_position(self.settings.connect_info(), position,
                                                      params.timeout)
        return {"return": "OK", "reached": reached, "replication": await self.status()}

    async def drain_relay_log(self, params: DrainParams, ctx: CallContext) -> dict[str, Any]:
        """Stop receiving from the (lost) master and apply what was received."""
        self._ensure_running()
        drained = await replication.drain_relay_log(self.supervisor.session, params.timeout)
        return {"return": "OK", "drained": drained, "replication": await self.status()}

    async def fence(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """Take no more writes: the server is killed at once and stays stopped until
        ``start_server`` (it then starts read-only)."""
        await self.supervisor.fence()
        log.warning("fenced: mysqld stopped on the manager's order")
        return {"return": "OK", "state": self.supervisor.state.value}

    async def get_replication_status(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        return {"return": await self.status()}
