"""Continuous binlog archiving, as the manager keeps it going.

The master's agent archives (``agent.archive_api``); this module tells it to, from
the GTID position the store already holds, whenever the master is a new one (a
failover, a switchover, a manager restarted): the old master's archiver is
stopped first (best effort), and the new one begins with the transaction after
the last archived, found in its own binlog, so that the archive has no gap and
no duplicate whichever node wrote which part. Its status is read once a cycle
(in the background: the loop never waits on the store or the agent). A gap it
reports (binlogs purged before they were archived) is recorded in the history,
shown in ``get_service_info`` and asks for a new full backup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conpaassql.backup import BackupStore, index, open_store
from conpaassql.domain.gtid import GtidPosition
from conpaassql.domain.node import Node
from conpaassql.errors import ConpaasSQLError
from conpaassql.manager.cycle import Act, Outcome, Snapshot
from conpaassql.manager.service import NodeService
from conpaassql.protocol.backup import ArchiveRequest, ArchiveStatus
from conpaassql.protocol.report import mysqld_answering

log = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0


def log_full_backup_needed(reason: str) -> None:
    """What a gap asks for when nothing can take a backup: a line in the log."""
    log.warning("a new full backup is needed: %s", reason)


class BinlogArchiving:
    """Keeps the current master archiving its binlogs to the service's store."""

    def __init__(self, nodes: NodeService, state_dir: Path) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self.state_dir = state_dir
        #: Asks for a new full backup after a gap (wired to the backups by the app).
        self.request_full_backup: Callable[[str], None] = log_full_backup_needed
        self.node: int | None = None  # the node told to archive
        self.status: ArchiveStatus | None = None
        self.gaps: list[dict[str, str]] = []
        self._store: BackupStore | None = None
        self._busy = False

    @property
    def store(self) -> BackupStore:
        if self._store is None:
            self._store = open_store(self.rt.config.backup, self.rt.secrets.backup_key,
                                     self.state_dir)
        return self._store

    def reconcile(self, snapshot: Snapshot) -> list[Outcome]:
        """The loop's one call: tend the master's archiver in the background."""
        master = snapshot.master
        if master is None or self._busy or not mysqld_answering(snapshot.report(master.id)):
            return []
        if not self._reachable(master):
            return []
        self._busy = True
        self.nodes.spawn(self._tend(master, snapshot), "tend binlog archiving")
        if master.id != self.node:
            return [Outcome(None, master.id, Act.NONE,
                            f"node {master.id}: binlog archiving asked")]
        return []

    def _reachable(self, master: Node) -> bool:
        """A file store is on the manager's machine: only nodes there reach it."""
        if self.rt.config.backup.bucket is not None:
            return True
        try:
            return master.ip is not None and ipaddress.ip_address(master.ip).is_loopback
        except ValueError:
            return False

    async def _tend(self, master: Node, snapshot: Snapshot) -> None:
        try:
            if master.id != self.node:
                await self._start(master, snapshot)
            else:
                status = await self.rt.agents.get_archive_status(master, timeout=CALL_TIMEOUT)
                if not status.archiving:  # its agent restarted
                    await self._start(master, snapshot)
                else:
                    self._note(master, status)
        except ConpaasSQLError as exc:
            log.warning("binlog archiving on node %d: %s", master.id, exc)
        finally:
            self._busy = False

    async def _start(self, master: Node, snapshot: Snapshot) -> None:
        previous = snapshot.node(self.node) if self.node is not None else None
        if previous is not None and previous.ip:
            try:
                await self.rt.agents.stop_archiving(previous, timeout=CALL_TIMEOUT)
            except ConpaasSQLError as exc:
                log.info("node %d did not stop archiving: %s", previous.id, exc)
        since = (await index.current(self.store)).position
        status = await self.rt.agents.archive_binlogs(master, self._request(since),
                                                      timeout=CALL_TIMEOUT)
        self.node = master.id
        self.rt.store.record_event(f"binlog archiving from {since or 'the start'}",
                                   master.id)
        self._note(master, status)

    def _request(self, since: GtidPosition) -> ArchiveRequest:
        config = self.rt.config.backup
        path = None if config.bucket else config.directory(self.state_dir)
        return ArchiveRequest(
            path=None if path is None else str(path), bucket=config.bucket,
            prefix=config.prefix, endpoint_url=config.endpoint_url, region=config.region,
            access_key_id=config.access_key_id, secret_access_key=config.secret_access_key,
            session_token=config.session_token,
            addressing_style=config.addressing_style,  # type: ignore[arg-type]
            key=self.rt.secrets.backup_key.to_text(), since=str(since),
            interval=config.archive_interval)

    def _note(self, master: Node, status: ArchiveStatus) -> None:
        if status.diverged is not None and (self.status is None
                                            or self.status.diverged != status.diverged):
            self.rt.store.record_event(
                f"binlog archive: {status.diverged.get('set_aside')} segment(s) past "
                f"{status.diverged.get('kept_to')} were another history, set aside", master.id)
        self.status = status
        if status.gap is not None and status.gap not in self.gaps:
            self.gaps.append(status.gap)
            message = (f"binlog archive gap: archived to {status.gap.get('archived_to')}, "
                       f"node {master.id}'s binlogs start after "
                       f"{status.gap.get('binlogs_from')}")
            self.rt.store.record_event(message, master.id)
            self.request_full_backup(message)

    def service_info(self) -> dict[str, Any]:
        """``get_service_info``'s ``backup``: how far the archive reaches."""
        status = self.status
        if status is None:
            return {"archiving": False, "archived_to": None, "archive_lag_seconds": None,
                    "gap": self.gaps[-1] if self.gaps else None}
        lag = None if status.caught_up_at is None else max(0.0, time.time()
                                                           - status.caught_up_at)
        return {"archiving": status.archiving, "node": self.node,
                "archived_to": status.archived_time, "archived_gtid": status.archived_to,
                "archive_lag_seconds": lag, "error": status.error,
                "gap": self.gaps[-1] if self.gaps else None}

    async def close(self) -> None:
        if self._store is not None:
            await asyncio.shield(self._store.close())
