"""The agent's data methods: load a dump into its server, export one from it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import BusyError, InvalidArgumentError, WrongStateError
from conpaassql.mysql.dump import SQL_MEDIA_TYPE, Export, load_sql
from conpaassql.mysql.guards import ensure_writable
from conpaassql.mysql.schemas import database_exists
from conpaassql.names import check_user_database
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import DumpLoaded, DumpRequest
from conpaassql.rpc.multipart import UploadStream
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.streams import ByteStreamResponse, sql_failure_line

log = logging.getLogger(__name__)


class DataApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self._loading = asyncio.Lock()

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.SEND_MYSQLDUMP, self.send_mysqldump)
        protocol.register(registry, protocol.LOAD_DUMP, self.load_dump)
        protocol.register(registry, protocol.SQLDUMP, self.sqldump)

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

    async def _load(self, params: DumpRequest, upload: UploadStream) -> dict[str, Any]:
        self._ensure_running()
        if params.database is not None:
            await self._existing(params.database)
        if self._loading.locked():
            raise BusyError(detail="busy: a dump is being loaded into this node")
        async with self._loading:
            await ensure_writable(self.supervisor.session)
            result = await load_sql(self.settings.paths, upload.chunks(), params.database)
        log.info("dump loaded: %d bytes (%d of SQL) in %.2f s", result.received,
                 result.loaded, result.seconds)
        return DumpLoaded.model_validate(result.as_dict()).wire()

    async def send_mysqldump(self, params: DumpRequest, ctx: CallContext) -> dict[str, Any]:
        """Load the plain-SQL (or gzip) dump in the file ``mysqldump``."""
        return await self._load(params, ctx.files["mysqldump"])

    async def load_dump(self, params: DumpRequest, ctx: CallContext) -> dict[str, Any]:
        """Load the dump in the file ``mysqldump_file``."""
        return await self._load(params, ctx.files["mysqldump_file"])

    async def sqldump(self, params: DumpRequest, ctx: CallContext) -> ByteStreamResponse:
        """A consistent dump (with its GTID position), streamed as it is made."""
        self._ensure_running()
        databases = None
        if params.database is not None:
            databases = [await self._existing(params.database)]
        export = await Export.start(self.settings.paths, databases)
        return ByteStreamResponse(export.chunks(), media_type=SQL_MEDIA_TYPE,
                                  cleanup=export.close, failure_line=sql_failure_line)
