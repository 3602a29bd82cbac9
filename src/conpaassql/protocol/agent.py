"""The agent's RPC methods: each one's params, its reply, and how it is called.

``METHODS`` lists them all; the agent registers its handlers from it (so that
``rpc.discover`` describes every one with these very params) and the manager's
typed client (``manager.agents``) calls them through it, never by a name of its
own. A method whose ``reply`` is None answers with a byte stream.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from conpaassql.names import (
    DEFAULT_HOST,
    SERVICE_USER_PREFIX,
    CharsetName,
    DatabaseName,
    Host,
    ManageableUser,
    Password,
    Privileges,
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
from conpaassql.protocol.base import OpenReply, Reply, Request
from conpaassql.protocol.report import ReplicationStatus, StateReport
from conpaassql.rpc.registry import Access, Handler, Registry, Verb
from conpaassql.rpc.types import Flag, PositiveInt, Text

# -- value types --------------------------------------------------------------

Port = Annotated[int, Field(ge=1, le=65535)]
Timeout = Annotated[float, Field(gt=0, le=3600)]
LogName = Literal["agent", "error", "slow"]
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 10_000
#: A copy ticket is this many random bytes, in hex (``mysql.socket_copy`` makes it).
TICKET_BYTES = 32
#: How a copy travels: straight over a socket between the tools (``socket``: fast,
#: but not encrypted), relayed by both agents over the RPC connection (``http``: over
#: mutual TLS), or ``auto``: the socket between nodes on loopback addresses (one
#: machine), unless the source cannot connect to it; the RPC stream otherwise.
Transport = Literal["auto", "socket", "http"]
#: What is copied: the datadir (``physical``: mariabackup), a dump (``logical``), or the
#: datadir unless one of the two nodes cannot run mariabackup (``auto``).
CopyMethod = Literal["auto", "physical", "logical"]


def ip_address(value: str) -> str:
    """``value`` if it is an IP address (normalised)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("must be an IP address") from None


def agent_url(value: str) -> str:
    """``value`` as ``https://host:port/`` if it is an agent's URL."""
    if any(char.isspace() for char in value):
        raise ValueError("must be an https:// URL without spaces")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be an https:// URL with a valid port") from None
    if parts.scheme != "https":
        raise ValueError("must be an https:// URL (agents serve only TLS)")
    if not parts.hostname:
        raise ValueError("must name a host")
    if port is None:
        raise ValueError("must give the agent's port")
    if parts.username is not None or parts.password is not None:
        raise ValueError("may not hold credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be the agent's root URL (no path, query or fragment)")
    return f"{parts.scheme}://{parts.netloc}/"


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def host_name(value: str) -> str:
    """``value`` if it is an IP address or a DNS host name."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not _HOST_NAME.fullmatch(value):
        raise ValueError("must be an IP address or a host name")
    return value


IpAddress = Annotated[Text, AfterValidator(ip_address)]
ReplicaHosts = Annotated[list[IpAddress], Field(max_length=1024)]
AgentUrl = Annotated[Text, AfterValidator(agent_url)]
HostName = Annotated[Text, AfterValidator(host_name)]

# -- requests -------------------------------------------------------------------


class NoRequest(Request):
    """A method that takes no params."""


class ConfigurationRequest(Request):
    section: Text
    id_param: Text
    value: Text


MAX_OPTIONS = 200
OptionValues = Annotated[dict[Annotated[str, Field(max_length=64)], Text],
                         Field(max_length=MAX_OPTIONS)]


class ServiceOptionsRequest(Request):
    """The service's whole set of server options (the manager's), and its digest."""

    options: OptionValues
    generation: Annotated[str, Field(pattern="^[0-9a-f]{16}$")]
    dry_run: Flag = False  # check them against this server only; change nothing


class OptionNamesRequest(Request):
    names: Annotated[list[Annotated[str, Field(max_length=64)]],
                     Field(max_length=MAX_OPTIONS)] = []


class ConfigureUserRequest(Request):
    username: ManageableUser
    password: Password
    host: Host = DEFAULT_HOST
    database: DatabaseName | None = None
    privileges: Privileges | None = None


class UserRequest(Request):
    username: ManageableUser
    host: Host = DEFAULT_HOST


class PasswordRequest(Request):
    username: ManageableUser
    password: Password
    host: Host = DEFAULT_HOST


class CreateDatabaseRequest(Request):
    database: DatabaseName
    character_set: CharsetName | None = None
    collation: CharsetName | None = None


class DatabaseRequest(Request):
    database: DatabaseName


class LogRequest(Request):
    log: LogName = "agent"
    lines: Annotated[PositiveInt, Field(le=MAX_LOG_LINES)] = DEFAULT_LOG_LINES


class DumpRequest(Request):
    """An optional database: the one a dump is loaded into, or the one exported."""

    database: Text | None = None


class DumpLoginRequest(Request):
    """One of the node's dump accounts (``open_dump_login``)."""

    user: Annotated[str, Field(pattern=rf"^{SERVICE_USER_PREFIX}dump_[0-9a-f]{{12}}$")]


