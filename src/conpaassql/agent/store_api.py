"""The agent's backup methods: a backup of this node into the service's store, and
this node's data replaced by a backup out of it.

The manager sends the store's settings and the service's backup key with each
call (over the mutual-TLS agent RPC); the agent keeps neither and logs neither.
One backup or restore at a time on a node.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.backup import BackupKey, BackupStore, open_store
from conpaassql.backup.progress import JobProgress
from conpaassql.config import BackupConfig
from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.states import AgentState
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.mysql.backup import SwapRunner, adopt_gtid_position
from conpaassql.mysql.binlog_replay import Replayed, Target, replay
from conpaassql.mysql.foreign_copy import adopting
from conpaassql.mysql.store_backup import ReplayHook, restore_chain, take_backup
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.backup import (
    BackupTaken,
    BackupToStoreRequest,
    JobProgressReply,
    RestoredFromStore,
    RestoreFromStoreRequest,
    StoreSettings,
)
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)


def store_of(settings: StoreSettings) -> BackupStore:
    """The store the manager described (a file store's directory is always given)."""
    config = BackupConfig(
        path=Path(settings.path) if settings.path else None, bucket=settings.bucket,
        prefix=settings.prefix, endpoint_url=settings.endpoint_url, region=settings.region,
        access_key_id=settings.access_key_id, secret_access_key=settings.secret_access_key,
        session_token=settings.session_token, addressing_style=settings.addressing_style,
        part_size=settings.part_size)
    if config.path is None and config.bucket is None:
        raise WrongStateError(detail="the request names no backup store")
    return open_store(config, BackupKey.from_text(settings.key, "the backup key"),
                      config.path or Path("."))


class StoreApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self._busy: str | None = None
        self._progress: JobProgress | None = None  # the job under way's
        #: The point-in-time part's replay of archived binlogs after a restore (None:
        #: the backup's own position is where the restored node stays).
        self.replay: ReplayHook | None = None

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.BACKUP_TO_STORE, self.backup_to_store)
        protocol.register(registry, protocol.RESTORE_FROM_STORE, self.restore_from_store)
        protocol.register(registry, protocol.GET_JOB_PROGRESS, self.get_job_progress)

    async def get_job_progress(self, params: protocol.NoRequest,
                               ctx: CallContext) -> dict[str, Any]:
        """How far the backup or restore under way has got (``{}`` when none runs)."""
        if self._progress is None:
            return JobProgressReply().wire()
        return JobProgressReply.model_validate(self._progress.snapshot()).wire()

    def _claim(self, what: str) -> None:
        if self._busy is not None:
            raise BusyError(detail=f"busy: {self._busy} in progress on node "
                            f"{self.settings.node_id}")
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")
        self._busy = what

    async def backup_to_store(self, params: BackupToStoreRequest,
                              ctx: CallContext) -> dict[str, Any]:
        self._claim("a backup to the store")
        node = self.settings.node_id
        store = None
        try:
            store = store_of(params.store)
            log.info("node %d: backup into %s %s", node, store.url, params.object)
            self._progress = JobProgress("backup", "copy")
            taken = await take_backup(
                self.settings.paths, self.settings.context.root_password, store,
                params.object, incremental_lsn=params.incremental_lsn,
                progress=self._progress)
        except ConpaasSQLError as exc:
            log.error("node %d: backup %s failed: %s", node, params.object, exc)
            raise
        finally:
            self._busy = None
            self._progress = None
            if store is not None:
                await store.close()
        log.info("node %d: backup %s: %d bytes stored in %.2f s, GTID %r, LSN %d..%d", node,
                 params.object, taken.stored, taken.seconds, taken.gtid, taken.from_lsn,
                 taken.to_lsn)
        return BackupTaken(gtid=taken.gtid, from_lsn=taken.from_lsn, to_lsn=taken.to_lsn,
                           bytes=taken.stored, seconds=round(taken.seconds, 3)).wire()

    async def restore_from_store(self, params: RestoreFromStoreRequest,
                                 ctx: CallContext) -> dict[str, Any]:
        self._claim("a restore from the store")
        node = self.settings.node_id
        started = time.monotonic()
        store = None
        try:
            store = store_of(params.store)
            log.info("node %d: restoring %s from %s", node, ", ".join(params.objects),
                     store.url)
            run_as = self.settings.server_settings().run_as
            swap: SwapRunner = self.supervisor.replace_data
            if params.foreign:
                swap = adopting(self.settings.paths, self.settings.context.root_password,
                                run_as, swap)
            progress = self._progress = JobProgress("restore", "fetch")
            result = await restore_chain(self.settings.paths, store, params.objects,
                                         run_as=run_as, swap=swap, progress=progress)
            await adopt_gtid_position(self.supervisor.session, result.gtid_position)
            if params.target_time is not None or self.replay is not None:
                progress.phase = "replay"
            if params.target_time is not None:
                replayed = await self._replay(store, result.gtid_position, params.target_time)
                result = dataclasses.replace(result, gtid_position=str(replayed.position))
            elif self.replay is not None:
                await self.replay(self.supervisor.session, result.gtid_position)
        except ConpaasSQLError as exc:
            log.error("node %d: restore failed: %s", node, exc)
            self.supervisor.on_event(f"restore from the backup store failed: {exc}")
            raise
        finally:
            self._busy = None
            self._progress = None
            if store is not None:
                await store.close()
        self.supervisor.on_event(f"data replaced by a backup from the store (GTID position "
                                 f"{result.gtid_position or 'empty'})")
        return RestoredFromStore.model_validate(
            {**result.as_dict(), "seconds": round(time.monotonic() - started, 3)}).wire()

    async def _replay(self, store: BackupStore, gtid_position: str,
                      target_time: float) -> Replayed:
        """The archived binlogs applied from ``gtid_position`` up to ``target_time``
        (the server's own binlog emptied first: under ``gtid_strict_mode`` the
        replayed GTIDs must follow nothing of its own)."""
        session = self.supervisor.session
        await session.execute("RESET MASTER", idempotent=True)
        start = GtidPosition.parse(gtid_position)
        replayed = await replay(store, self.settings.paths, start, Target(time=target_time))
        await adopt_gtid_position(session, str(replayed.position))
        log.info("node %d: %d archived transaction(s) replayed to %s (last committed at %s)",
                 self.settings.node_id, replayed.transactions, replayed.position,
                 replayed.last_time)
        return replayed
