"""The agent's methods for users, databases and logs (called by the manager only)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import AgentError, WrongStateError
from conpaassql.mysql import accounts, schemas
from conpaassql.mysql.connection import Session
from conpaassql.mysql.names import (
    DEFAULT_HOST,
    CharsetName,
    DatabaseName,
    Host,
    ManageableUser,
    Password,
    Privileges,
)
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import Params, PositiveInt

log = logging.getLogger(__name__)

LogName = Literal["agent", "error", "slow"]
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 10_000
#: The most of a log file's end that is ever read.
MAX_TAIL_BYTES = 4 << 20
TAIL_BLOCK = 64 << 10


class ConfigureUserParams(Params):
    username: ManageableUser
    password: Password
    host: Host = DEFAULT_HOST
    database: DatabaseName | None = None
    privileges: Privileges | None = None


class UserParams(Params):
    username: ManageableUser
    host: Host = DEFAULT_HOST


class PasswordParams(Params):
    username: ManageableUser
    password: Password
    host: Host = DEFAULT_HOST


class CreateDatabaseParams(Params):
    database: DatabaseName
    character_set: CharsetName | None = None
    collation: CharsetName | None = None


class DatabaseParams(Params):
    database: DatabaseName


class LogParams(Params):
    log: LogName = "agent"
    lines: Annotated[PositiveInt, Field(le=MAX_LOG_LINES)] = DEFAULT_LOG_LINES


class AdminApi:
    """Users, databases and logs of this node's server."""

    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor

    def register(self, registry: Registry) -> None:
        registry.add("configure_user", "POST", self.configure_user, ConfigureUserParams,
                     access="manager")
        registry.add("delete_user", "POST", self.delete_user, UserParams, access="manager")
        registry.add("set_password", "POST", self.set_password, PasswordParams,
                     access="manager")
        registry.add("get_all_users", "GET", self.get_all_users, access="manager")
        registry.add("create_database", "POST", self.create_database, CreateDatabaseParams,
                     access="manager")
        registry.add("drop_database", "POST", self.drop_database, DatabaseParams,
                     access="manager")
        registry.add("list_databases", "GET", self.list_databases, access="manager")
        registry.add("get_log", "GET", self.get_log, LogParams, access="manager")

    def _session(self) -> Session:
        state = self.supervisor.state
        if state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {state.value}, not RUNNING")
        return self.supervisor.session

    # -- users ------------------------------------------------------------

    async def configure_user(self, params: ConfigureUserParams,
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
        return result

    async def delete_user(self, params: UserParams, ctx: CallContext) -> dict[str, Any]:
        """Drop a user."""
        result = await accounts.delete_user(self._session(), params.username, params.host)
        log.info("user %r@%r deleted", params.username, params.host)
        return result

    async def set_password(self, params: PasswordParams, ctx: CallContext) -> dict[str, Any]:
        """Give an existing user a new password."""
        result = await accounts.set_password(self._session(), params.username,
                                             params.password, params.host)
        log.info("user %r@%r given a new password", params.username, params.host)
        return result

    async def get_all_users(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """The seed's ``{'user1': {'location', 'username'}, ...}`` plus ``users`` in full."""
        users = await accounts.list_users(self._session())
        result: dict[str, Any] = {
            f"user{number}": {"location": user["host"], "username": user["username"]}
            for number, user in enumerate(users, 1)
        }
        result["users"] = users
        return result

    # -- databases --------------------------------------------------------

    async def create_database(self, params: CreateDatabaseParams,
                              ctx: CallContext) -> dict[str, Any]:
        """Create a database (optionally with a character set and collation)."""
        result = await schemas.create_database(self._session(), params.database,
                                               params.character_set, params.collation)
        log.info("database %r created", params.database)
        return result

    async def drop_database(self, params: DatabaseParams, ctx: CallContext) -> dict[str, Any]:
        """Drop a database and everything in it."""
        result = await schemas.drop_database(self._session(), params.database)
        log.info("database %r dropped", params.database)
        return result

    async def list_databases(self, params: Params, ctx: CallContext) -> dict[str, Any]:
        """The user databases with their table counts and sizes."""
        return {"databases": await schemas.list_databases(self._session())}

    # -- logs -------------------------------------------------------------

    def log_path(self, which: LogName) -> Path:
        paths = self.settings.paths
        return {"agent": self.settings.log_file, "error": paths.error_log,
                "slow": paths.slow_log}[which]

    async def get_log(self, params: LogParams, ctx: CallContext) -> dict[str, Any]:
        """The last ``lines`` lines of the agent's log, the server's error or slow log."""
        path = self.log_path(params.log)
        try:
            text = await asyncio.to_thread(tail_lines, path, params.lines)
        except OSError as exc:
            raise AgentError(f"cannot read the {params.log} log",
                             detail=exc.strerror or type(exc).__name__) from None
        return {"log": accounts.redact_secrets(text)}


def tail_lines(path: Path, lines: int, limit: int = MAX_TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``path``, reading at most ``limit`` bytes from its end.

    A missing file gives ``""``.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return ""
    with handle:
        end = handle.seek(0, os.SEEK_END)
        start = end
        data = b""
        while start > 0 and end - start < limit and data.count(b"\n") <= lines:
            step = min(TAIL_BLOCK, start, limit - (end - start))
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
    kept = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(kept) + "\n" if kept else ""