class MasterRequest(Request):
    replication_password: Text
    semi_sync: Flag = True
    semi_sync_timeout: PositiveInt = 5000  # milliseconds
    replica_hosts: ReplicaHosts = []  # the nodes' addresses: where slaves connect from
    #: Seconds of the lease the manager gives with the role (None: the agent's own).
    lease: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] | None = None


class SlaveRequest(Request):
    master_host: Text
    master_port: Port = 3306
    replication_password: Text
    gtid_position: Text | None = None
    semi_sync: Flag = True


class ReadOnlyRequest(Request):
    read_only: Flag = True


class SourceRequest(Request):
    host: IpAddress


class ReplicaHostsRequest(Request):
    replication_password: Text
    replica_hosts: ReplicaHosts


class WaitRequest(Request):
    gtid_position: Text
    timeout: Timeout = 30.0


class DrainRequest(Request):
    timeout: Timeout = 30.0


class GrantRequest(Request):
    grant: Text | None = None  # the manager's copy grant (another node calling)


class PushRequest(GrantRequest):
    host: HostName
    port: Port
    ticket: Annotated[str, Field(pattern=f"^[0-9a-f]{{{2 * TICKET_BYTES}}}$")]


class SeedRequest(Request):
    source: AgentUrl
    transport: Transport = "auto"
    method: CopyMethod = "auto"
    grant: Text | None = None  # the manager's grant to copy the source (shown to it)





#: A PEM certificate or key: printable ASCII lines, bounded.
Pem = Annotated[str, Field(min_length=1, max_length=16384, pattern=r"^[\x20-\x7e\r\n]+$")]


class CertificateRequest(Request):
    """The node's certificate issued again (new addresses in it) and its new key."""

    cert: Pem
    key: Pem = Field(repr=False)



# -- replies --------------------------------------------------------------------


class OkReply(Reply):
    """``{"return": "OK"}`` and what a method adds to it."""

    ok: str = Field(default="OK", alias="return")


class ServerStateReply(Reply):
    report: StateReport = Field(alias="return")

    def wire(self) -> dict[str, Any]:
        return {"return": self.report.wire()}


class PerformanceReply(OpenReply):
    """Rates (``*_per_second``) and gauges; the rates are extra keys, as the server
    has them."""

    omitted_if_none: ClassVar[frozenset[str]] = frozenset({
        "connections", "threads_running", "uptime", "questions", "slow_queries",
        "total_connections"})

    state: str
    queries_per_second: float = 0.0
    connections: int | None = None
    threads_running: int | None = None
    uptime: int | None = None
    questions: int | None = None
    slow_queries: int | None = None
    total_connections: int | None = None


class UserConfigured(Reply):
    omitted_if_none: ClassVar[frozenset[str]] = frozenset({"note"})

    username: str
    host: str
    created: bool
    database: str | None = None
    privileges: list[str] = []
    on: str | None = None  # what the privileges are on: `db`.* or `%`.* (every database)
    grant_option: bool = False
    grants: list[str] = []  # SHOW GRANTS, password hash redacted
    global_privileges: list[str] = []
    note: str | None = None


class UserDeleted(Reply):
    username: str
    host: str
    deleted: bool = True


class PasswordSet(Reply):
    username: str
    host: str


class UserAccount(Reply):
    username: str
    host: str
    can_login: bool
    locked: bool
    password_set: bool
    password_expired: bool
    plugin: str
    reserved: bool
    grants: list[str] = []


class UsersReply(OpenReply):
    """``users`` in full, beside the seed's ``user1``, ``user2``... keys."""

    users: list[UserAccount] = []


class DatabaseCreated(Reply):
    database: str
    character_set: str | None = None
    collation: str | None = None


class DatabaseDropped(Reply):
    database: str
    dropped: bool = True


class DatabaseInfo(Reply):
    database: str
    character_set: str | None = None
    collation: str | None = None
    tables: int = 0
    views: int = 0
    data_bytes: int = 0
    index_bytes: int = 0
    bytes: int = 0


class DatabasesReply(Reply):
    databases: list[DatabaseInfo] = []


class LogReply(Reply):
    log: str = ""


class DumpLoaded(OkReply):
    bytes: int
    sql_bytes: int
    seconds: float
    gzip: bool | None = None


class DumpLoginReply(OkReply):
    """A short-lived account to run ``mariadb-dump`` with against the node, over TLS:
    its name and password, the server's port, and the tool's arguments but the login
    (the export's options, then the databases)."""

    user: str
    password: str = Field(repr=False)
    port: int
    args: list[str]


