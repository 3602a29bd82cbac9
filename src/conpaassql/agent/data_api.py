"""The agent's data methods: load a dump into its server, export one from it.

The manager calls them for its own ``send_mysqldump``, ``load_dump`` and ``sqldump``
(relaying the bytes); a client with the manager's transfer grant calls them
directly, and the bytes then go through no other process. What the manager
would record of such a transfer, the agent tells it in its heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conpaassql.agent.dump_logins import DumpLogins
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import BusyError, ConpaasSQLError, InvalidArgumentError, WrongStateError
from conpaassql.mysql.dump import SQL_MEDIA_TYPE, Export, dump_arguments, load_sql
from conpaassql.mysql.dump_logins import user_databases
from conpaassql.mysql.guards import ensure_writable
from conpaassql.mysql.schemas import database_exists
from conpaassql.names import check_user_database
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    DumpLoaded,
    DumpLoginReply,
    DumpLoginRequest,
    DumpRequest,
    OkReply,
)
from conpaassql.rpc.grants import GRANTED
from conpaassql.rpc.multipart import UploadStream
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.streams import ByteStreamResponse, sql_failure_line

log = logging.getLogger(__name__)
#: Exports streamed straight to clients at once (the manager bounds those it relays).
MAX_GRANTED_EXPORTS = 4

class DataApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor,
                 dump_logins: DumpLogins) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.dump_logins = dump_logins
        self._loading = asyncio.Lock()
        self._granted_exports = 0

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.SEND_MYSQLDUMP, self.send_mysqldump)
        protocol.register(registry, protocol.LOAD_DUMP, self.load_dump)
        protocol.register(registry, protocol.SQLDUMP, self.sqldump)
        protocol.register(registry, protocol.OPEN_DUMP_LOGIN, self.open_dump_login)
        protocol.register(registry, protocol.CLOSE_DUMP_LOGIN, self.close_dump_login)

    def _ensure_running(self) -> None:
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")

    async def _existing(self, database: str) -> str:
        """``database`` if it is a user database that exists here."""
        check_user_database(database)
        if not await database_exists(self.supervisor.session, database):
            raise InvalidArgumentError("database", detail=f"no database {database!r} "
                                       f"on node {self.settings.node_id}")
        return database

    async def _load(self, params: DumpRequest, upload: UploadStream,
                    ctx: CallContext) -> dict[str, Any]:
        granted = ctx.principal == GRANTED
        try:
            self._ensure_running()
            if params.database is not None:
                await self._existing(params.database)
            if self._loading.locked():
                raise BusyError(detail="busy: a dump is being loaded into this node")
            async with self._loading:
                await ensure_writable(self.supervisor.session)
                result = await load_sql(self.settings.paths, upload.chunks(), params.database)
        except ConpaasSQLError as exc:
            if granted:
                self.supervisor.on_event(f"{ctx.method} into node {self.settings.node_id} "
                                         f"failed: {str(exc)[:300]}")
            raise
        log.info("dump loaded: %d bytes (%d of SQL) in %.2f s", result.received,
                 result.loaded, result.seconds)
        if granted:
            self.supervisor.on_event(f"dump of {result.received} bytes loaded into node "
                                     f"{self.settings.node_id}")
        return DumpLoaded.model_validate(result.as_dict()).wire()

    async def send_mysqldump(self, params: DumpRequest, ctx: CallContext) -> dict[str, Any]:
        """Load the plain-SQL (or gzip) dump in the file ``mysqldump``."""
        return await self._load(params, ctx.files["mysqldump"], ctx)

    async def load_dump(self, params: DumpRequest, ctx: CallContext) -> dict[str, Any]:
        """Load the dump in the file ``mysqldump_file``."""
        return await self._load(params, ctx.files["mysqldump_file"], ctx)

    async def sqldump(self, params: DumpRequest, ctx: CallContext) -> ByteStreamResponse:
        """A consistent dump (with its GTID position), streamed as it is made."""
        self._ensure_running()
        databases = None
        if params.database is not None:
            databases = [await self._existing(params.database)]
        if ctx.principal != GRANTED:
            export = await Export.start(self.settings.paths, databases)
            return ByteStreamResponse(export.chunks(), media_type=SQL_MEDIA_TYPE,
                                      cleanup=export.close, failure_line=sql_failure_line)
        if self._granted_exports >= MAX_GRANTED_EXPORTS:
            raise BusyError(detail=f"busy: {self._granted_exports} dumps are being exported; "
                            "try again when one is done")
        self._granted_exports += 1
        try:
            export = await Export.start(self.settings.paths, databases)
        except BaseException:
            self._granted_exports -= 1
            raise
        return ByteStreamResponse(export.chunks(), media_type=SQL_MEDIA_TYPE,
                                  cleanup=export.close, failure_line=sql_failure_line,
                                  ended=self._granted_export_ended)

    async def open_dump_login(self, params: DumpRequest, ctx: CallContext) -> dict[str, Any]:
        """An account for one ``mariadb-dump`` of this server over TLS (``sqldump``'s
        options), and the tool's arguments; the manager hands it to a client."""
        self._ensure_running()
        if params.database is not None:
            databases = [await self._existing(params.database)]
            args = dump_arguments(databases)
        else:
            databases = await user_databases(self.supervisor.session)
            args = dump_arguments(None)
        login = await self.dump_logins.open(databases)
        return DumpLoginReply(user=login.user, password=login.password,
                              port=self.settings.mysql_port, args=args).wire()

    async def close_dump_login(self, params: DumpLoginRequest,
                               ctx: CallContext) -> dict[str, Any]:
        """The client is done with the account: it goes as soon as it has no session."""
        self.dump_logins.release(params.user)
        return OkReply().wire()

    def _granted_export_ended(self) -> None:
        self._granted_exports -= 1
