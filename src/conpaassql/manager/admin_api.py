"""The manager's methods for users, databases and logs.

Params are checked here with the same validators the agents use, so a bad
request is refused before any node is touched. A write goes to the node named by
``serviceNodeId``, or (``'all'``, the default) to every node that takes writes;
a slave is refused (it gets users and data from its master). The agents are
called in parallel; if any fails, the error names the node(s) and carries the
agent's own text. Passwords are passed on, never logged nor put in a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, Field, model_validator

from conpaassql.domain.node import Node
from conpaassql.errors import (
    ConpaasSQLError,
    InvalidArgumentError,
    NotFoundError,
    WrongStateError,
)
from conpaassql.manager import targets
from conpaassql.manager.outcomes import describe_nodes as _nodes
from conpaassql.manager.outcomes import nodes_failed
from conpaassql.manager.service import NodeService
from conpaassql.names import (
    DEFAULT_HOST,
    CharsetName,
    DatabaseName,
    Host,
    ManageableUser,
    Password,
    Privileges,
    check_grantable_database,
)
from conpaassql.protocol import agent as protocol
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import NodeId, NodeIdOrAll, Params, PositiveInt

log = logging.getLogger(__name__)

Answer = TypeVar("Answer")

WRITE_TIMEOUT = 60.0
READ_TIMEOUT = 20.0
MAX_LOG_LINES = 10_000
ROOT_NOTE = "root may log in only on the node itself (its unix socket)"

def _all() -> Any:
    return Field(default="all", validation_alias=targets.NODE_ID_ALIASES)


class ConfigureUserParams(Params):
    serviceNodeId: NodeIdOrAll = _all()
    username: ManageableUser
    password: Password
    host: Host = DEFAULT_HOST
    database: DatabaseName | None = None
    privileges: Privileges | None = None

    @model_validator(mode="after")
    def _grantable(self) -> ConfigureUserParams:
        if self.database is not None:
            check_grantable_database(self.database)
        elif self.privileges is not None:
            raise InvalidArgumentError("privileges", detail="give the database to grant them on")
        return self


class UserParams(Params):
    serviceNodeId: NodeIdOrAll = _all()
    username: ManageableUser
    host: Host = DEFAULT_HOST


class SetPasswordParams(Params):
    serviceNodeId: NodeIdOrAll = _all()
    user: ManageableUser = Field(validation_alias=AliasChoices("user", "username"))
    password: Password
    host: Host = DEFAULT_HOST


class ReadParams(Params):
    serviceNodeId: NodeIdOrAll | None = Field(default=None,
                                              validation_alias=targets.NODE_ID_ALIASES)


class CreateDatabaseParams(Params):
    serviceNodeId: NodeIdOrAll = _all()
    database: DatabaseName
    character_set: CharsetName | None = None
    collation: CharsetName | None = None


class DatabaseParams(Params):
    serviceNodeId: NodeIdOrAll = _all()
    database: DatabaseName


class AgentLogParams(Params):
    serviceNodeId: NodeId = Field(validation_alias=targets.NODE_ID_ALIASES)
    log: Literal["agent", "error", "slow"] = "agent"
    lines: Annotated[PositiveInt, Field(le=MAX_LOG_LINES)] = 100


class AdminApi:
    """Users, databases and agent logs of the service's nodes."""

    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.rt = nodes.rt

    def register(self, registry: Registry) -> None:
        registry.add("configure_user", "POST", self.configure_user, ConfigureUserParams)
        registry.add("delete_user", "POST", self.delete_user, UserParams)
        registry.add("get_users", "GET", self.get_users, ReadParams)
        registry.add("set_password", "POST", self.set_password, SetPasswordParams)
        registry.add("get_password", "GET", self.get_password, access="owner")
        registry.add("create_database", "POST", self.create_database, CreateDatabaseParams)
        registry.add("drop_database", "POST", self.drop_database, DatabaseParams)
        registry.add("list_databases", "GET", self.list_databases, ReadParams)
        registry.add("get_agent_log", "GET", self.get_agent_log, AgentLogParams)

    # -- fan-out ----------------------------------------------------------

    def _targets(self, target: targets.Target | None, *, write: bool) -> list[Node]:
        return targets.resolve(self.nodes.live_nodes(), target, write=write)

    async def _on_nodes(self, nodes: Sequence[Node], what: str,
                        call: Callable[[Node], Awaitable[Answer]]) -> list[tuple[Node, Answer]]:
        """``call`` every node's agent at once (``what``: the agent method, for the log);
        raise if any of them failed."""
        answers = await asyncio.gather(*(call(node) for node in nodes),
                                       return_exceptions=True)
        done: list[tuple[Node, Answer]] = []
        failed: list[tuple[Node, ConpaasSQLError]] = []
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, ConpaasSQLError):
                failed.append((node, answer))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                done.append((node, answer))
        if failed:
            log.warning("%s failed on %s", what, _nodes([node.id for node, _ in failed]))
            raise nodes_failed(failed, [node.id for node, _ in done])
        return done

    # -- users ------------------------------------------------------------

    async def configure_user(self, params: ConfigureUserParams,
                             ctx: CallContext) -> dict[str, Any]:
        """Create a user (or set its password) and grant it privileges on a database."""
        nodes = self._targets(params.serviceNodeId, write=True)
        sent = protocol.ConfigureUserRequest(
            username=params.username, password=params.password, host=params.host,
            database=params.database, privileges=params.privileges)
        done = await self._on_nodes(nodes, "configure_user", lambda node: (
            self.rt.agents.configure_user(node, sent, timeout=WRITE_TIMEOUT)))
        log.info("user %r@%r configured on %s", params.username, params.host,
                 _nodes([node.id for node, _ in done]))
        first = done[0][1]
        result: dict[str, Any] = {
            "nodes": [node.id for node, _ in done],
            "username": params.username,
            "host": params.host,
            "database": params.database,
            "privileges": first.privileges,
            "on": first.on,
            "grant_option": first.grant_option,
            "grants": first.grants,
            "created": [node.id for node, answer in done if answer.created],
        }
        if first.note is not None:
            result["note"] = first.note
        return result

    async def delete_user(self, params: UserParams, ctx: CallContext) -> dict[str, Any]:
        """Drop a user."""
        nodes = self._targets(params.serviceNodeId, write=True)
        sent = protocol.UserRequest(username=params.username, host=params.host)
        done = await self._on_nodes(nodes, "delete_user", lambda node: (
            self.rt.agents.delete_user(node, sent, timeout=WRITE_TIMEOUT)))
        log.info("user %r@%r deleted on %s", params.username, params.host,
                 _nodes([node.id for node, _ in done]))
        return {"nodes": [node.id for node, _ in done], "username": params.username,
                "host": params.host}

    async def get_users(self, params: ReadParams, ctx: CallContext) -> dict[str, Any]:
        """The accounts of every running node (or of one)."""
        nodes = self._targets(params.serviceNodeId, write=False)
        done = await self._on_nodes(nodes, "get_all_users", lambda node: (
            self.rt.agents.get_all_users(node, timeout=READ_TIMEOUT)))
        return {"nodes": [{**_node(node), "users": [user.wire() for user in answer.users]}
                          for node, answer in done]}

    async def set_password(self, params: SetPasswordParams, ctx: CallContext) -> dict[str, Any]:
        """Give an existing user a new password (not root: the service owns it)."""
        nodes = self._targets(params.serviceNodeId, write=True)
        sent = protocol.PasswordRequest(username=params.user, password=params.password,
                                        host=params.host)
        done = await self._on_nodes(nodes, "set_password", lambda node: (
            self.rt.agents.set_password(node, sent, timeout=WRITE_TIMEOUT)))
        log.info("user %r@%r given a new password on %s", params.user, params.host,
                 _nodes([node.id for node, _ in done]))
        return {"nodes": [node.id for node, _ in done], "username": params.user,
                "host": params.host}

    async def get_password(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """The service's MySQL root password."""
        return {"username": "root", "password": self.rt.secrets.root_password,
                "note": ROOT_NOTE}

    # -- databases --------------------------------------------------------

    async def create_database(self, params: CreateDatabaseParams,
                              ctx: CallContext) -> dict[str, Any]:
        """Create a database (optionally with a character set and collation)."""
        nodes = self._targets(params.serviceNodeId, write=True)
        sent = protocol.CreateDatabaseRequest(database=params.database,
                                              character_set=params.character_set,
                                              collation=params.collation)
        done = await self._on_nodes(nodes, "create_database", lambda node: (
            self.rt.agents.create_database(node, sent, timeout=WRITE_TIMEOUT)))
        log.info("database %r created on %s", params.database,
                 _nodes([node.id for node, _ in done]))
        first = done[0][1]
        return {"nodes": [node.id for node, _ in done], "database": params.database,
                "character_set": first.character_set,
                "collation": first.collation}

    async def drop_database(self, params: DatabaseParams, ctx: CallContext) -> dict[str, Any]:
        """Drop a database and everything in it."""
        nodes = self._targets(params.serviceNodeId, write=True)
        sent = protocol.DatabaseRequest(database=params.database)
        done = await self._on_nodes(nodes, "drop_database", lambda node: (
            self.rt.agents.drop_database(node, sent, timeout=WRITE_TIMEOUT)))
        log.info("database %r dropped on %s", params.database,
                 _nodes([node.id for node, _ in done]))
        return {"nodes": [node.id for node, _ in done], "database": params.database}

    async def list_databases(self, params: ReadParams, ctx: CallContext) -> dict[str, Any]:
        """The databases of every running node (or of one), with sizes."""
        nodes = self._targets(params.serviceNodeId, write=False)
        done = await self._on_nodes(nodes, "list_databases", lambda node: (
            self.rt.agents.list_databases(node, timeout=READ_TIMEOUT)))
        return {"nodes": [{**_node(node),
                           "databases": [found.wire() for found in answer.databases]}
                          for node, answer in done]}

    # -- logs -------------------------------------------------------------

    async def get_agent_log(self, params: AgentLogParams, ctx: CallContext) -> dict[str, Any]:
        """A node's agent log, or its server's error or slow log (the last lines).

        Any node whose agent has an address will do, a FAILED one included.
        """
        node = self.nodes.node(params.serviceNodeId)
        if not node.state.is_live:
            raise NotFoundError("serviceNodeId",
                                detail=f"no node {node.id} in this service")
        if node.ip is None:
            raise WrongStateError(detail=f"node {node.id} has no address yet")
        sent = protocol.LogRequest(log=params.log, lines=params.lines)
        done = await self._on_nodes([node], "get_log", lambda node: (
            self.rt.agents.get_log(node, sent, timeout=READ_TIMEOUT)))
        return {"log": done[0][1].log, "node": node.id, "which": params.log}


def _node(node: Node) -> dict[str, Any]:
    return {"id": node.id, "ip": node.ip, "role": node.role.value}