class ReplicationReply(OkReply):
    """A change of role, and the server's replication state after it."""

    replication: ReplicationStatus | None = None


class SourceAddress(OkReply):
    address: str


class ReplicaHostsSet(OkReply):
    added: list[str] = []
    removed: list[str] = []


class GtidWaited(ReplicationReply):
    reached: bool


class RelayLogDrained(ReplicationReply):
    drained: bool


class Fenced(OkReply):
    state: str


class ReplicationStatusReply(Reply):
    status: ReplicationStatus | None = Field(default=None, alias="return")


class CertificateInstalled(OkReply):
    names: list[str] = []  # the DNS names and addresses the certificate now served holds
    mysqld_reloaded: bool = False  # mysqld serves it (FLUSH SSL); else at its next start
    https_reloaded: bool = False  # the agent's own port serves it


class BackupPushed(OkReply):
    seconds: float




class Seeded(OpenReply):
    """The copy: where it stands, its size, and how it came (a physical copy adds its
    own figures: binlog file, prepare and swap times...)."""

    ok: str = Field(default="OK", alias="return")
    gtid_position: str = ""
    bytes: int = 0
    seconds: float = 0.0
    method: str = "physical"
    transport: str = "http"



class ServiceOptionsSet(Reply):
    """The options as this server spells them, which took effect at once (``SET GLOBAL``)
    and which wait for a restart."""

    generation: str
    options: dict[str, str] = {}
    dynamic: list[str] = []
    static: list[str] = []
    applied: list[str] = []
    pending_restart: list[str] = []


class ServiceOptionsState(Reply):
    """The node's copy of the service's options, their values in effect now, and the
    options changed since mysqld started that need a restart."""

    generation: str | None = None
    options: dict[str, str] = {}
    effective: dict[str, str | None] = {}
    pending_restart: list[str] = []


class OptionsRestarted(OkReply):
    generation: str | None = None
    seconds: float = 0.0


# -- the methods ----------------------------------------------------------------

Req = TypeVar("Req", bound=Request)
Rep = TypeVar("Rep", bound=Reply)


@dataclass(frozen=True)
class AgentMethod(Generic[Req, Rep]):
    """One agent method: its name, verb, params and reply (None: a byte stream)."""

    name: str
    verb: Verb
    request: type[Req]
    reply: type[Rep] | None
    file: str | None = None  # an UPLOAD's file field
    access: Access = "manager"

    @property
    def files(self) -> tuple[str, ...]:
        return () if self.file is None else (self.file,)


def _method(name: str, verb: Verb, request: type[Req], reply: type[Rep] | None,
            **more: Any) -> AgentMethod[Req, Rep]:
    return AgentMethod(name, verb, request, reply, **more)


GET_SERVER_STATE = _method("get_server_state", "GET", NoRequest, ServerStateReply)
START_SERVER = _method("start_server", "POST", NoRequest, OkReply)
STOP_SERVER = _method("stop_server", "POST", NoRequest, OkReply)
RESTART_SERVER = _method("restart_server", "POST", NoRequest, OkReply)
SET_SERVER_CONFIGURATION = _method("set_server_configuration", "POST", ConfigurationRequest,
                                   OkReply)
SET_SERVICE_OPTIONS = _method("set_service_options", "POST", ServiceOptionsRequest,
                              ServiceOptionsSet)
GET_SERVICE_OPTIONS = _method("get_service_options", "GET", OptionNamesRequest,
                              ServiceOptionsState)
RESTART_FOR_OPTIONS = _method("restart_for_options", "POST", NoRequest, OptionsRestarted)
GET_SERVER_PERFORMANCE = _method("get_server_performance", "GET", NoRequest, PerformanceReply)

CONFIGURE_USER = _method("configure_user", "POST", ConfigureUserRequest, UserConfigured)
DELETE_USER = _method("delete_user", "POST", UserRequest, UserDeleted)
SET_PASSWORD = _method("set_password", "POST", PasswordRequest, PasswordSet)
GET_ALL_USERS = _method("get_all_users", "GET", NoRequest, UsersReply)
CREATE_DATABASE = _method("create_database", "POST", CreateDatabaseRequest, DatabaseCreated)
DROP_DATABASE = _method("drop_database", "POST", DatabaseRequest, DatabaseDropped)
LIST_DATABASES = _method("list_databases", "GET", NoRequest, DatabasesReply)
GET_LOG = _method("get_log", "GET", LogRequest, LogReply)

# The dumps: the manager's, or a client's holding a transfer grant for that very call.
SEND_MYSQLDUMP = _method("send_mysqldump", "UPLOAD", DumpRequest, DumpLoaded,
                         file="mysqldump", access="granted")
