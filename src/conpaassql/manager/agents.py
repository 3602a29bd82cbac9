"""The manager's side of the agent RPC: a typed client, one method per agent verb.

Each method takes the node and the request (``protocol.agent``'s models) and
returns the agent's reply parsed into its model; a reply that does not parse is
the agent's fault (``RemoteError``). Dumps go in and out as streams.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from pydantic import ValidationError

from conpaassql.domain.node import Node
from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    AgentMethod,
    CertificateInstalled,
    CertificateRequest,
    ConfigurationRequest,
    ConfigureUserRequest,
    CreateDatabaseRequest,
    DatabaseCreated,
    DatabaseDropped,
    DatabaseRequest,
    DatabasesReply,
    DrainRequest,
    DumpLoaded,
    DumpLoginReply,
    DumpLoginRequest,
    DumpRequest,
    Fenced,
    GtidWaited,
    LogReply,
    LogRequest,
    MasterRequest,
    OkReply,
    OptionNamesRequest,
    OptionsRestarted,
    PasswordRequest,
    PasswordSet,
    PerformanceReply,
    ReadOnlyRequest,
    RelayLogDrained,
    ReplicaHostsRequest,
    ReplicaHostsSet,
    ReplicationReply,
    Seeded,
    SeedRequest,
    ServiceOptionsRequest,
    ServiceOptionsSet,
    ServiceOptionsState,
    SlaveRequest,
    SourceAddress,
    SourceRequest,
    UserConfigured,
    UserDeleted,
    UserRequest,
    UsersReply,
    WaitRequest,
)
from conpaassql.protocol.backup import (
    ArchiveRequest,
    ArchiveStatus,
    BackupTaken,
    BackupToStoreRequest,
    JobProgressReply,
    RestoredFromStore,
    RestoreFromStoreRequest,
    VerifiedFromStore,
    VerifyFromStoreRequest,
)
from conpaassql.protocol.base import Reply, Request
from conpaassql.protocol.report import ReplicationStatus, StateReport
from conpaassql.rpc.client import ByteStream, ClientVerb, RpcClient
from conpaassql.rpc.tls import dns_name, node_name

Req = TypeVar("Req", bound=Request)
Rep = TypeVar("Rep", bound=Reply)


class AgentLink:
    """Calls the agents of the service over mutual TLS, with the service's credential.

    Each node is reached at its address and must present the certificate issued
    to that very node (``node-N.<service id>.conpaassql``).
    """

    def __init__(self, secret: str, tls: ssl.SSLContext, service_id: str,
                 timeout: float = 10.0) -> None:
        self._secret = secret
        self._tls = tls
        self._service_id = service_id
        self._timeout = timeout
        self._clients: dict[str, RpcClient] = {}

    def _client(self, node: Node) -> RpcClient:
        url = node.agent_url
        if url is None:
            raise UnreachableError(f"node {node.id}", detail="its address is not known yet")
        key = f"{node.id} {url}"
        if key not in self._clients:
            self._clients[key] = RpcClient(
                url, token=self._secret, timeout=self._timeout, verify=self._tls,
                server_name=dns_name(self._service_id, node_name(node.id)))
        return self._clients[key]

    async def _call(self, node: Node, method: AgentMethod[Req, Rep], request: Req | None,
                    timeout: float | None) -> Rep:
        params = {} if request is None else request.wire()
        verb: ClientVerb = "GET" if method.verb == "GET" else "POST"
        raw = await self._client(node).call(method.name, params, verb=verb, timeout=timeout)
        return _parsed(node, method, raw)

    # -- the server ---------------------------------------------------------

    async def get_server_state(self, node: Node, *, timeout: float | None = None
                               ) -> StateReport:
        """The agent's report of itself (the liveness probe)."""
        return (await self._call(node, protocol.GET_SERVER_STATE, None, timeout)).report

    async def start_server(self, node: Node, *, timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.START_SERVER, None, timeout)

    async def stop_server(self, node: Node, *, timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.STOP_SERVER, None, timeout)

    async def restart_server(self, node: Node, *, timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.RESTART_SERVER, None, timeout)

    async def set_server_configuration(self, node: Node, request: ConfigurationRequest, *,
                                       timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.SET_SERVER_CONFIGURATION, request, timeout)

    async def set_service_options(self, node: Node, request: ServiceOptionsRequest, *,
                                  timeout: float | None = None) -> ServiceOptionsSet:
        """Check (a dry run) or apply the service's server options on the node."""
        return await self._call(node, protocol.SET_SERVICE_OPTIONS, request, timeout)

    async def get_service_options(self, node: Node, request: OptionNamesRequest, *,
                                  timeout: float | None = None) -> ServiceOptionsState:
        return await self._call(node, protocol.GET_SERVICE_OPTIONS, request, timeout)

    async def restart_for_options(self, node: Node, *, timeout: float | None = None
                                  ) -> OptionsRestarted:
        """Restart mysqld with the options it holds (it rolls back if it will not start)."""
        return await self._call(node, protocol.RESTART_FOR_OPTIONS, None, timeout)

    async def get_server_performance(self, node: Node, *, timeout: float | None = None
                                     ) -> PerformanceReply:
        return await self._call(node, protocol.GET_SERVER_PERFORMANCE, None, timeout)

    # -- users, databases, logs ---------------------------------------------

    async def configure_user(self, node: Node, request: ConfigureUserRequest, *,
                             timeout: float | None = None) -> UserConfigured:
        return await self._call(node, protocol.CONFIGURE_USER, request, timeout)

    async def delete_user(self, node: Node, request: UserRequest, *,
                          timeout: float | None = None) -> UserDeleted:
        return await self._call(node, protocol.DELETE_USER, request, timeout)

    async def set_password(self, node: Node, request: PasswordRequest, *,
                           timeout: float | None = None) -> PasswordSet:
        return await self._call(node, protocol.SET_PASSWORD, request, timeout)

    async def get_all_users(self, node: Node, *, timeout: float | None = None) -> UsersReply:
        return await self._call(node, protocol.GET_ALL_USERS, None, timeout)

    async def create_database(self, node: Node, request: CreateDatabaseRequest, *,
                              timeout: float | None = None) -> DatabaseCreated:
        return await self._call(node, protocol.CREATE_DATABASE, request, timeout)

    async def drop_database(self, node: Node, request: DatabaseRequest, *,
                            timeout: float | None = None) -> DatabaseDropped:
        return await self._call(node, protocol.DROP_DATABASE, request, timeout)

    async def list_databases(self, node: Node, *,
                             timeout: float | None = None) -> DatabasesReply:
        return await self._call(node, protocol.LIST_DATABASES, None, timeout)

    async def get_log(self, node: Node, request: LogRequest, *,
                      timeout: float | None = None) -> LogReply:
        return await self._call(node, protocol.GET_LOG, request, timeout)

    # -- dumps ----------------------------------------------------------------

    async def load_dump(self, node: Node, request: DumpRequest, filename: str,
                        chunks: AsyncIterable[bytes]) -> DumpLoaded:
        """Stream a dump into the node's server (as it comes: never whole in memory)."""
        return await self._upload(node, protocol.LOAD_DUMP, request, filename, chunks)

    async def send_mysqldump(self, node: Node, request: DumpRequest, filename: str,
                             chunks: AsyncIterable[bytes]) -> DumpLoaded:
        """``load_dump`` under the seed's name (and file field)."""
        return await self._upload(node, protocol.SEND_MYSQLDUMP, request, filename, chunks)

    async def _upload(self, node: Node, method: AgentMethod[DumpRequest, DumpLoaded],
                      request: DumpRequest, filename: str,
                      chunks: AsyncIterable[bytes]) -> DumpLoaded:
        assert method.file is not None
        raw = await self._client(node).upload(method.name, request.wire(), method.file,
                                              filename, chunks)
        return _parsed(node, method, raw)

    def sqldump(self, node: Node, request: DumpRequest
                ) -> AbstractAsyncContextManager[ByteStream]:
        """A dump of the node's server, read as the agent makes it."""
        return self._client(node).stream(protocol.SQLDUMP.name, request.wire())

    async def open_dump_login(self, node: Node, request: DumpRequest, *,
                              timeout: float | None = None) -> DumpLoginReply:
        """A short-lived account on the node for one ``mariadb-dump`` over TLS."""
        return await self._call(node, protocol.OPEN_DUMP_LOGIN, request, timeout)

    async def close_dump_login(self, node: Node, request: DumpLoginRequest, *,
                               timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.CLOSE_DUMP_LOGIN, request, timeout)

    # -- replication ----------------------------------------------------------

    async def set_up_replica_master(self, node: Node, request: MasterRequest, *,
                                    timeout: float | None = None) -> ReplicationReply:
        return await self._call(node, protocol.SET_UP_REPLICA_MASTER, request, timeout)

    async def set_up_replica_slave(self, node: Node, request: SlaveRequest, *,
                                   timeout: float | None = None) -> ReplicationReply:
        return await self._call(node, protocol.SET_UP_REPLICA_SLAVE, request, timeout)

    async def set_read_only(self, node: Node, request: ReadOnlyRequest, *,
                            timeout: float | None = None) -> OkReply:
        return await self._call(node, protocol.SET_READ_ONLY, request, timeout)

    async def source_address(self, node: Node, request: SourceRequest, *,
                             timeout: float | None = None) -> SourceAddress:
        return await self._call(node, protocol.SOURCE_ADDRESS, request, timeout)

    async def set_replica_hosts(self, node: Node, request: ReplicaHostsRequest, *,
                                timeout: float | None = None) -> ReplicaHostsSet:
        return await self._call(node, protocol.SET_REPLICA_HOSTS, request, timeout)

    async def wait_for_gtid(self, node: Node, request: WaitRequest, *,
                            timeout: float | None = None) -> GtidWaited:
        return await self._call(node, protocol.WAIT_FOR_GTID, request, timeout)

    async def drain_relay_log(self, node: Node, request: DrainRequest, *,
                              timeout: float | None = None) -> RelayLogDrained:
        return await self._call(node, protocol.DRAIN_RELAY_LOG, request, timeout)

    async def fence(self, node: Node, *, timeout: float | None = None) -> Fenced:
        return await self._call(node, protocol.FENCE, None, timeout)

    async def get_replication_status(self, node: Node, *, timeout: float | None = None
                                     ) -> ReplicationStatus | None:
        """The server's replication state (None when the agent cannot read it now)."""
        return (await self._call(node, protocol.GET_REPLICATION_STATUS, None, timeout)).status

    async def seed_from(self, node: Node, request: SeedRequest, *,
                        timeout: float | None = None) -> Seeded:
        """Replace the node's data by a copy of another node's (agent to agent)."""
        return await self._call(node, protocol.SEED_FROM, request, timeout)

    async def backup_to_store(self, node: Node, request: BackupToStoreRequest, *,
                              timeout: float | None = None) -> BackupTaken:
        """A backup of the node's server streamed into the service's store."""
        return await self._call(node, protocol.BACKUP_TO_STORE, request, timeout)

    async def restore_from_store(self, node: Node, request: RestoreFromStoreRequest, *,
                                 timeout: float | None = None) -> RestoredFromStore:
        """Replace the node's data by a backup out of the service's store."""
        return await self._call(node, protocol.RESTORE_FROM_STORE, request, timeout)

    async def get_job_progress(self, node: Node, *, timeout: float | None = None
                               ) -> JobProgressReply:
        """How far the node's backup or restore in the store has got."""
        return await self._call(node, protocol.GET_JOB_PROGRESS, None, timeout)

    async def verify_from_store(self, node: Node, request: VerifyFromStoreRequest, *,
                                timeout: float | None = None) -> VerifiedFromStore:
        """A backup restored on a scratch server of the node and its tables checked."""
        return await self._call(node, protocol.VERIFY_FROM_STORE, request, timeout)

    async def install_certificate(self, node: Node, request: CertificateRequest, *,
                                  timeout: float | None = None) -> CertificateInstalled:
        """The node's certificate issued again: the agent serves it at once."""
        return await self._call(node, protocol.INSTALL_CERTIFICATE, request, timeout)

    # -- binlog archiving -------------------------------------------------------

    async def archive_binlogs(self, node: Node, request: ArchiveRequest, *,
                              timeout: float | None = None) -> ArchiveStatus:
        """The node (the master) archives its binlogs to the store from a GTID on."""
        return await self._call(node, protocol.ARCHIVE_BINLOGS, request, timeout)

    async def stop_archiving(self, node: Node, *, timeout: float | None = None
                             ) -> ArchiveStatus:
        return await self._call(node, protocol.STOP_ARCHIVING, None, timeout)

    async def get_archive_status(self, node: Node, *, timeout: float | None = None
                                 ) -> ArchiveStatus:
        return await self._call(node, protocol.GET_ARCHIVE_STATUS, None, timeout)

    # -- connections ------------------------------------------------------------

    async def forget(self, node: Node) -> None:
        key = f"{node.id} {node.agent_url}"
        if key in self._clients:
            await self._clients.pop(key).aclose()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _parsed(node: Node, method: AgentMethod[Any, Rep], raw: object) -> Rep:
    """The agent's result as ``method``'s reply model."""
    assert method.reply is not None
    try:
        return method.reply.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in problem["loc"]) or "result"
        raise RemoteError(f"node {node.id} answered {method.name} with a malformed "
                          f"reply ({where}: {problem['msg']})") from None
