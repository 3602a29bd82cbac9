"""The agent's methods for users, databases and logs (called by the manager only)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import AgentError, WrongStateError
from conpaassql.logs import tail_lines
from conpaassql.mysql import accounts, schemas
from conpaassql.mysql.connection import Session
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    ConfigureUserRequest,
    CreateDatabaseRequest,
    DatabaseCreated,
    DatabaseDropped,
    DatabaseRequest,
    DatabasesReply,
    LogName,
    LogReply,
    LogRequest,
    NoRequest,
    PasswordRequest,
    PasswordSet,
    UserConfigured,
    UserDeleted,
    UserRequest,
    UsersReply,
)
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)



class AdminApi:
    """Users, databases and logs of this node's server."""

    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.CONFIGURE_USER, self.configure_user)
        protocol.register(registry, protocol.DELETE_USER, self.delete_user)
        protocol.register(registry, protocol.SET_PASSWORD, self.set_password)
        protocol.register(registry, protocol.GET_ALL_USERS, self.get_all_users)
        protocol.register(registry, protocol.CREATE_DATABASE, self.create_database)
        protocol.register(registry, protocol.DROP_DATABASE, self.drop_database)
        protocol.register(registry, protocol.LIST_DATABASES, self.list_databases)
        protocol.register(registry, protocol.GET_LOG, self.get_log)

    def _session(self) -> Session:
        state = self.supervisor.state
        if state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {state.value}, not RUNNING")
        return self.supervisor.session

    # -- users ------------------------------------------------------------

    async def configure_user(self, params: ConfigureUserRequest,
                             ctx: CallContext) -> dict[str, Any]:
        """Create a user or set its password; grant privileges on a database if given,
        else (a new user) the owner's privileges on every database."""
        result = await accounts.configure_user(
            self._session(), params.username, params.password, params.host,
            params.database, params.privileges)
        log.info("user %r@%r %s%s", params.username, params.host,
                 "created" if result["created"] else "given a new password",
                 f"; {', '.join(result['privileges'])} on {result['on']}"
                 if result["on"] is not None else "")
        return UserConfigured.model_validate(result).wire()

    async def delete_user(self, params: UserRequest, ctx: CallContext) -> dict[str, Any]:
        """Drop a user."""
        result = await accounts.delete_user(self._session(), params.username, params.host)
        log.info("user %r@%r deleted", params.username, params.host)
        return UserDeleted.model_validate(result).wire()

    async def set_password(self, params: PasswordRequest, ctx: CallContext) -> dict[str, Any]:
        """Give an existing user a new password."""
        result = await accounts.set_password(self._session(), params.username,
                                             params.password, params.host)
        log.info("user %r@%r given a new password", params.username, params.host)
        return PasswordSet.model_validate(result).wire()

    async def get_all_users(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """The seed's ``{'user1': {'location', 'username'}, ...}`` plus ``users`` in full."""
        users = await accounts.list_users(self._session())
        result: dict[str, Any] = {
            f"user{number}": {"location": user["host"], "username": user["username"]}
            for number, user in enumerate(users, 1)
        }
        result["users"] = users
        return UsersReply.model_validate(result).wire()

    # -- databases --------------------------------------------------------

    async def create_database(self, params: CreateDatabaseRequest,
                              ctx: CallContext) -> dict[str, Any]:
        """Create a database (optionally with a character set and collation)."""
        result = await schemas.create_database(self._session(), params.database,
                                               params.character_set, params.collation)
        log.info("database %r created", params.database)
        return DatabaseCreated.model_validate(result).wire()

    async def drop_database(self, params: DatabaseRequest, ctx: CallContext) -> dict[str, Any]:
        """Drop a database and everything in it."""
        result = await schemas.drop_database(self._session(), params.database)
        log.info("database %r dropped", params.database)
        return DatabaseDropped.model_validate(result).wire()

    async def list_databases(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """The user databases with their table counts and sizes."""
        found = await schemas.list_databases(self._session())
        return DatabasesReply.model_validate({"databases": found}).wire()

    # -- logs -------------------------------------------------------------

    def log_path(self, which: LogName) -> Path:
        paths = self.settings.paths
        return {"agent": self.settings.log_file, "error": paths.error_log,
                "slow": paths.slow_log}[which]

    async def get_log(self, params: LogRequest, ctx: CallContext) -> dict[str, Any]:
        """The last ``lines`` lines of the agent's log, the server's error or slow log."""
        path = self.log_path(params.log)
        try:
            text = await asyncio.to_thread(tail_lines, path, params.lines)
        except OSError as exc:
            raise AgentError(f"cannot read the {params.log} log",
                             detail=exc.strerror or type(exc).__name__) from None
        return LogReply(log=accounts.redact_secrets(text)).wire()