LOAD_DUMP = _method("load_dump", "UPLOAD", DumpRequest, DumpLoaded, file="mysqldump_file",
                    access="granted")
SQLDUMP: AgentMethod[DumpRequest, Reply] = _method("sqldump", "GET", DumpRequest,
                                                  None, access="granted")
OPEN_DUMP_LOGIN = _method("open_dump_login", "POST", DumpRequest, DumpLoginReply)
CLOSE_DUMP_LOGIN = _method("close_dump_login", "POST", DumpLoginRequest, OkReply)

SET_UP_REPLICA_MASTER = _method("set_up_replica_master", "POST", MasterRequest,
                                ReplicationReply)
SET_UP_REPLICA_SLAVE = _method("set_up_replica_slave", "POST", SlaveRequest, ReplicationReply)
SET_READ_ONLY = _method("set_read_only", "POST", ReadOnlyRequest, OkReply)
SOURCE_ADDRESS = _method("source_address", "GET", SourceRequest, SourceAddress)
SET_REPLICA_HOSTS = _method("set_replica_hosts", "POST", ReplicaHostsRequest, ReplicaHostsSet)
WAIT_FOR_GTID = _method("wait_for_gtid", "POST", WaitRequest, GtidWaited)
DRAIN_RELAY_LOG = _method("drain_relay_log", "POST", DrainRequest, RelayLogDrained)
FENCE = _method("fence", "POST", NoRequest, Fenced)
GET_REPLICATION_STATUS = _method("get_replication_status", "GET", NoRequest,
                                 ReplicationStatusReply)
INSTALL_CERTIFICATE = _method("install_certificate", "POST", CertificateRequest,
                              CertificateInstalled)

BACKUP_STREAM: AgentMethod[GrantRequest, Reply] = _method(
    "backup_stream", "GET", GrantRequest, None, access="peer")
BACKUP_PUSH = _method("backup_push", "POST", PushRequest, BackupPushed, access="peer")
COPY_DUMP: AgentMethod[GrantRequest, Reply] = _method(
    "copy_dump", "GET", GrantRequest, None, access="peer")
SEED_FROM = _method("seed_from", "POST", SeedRequest, Seeded)
BACKUP_TO_STORE = _method("backup_to_store", "POST", BackupToStoreRequest, BackupTaken)
RESTORE_FROM_STORE = _method("restore_from_store", "POST", RestoreFromStoreRequest,
                             RestoredFromStore)
ARCHIVE_BINLOGS = _method("archive_binlogs", "POST", ArchiveRequest, ArchiveStatus)
STOP_ARCHIVING = _method("stop_archiving", "POST", NoRequest, ArchiveStatus)
GET_ARCHIVE_STATUS = _method("get_archive_status", "GET", NoRequest, ArchiveStatus)
VERIFY_FROM_STORE = _method("verify_from_store", "POST", VerifyFromStoreRequest,
                            VerifiedFromStore)
GET_JOB_PROGRESS = _method("get_job_progress", "GET", NoRequest, JobProgressReply)

METHODS: tuple[AgentMethod[Any, Any], ...] = (
    GET_SERVER_STATE, START_SERVER, STOP_SERVER, RESTART_SERVER, SET_SERVER_CONFIGURATION,
    GET_SERVER_PERFORMANCE, CONFIGURE_USER, DELETE_USER, SET_PASSWORD, GET_ALL_USERS,
    CREATE_DATABASE, DROP_DATABASE, LIST_DATABASES, GET_LOG, SEND_MYSQLDUMP, LOAD_DUMP, SQLDUMP,
    OPEN_DUMP_LOGIN, CLOSE_DUMP_LOGIN, SET_UP_REPLICA_MASTER, SET_UP_REPLICA_SLAVE, SET_READ_ONLY,
    SOURCE_ADDRESS, SET_REPLICA_HOSTS, WAIT_FOR_GTID, DRAIN_RELAY_LOG, FENCE,
    GET_REPLICATION_STATUS, BACKUP_STREAM, BACKUP_PUSH, COPY_DUMP, SEED_FROM, INSTALL_CERTIFICATE,
    SET_SERVICE_OPTIONS, GET_SERVICE_OPTIONS, RESTART_FOR_OPTIONS, BACKUP_TO_STORE,
    RESTORE_FROM_STORE, ARCHIVE_BINLOGS, STOP_ARCHIVING, GET_ARCHIVE_STATUS, VERIFY_FROM_STORE,
    GET_JOB_PROGRESS,
)


def register(registry: Registry, method: AgentMethod[Any, Any], handler: Handler) -> None:
    """Serve ``method`` with ``handler`` (the agent's side)."""
    registry.add(method.name, method.verb, handler, method.request, files=method.files,
                 access=method.access)
