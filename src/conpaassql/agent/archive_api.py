"""The agent's binlog archiving: the manager tells the master's agent to archive
(the store and the key come in the request, over mutual TLS, and are kept in
memory only), asks how far it got, and stops it when the node stops being the
master. One archiver at a time; a new request replaces the running one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.backup import BackupConfig, BackupKey, BackupStore, open_store
from conpaassql.domain.gtid import GtidPosition
from conpaassql.errors import ConfigError, InvalidArgumentError
from conpaassql.mysql.binlog_archive import Archiver
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import NoRequest
from conpaassql.protocol.backup import ArchiveRequest, ArchiveStatus
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)

STOP_TIMEOUT = 20.0  # seconds a pass under way may take to end


def store_config(params: ArchiveRequest) -> BackupConfig:
    return BackupConfig(
        path=Path(params.path) if params.path else None, bucket=params.bucket,
        prefix=params.prefix, endpoint_url=params.endpoint_url, region=params.region,
        access_key_id=params.access_key_id, secret_access_key=params.secret_access_key,
        session_token=params.session_token, addressing_style=params.addressing_style)


class ArchiveApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.archiver: Archiver | None = None
        self._task: asyncio.Task[None] | None = None
        self._store: BackupStore | None = None

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.ARCHIVE_BINLOGS, self.archive_binlogs)
        protocol.register(registry, protocol.STOP_ARCHIVING, self.stop_archiving)
        protocol.register(registry, protocol.GET_ARCHIVE_STATUS, self.get_archive_status)

    async def archive_binlogs(self, params: ArchiveRequest, ctx: CallContext) -> dict[str, Any]:
        """Archive from the transaction after ``since``, every ``interval`` seconds."""
        try:
            since = GtidPosition.parse(params.since)
            key = BackupKey.from_text(params.key, "key")
        except (ValueError, ConfigError) as exc:
            raise InvalidArgumentError("since or key", detail=str(exc)[:100]) from None
        if params.bucket is None and params.path is None:
            raise InvalidArgumentError("path", detail="a file store's directory or a bucket")
        if params.bucket is None and not self.settings.shares_machine:
            raise InvalidArgumentError("path", detail="a file store is on the manager's "
                                       "machine: this node needs an S3 store")
        running = self.archiver
        await self._stop()
        previous = running.since if running is not None else None
        if previous is not None and previous.contains(since):
            # What the running archiver stored since the manager read the store
            # (a restarted manager) is not archived twice.
            since = previous
        self._store = open_store(store_config(params), key, self.settings.paths.base)
        self.archiver = Archiver(self._store, self.supervisor.info, self.settings.paths.datadir,
                                 since, params.interval, only_writable=True)
        self._task = asyncio.create_task(self.archiver.run(), name="binlog archiver")
        log.info("archiving binlogs to %s from %s", self._store.url, since or "the start")
        return self._status()

    async def stop_archiving(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """Stop archiving after one last pass (what is committed so far goes too)."""
        if self.archiver is not None and self._task is not None and not self._task.done():
            await self._finish()
            with contextlib.suppress(Exception):
                await self.archiver.archive_once()
        status = self._status()
        await self._stop()
        return status

    async def get_archive_status(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        return self._status()

    def _status(self) -> dict[str, Any]:
        archiving = self._task is not None and not self._task.done()
        if self.archiver is None:
            return ArchiveStatus(archiving=False).wire()
        state = self.archiver.state
        return ArchiveStatus(archiving=archiving, since=state.since,
                             archived_to=state.archived_to, archived_time=state.archived_time,
                             caught_up_at=state.caught_up_at, segments=state.segments,
                             gap=state.gap, diverged=state.diverged,
                             error=state.error).wire()

    async def _finish(self) -> None:
        """Let the pass under way end, then the archiver (cut if it takes too long)."""
        if self.archiver is not None:
            self.archiver.request_stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, STOP_TIMEOUT)

    async def _stop(self) -> None:
        await self._finish()
        if self._store is not None:
            await self._store.close()
        self._task = self._store = self.archiver = None

    async def close(self) -> None:
        await self._stop()
