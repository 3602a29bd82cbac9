"""``[backup] restore_from``: a new service whose first node is built from a backup
(RDS's "restore to a new instance"; a clone for staging).

The first node the user adds (``add_nodes``) to a service started with
``restore_from``, and no node yet, is made with role ``restored``: once its agent
runs, it restores the backup named (or the data of the second named) out of the
source store, which may be another service's, read with that service's key.
Root takes this service's password, that service's replication accounts are
dropped, and the node is made the master (writable); the other nodes, added with
it or later, are copied from it as usual. No master is elected before: the
nodes added with the first one wait for it.

The state is kept in the manager's store (``restore_from`` meta: ``waiting``,
``running``, ``done`` or ``failed``, with the node, backup, time and error), so a
restart resumes a restore not begun, marks one cut short as failed, and never
restores again once done. A manager started with ``restore_from`` on a service
that already had nodes ignores it (and says so). Errors (no such backup, a time
outside the source's window, an unreadable store or a wrong key) refuse the
``add_nodes`` and are in ``get_service_info``'s ``restore_from`` and the history;
after a failed restore, remove the node and add one again to retry. The chain is
held while it is restored (a source that is this service's own store keeps it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conpaassql.backup import BackupKey, open_store
from conpaassql.backup.catalog import BackupRecord, Catalog
from conpaassql.backup.errors import BackupStoreError
from conpaassql.backup.segments import archived
from conpaassql.config.restore_from import RestoreSource, read_key_file
from conpaassql.domain.node import Node
from conpaassql.domain.states import Role
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.manager import point_in_time
from conpaassql.manager.backups import (
    BACKUP_TIMEOUT,
    POLL,
    RESTORE_INTERRUPTED,
    Backups,
    Use,
    chain_of,
)
from conpaassql.manager.service import Runtime
from conpaassql.protocol.backup import RestoreFromStoreRequest, StoreSettings

if TYPE_CHECKING:
    from conpaassql.manager.replication import Replication

log = logging.getLogger(__name__)

META = "restore_from"
#: How long the promotion waits for a topology change in progress to end.
PROMOTE_TRIES = 120


def state(rt: Runtime) -> dict[str, Any]:
    """The ``restore_from`` meta ({} before the first attempt)."""
    text = rt.store.meta(META)
    return json.loads(text) if text else {}


def pending(rt: Runtime) -> bool:
    """A first node still to be restored: no master may be elected meanwhile."""
    if rt.config.backup.restore_from is None:
        return False
    return state(rt).get("state") not in ("done", "skipped")


@dataclass(frozen=True)
class Plan:
    """What the first node restores: the chain, the second, the store as an agent
    opens it."""

    chain: list[BackupRecord]
    target: float | None
    settings: StoreSettings


class FirstRestore:
    """The first node of a service started with ``restore_from``."""

    def __init__(self, backups: Backups, replication: Replication) -> None:
        self.backups = backups
        self.replication = replication
        self.nodes = backups.nodes
        self.rt = backups.rt
        #: Held while the first node is chosen: a second ``add_nodes`` meanwhile waits
        #: for it, then adds plain nodes.
        self._first = asyncio.Lock()

    @property
    def source(self) -> RestoreSource | None:
        return self.rt.config.backup.restore_from

    def info(self) -> dict[str, Any] | None:
        """For ``get_service_info``: the source and how far the restore is."""
        if self.source is None:
            return None
        return {"source": self.source.text, **state(self.rt)}

    def _set(self, **changes: Any) -> None:
        self.rt.store.set_meta(META, json.dumps({**state(self.rt), **changes},
                                                sort_keys=True))

    def _restoring(self) -> Node | None:
        """The live first node, unless its restore failed."""
        for node in self.nodes.live_nodes():
            restore = node.details.get("restore") or {}
            if restore.get("source") and restore.get("state") != "failed":
                return node
        return None

    # -- the first node ----------------------------------------------------------

    async def add_nodes(self, count: int, cloud: str | None) -> list[Node]:
        """``add_nodes``: the first one restored from the source when it is due."""
        if not pending(self.rt) or self._restoring() is not None:
            return await self.nodes.add_nodes(count, cloud)
        async with self._first:
            if not pending(self.rt) or self._restoring() is not None:
                return await self.nodes.add_nodes(count, cloud)
            return await self._add_first(count, cloud)

    async def _add_first(self, count: int, cloud: str | None) -> list[Node]:
        assert self.source is not None
        try:
            async with self.backups.choosing:
                plan = await self.plan(self.source)
                use = self._hold(None, plan)
        except ConpaasSQLError as exc:
            self._failed(None, str(exc))
            raise
        try:
            first = (await self.nodes.add_nodes(1, cloud, role=Role.RESTORED))[0]
        except BaseException:
            self.backups.release(use)
            raise
        use.what = self._hold_text(first.id, plan)
        backup_id = plan.chain[-1].id
        restore: dict[str, Any] = {"backup": backup_id, "state": "waiting",
                                   "source": self.source.text}
        if plan.target is not None:
            restore["time"] = plan.target
        first = self.rt.store.update_node(first.id,
                                          details={**first.details, "restore": restore})
        self._set(state="waiting", node=first.id, backup=backup_id, time=plan.target,
                  error=None)
        self.rt.store.record_event(
            f"node {first.id} added to be the first node, holding {self.source.what} "
            f"(backup {backup_id}) of {self.source.store} (restore_from)", first.id)
        self.nodes.spawn(self._restore(first.id, plan, use), f"restore_from into node {first.id}")
        rest = await self.nodes.add_nodes(count - 1, cloud) if count > 1 else []
        return [first, *rest]

    async def plan(self, source: RestoreSource) -> Plan:
        """The chain to restore out of the source store (read now: its errors are the
        user's to see at once)."""
        config = dataclasses.replace(self.rt.config.backup, path=source.path,
                                     bucket=source.bucket, prefix=source.prefix,
                                     restore_from=None)
        key = await asyncio.to_thread(self._key, source)
        if source.path is not None and not await asyncio.to_thread(source.path.is_dir):
            raise BackupStoreError(source.store, detail="no such directory")
        store = open_store(config, key, self.rt.state_dir)
        try:
            records = await Catalog(store).records()
            target = source.time
            if source.backup is not None:
                chain = chain_of(records, source.backup)
            else:
                segments = await archived(store)
                if source.latest:
                    target = point_in_time.window(records, segments)[1]
                    if target is None:
                        raise WrongStateError(detail=f"no backup in {source.store}")
                assert target is not None
                chain = chain_of(records, point_in_time.choose(records, segments, target).id)
        finally:
            await store.close()
        path = None if source.path is None else str(await asyncio.to_thread(source.path.resolve))
        settings = self.backups.settings().model_copy(update={
            "path": path, "bucket": source.bucket, "prefix": source.prefix,
            "key": key.to_text()})
        return Plan(chain, target, settings)

    def _key(self, source: RestoreSource) -> BackupKey:
        """``restore_key``, the key in ``restore_key_file``, or this service's own."""
        if source.key is not None:
            return BackupKey.from_text(source.key, "[backup] restore_key")
        if source.key_file is not None:
            text = read_key_file(Path(source.key_file))
            return BackupKey.from_text(text, f"[backup] restore_key_file {source.key_file}")
        return self.rt.secrets.backup_key

    # -- restoring and promoting ---------------------------------------------------

    def _note(self, node_id: int, **restore: Any) -> None:
        self.backups._note(node_id, **restore)

    def _failed(self, node_id: int | None, error: str) -> None:
        self._set(state="failed", error=error, **({} if node_id is None else {"node": node_id}))
        if node_id is not None:
            self._note(node_id, state="failed", error=error)
        source = self.source.text if self.source else "?"
        self.rt.store.record_event(f"restore_from {source} failed: {error}", node_id)

    def _hold(self, node_id: int | None, plan: Plan) -> Use:
        return self.backups.hold(plan.chain, self._hold_text(node_id, plan))

    @staticmethod
    def _hold_text(node_id: int | None, plan: Plan) -> str:
        into = "a new node" if node_id is None else f"node {node_id}"
        return f"restore_from into {into} (backup {plan.chain[-1].id})"

    async def _restore(self, node_id: int, plan: Plan, use: Use) -> None:
        try:
            await self._restore_plan(node_id, plan)
        finally:
            self.backups.release(use)

    async def _restore_plan(self, node_id: int, plan: Plan) -> None:
        node = await self.backups._running_node(node_id)
        if node is None:
            self._failed(node_id, "the node did not come up")
            return
        self._note(node_id, state="running")
        self._set(state="running")
        request = RestoreFromStoreRequest(
            store=plan.settings, objects=[key for r in plan.chain for key in r.objects],
            target_time=plan.target, foreign=True)
        try:
            done = await self.rt.agents.restore_from_store(node, request,
                                                           timeout=BACKUP_TIMEOUT)
        except ConpaasSQLError as exc:
            self._failed(node_id, str(exc))
            return
        self._note(node_id, state="done", gtid=done.gtid_position)
        self._set(gtid=done.gtid_position)
        await self._promote(node_id)

    async def _promote(self, node_id: int) -> None:
        """The restored node made the master, once it runs again (its server was just
        restarted on the copy) and no topology change is in progress."""
        why = "the node did not come up"
        for _ in range(PROMOTE_TRIES):
            if await self.backups._running_node(node_id) is None:
                break
            try:
                await self.replication.promote_restored(node_id)
                break
            except (BusyError, WrongStateError) as exc:
                why = str(exc)  # the probe has not seen it running yet, or busy
                await asyncio.sleep(POLL * 2)
            except ConpaasSQLError as exc:
                why = str(exc)
                break
        else:
            why = f"it stayed so: {why}"
        if self.nodes.node(node_id).role is not Role.MASTER:
            self._failed(node_id, f"the restored node was not made the master: {why}")
            return
        restore = state(self.rt)
        self._set(state="done", error=None)
        upto = "" if restore.get("time") is None else \
            f" and the binlogs to {point_in_time.shown(restore['time'])}"
        backup, gtid = restore.get("backup"), restore.get("gtid") or "empty"
        store = self.source.store if self.source else "?"
        self.rt.store.record_event(f"restore_from done: node {node_id} holds backup {backup}"
                                   f"{upto} of {store} (GTID position {gtid}) and is the "
                                   "master", node_id)

    # -- after a restart -----------------------------------------------------------

    async def resume(self) -> None:
        """A restore not begun is begun, one cut short marked failed, one done but not
        promoted promoted; ``restore_from`` on a service that had nodes is ignored."""
        if self.source is None:
            return
        if not state(self.rt) and self.rt.store.nodes(include_terminated=True):
            self._set(state="skipped", error="the service already had nodes")
            self.rt.store.record_event(f"restore_from {self.source.text} ignored: the "
                                       "service already had nodes")
            return
        node = self._restoring()
        if node is None or not pending(self.rt):
            return
        restore = node.details.get("restore") or {}
        if restore.get("state") == "running":
            self._failed(node.id, RESTORE_INTERRUPTED)
        elif restore.get("state") == "done":
            self.nodes.spawn(self._promote(node.id), f"restore_from: promote node {node.id}")
        else:
            try:
                async with self.backups.choosing:
                    plan = await self.plan(self.source)
                    use = self._hold(node.id, plan)
            except ConpaasSQLError as exc:
                self._failed(node.id, str(exc))
                return
            self.nodes.spawn(self._restore(node.id, plan, use),
                             f"restore_from into node {node.id}")
