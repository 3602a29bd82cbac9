"""``verify_backup``: a backup restored on a scratch server and its tables checked.

The manager asks a running slave (the newest) or, with none, the master: the
agent fetches the backup's chain into a scratch directory beside its server,
prepares it, starts a second mariadbd of its own on it, runs ``CHECK TABLE`` on
every user table, then stops it and removes the directory. The node's own server
goes on serving meanwhile (it only shares the machine's disk and CPU). One
backup or verification at a time in the service (``busy: ...`` otherwise); the
chain verified is held (not deleted) until it ends.

The result is kept in the backup's catalog record, as ``verified``: ``{"at",
"ok", "tables", "seconds", "error", "node"}``; ``list_backups`` shows it (and
``{"state": "running", "node", "at"}`` while a verification runs). With
``verify = after_full`` (or ``after_each``) in ``[backup]``, each full backup (or
every backup) is verified once it is done.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from conpaassql.backup.catalog import BackupRecord
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.manager.backups import BACKUP_TIMEOUT, Backups, Use
from conpaassql.protocol.backup import VerifyFromStoreRequest

log = logging.getLogger(__name__)


class Verifications:
    """Verifications of the backups of ``backups``' store."""

    def __init__(self, backups: Backups) -> None:
        self.backups = backups
        self.rt = backups.rt
        self._current: dict[str, Any] | None = None  # the one running (backup id, node...)
        backups.after_backup.append(self.after_backup)
        backups.listed["verified"] = self.shown

    def node(self) -> Node:
        """The newest running slave, else the running master."""
        running = [n for n in self.backups.nodes.live_nodes() if n.state is NodeState.RUNNING]
        for role in (Role.SLAVE, Role.MASTER):
            found = sorted((n for n in running if n.role is role), key=lambda n: -n.id)
            if found:
                return found[0]
        raise WrongStateError(detail="no running master or slave to verify a backup on")

    def shown(self, record: BackupRecord) -> dict[str, Any] | None:
        """``verified`` as ``list_backups`` shows it."""
        if self._current is not None and self._current["id"] == record.id:
            return {"state": "running", "node": self._current["node"],
                    "at": self._current["at"]}
        kept = record.extra.get("verified")
        return kept if isinstance(kept, dict) else None

    async def start(self, backup_id: str) -> dict[str, Any]:
        """Start verifying ``backup_id`` in the background; the job as ``backup``'s."""
        backups = self.backups
        if backups._running is not None:
            raise BusyError(detail=f"busy: backup {backups._running} is running")
        backups._running = f"{backup_id} (verification)"
        try:
            async with backups.choosing:
                chain = await backups.chain(backup_id)
                node = self.node()
                use = backups.hold(chain, f"the verification of backup {backup_id} on node "
                                   f"{node.id}")
        except BaseException:
            backups._running = None
            raise
        self._current = {"id": backup_id, "node": str(node.id), "at": time.time()}
        self.rt.store.record_event(f"verification of backup {backup_id} started on node "
                                   f"{node.id}", node.id)
        backups.nodes.spawn(self._verify(chain, node, use), f"verify backup {backup_id}")
        return {"id": backup_id, "verified": self.shown(chain[-1]), "node": str(node.id)}

    async def _verify(self, chain: list[BackupRecord], node: Node, use: Use) -> None:
        backup_id = chain[-1].id
        started = time.monotonic()
        request = VerifyFromStoreRequest(store=self.backups.settings(),
                                         objects=[key for r in chain for key in r.objects])
        result: dict[str, Any] = {"at": time.time(), "ok": False, "tables": 0,
                                  "seconds": 0.0, "error": None, "node": str(node.id)}
        try:
            done = await self.rt.agents.verify_from_store(node, request,
                                                          timeout=BACKUP_TIMEOUT)
            result.update(ok=True, tables=done.tables)
        except ConpaasSQLError as exc:
            result["error"] = str(exc)
        finally:
            result["seconds"] = round(time.monotonic() - started, 3)
            try:
                await self._keep(backup_id, result)
            finally:
                self._current = None
                self.backups._running = None
                self.backups.release(use)
        if result["ok"]:
            self.rt.store.record_event(f"backup {backup_id} verified on node {node.id}: "
                                       f"{result['tables']} table(s) sound", node.id)
        else:
            self.rt.store.record_event(f"verification of backup {backup_id} failed: "
                                       f"{result['error']}", node.id)

    async def _keep(self, backup_id: str, result: dict[str, Any]) -> None:
        """The result into the backup's record (read anew: it may have changed)."""
        try:
            record = await self.backups.catalog.load(backup_id)
        except ConpaasSQLError as exc:
            log.warning("backup %s: its verification is not kept: %s", backup_id, exc)
            return
        record.extra["verified"] = result
        await self.backups.catalog.save(record)

    async def after_backup(self, record: BackupRecord) -> None:
        """``[backup] verify``: a backup just done verified, when it is one to verify."""
        when = self.rt.config.backup.verify
        if record.state != "done" or when == "never" or (
                when == "after_full" and record.kind != "full"):
            return
        try:
            await self.start(record.id)
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"backup {record.id} not verified: {exc}")
