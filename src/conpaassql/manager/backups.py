"""Backups of the service: taken by an agent into the store, listed, deleted, and
restored into a new node.

A backup is taken from a running slave when there is one (the master keeps its
full speed), from the master otherwise. The manager writes the catalog record
(``running``, then ``done`` or ``failed``) and the agent streams mariabackup's
copy into the store itself; the store's settings and key travel in the request
over the mutual-TLS agent RPC. A restored node is made with role ``restored``:
the replication controller leaves it alone, and once its agent runs, the agent
replaces its data by the backup (and the incrementals before it) and stays
read-only. The chain a restore or a verification reads is *held* while it runs:
``delete_backup`` refuses such a backup (``busy: ...``) and retention keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from conpaassql.backup import BackupStore, index, open_store
from conpaassql.backup.catalog import BackupRecord, Catalog, new_backup_id
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import (
    BusyError,
    ConpaasSQLError,
    NotFoundError,
    WrongStateError,
)
from conpaassql.manager import point_in_time
from conpaassql.manager.job_progress import ProgressProbe
from conpaassql.manager.service import NodeService
from conpaassql.protocol.backup import BackupToStoreRequest, RestoreFromStoreRequest, StoreSettings

log = logging.getLogger(__name__)

#: Longest a backup or a restore may take (the agent's call).
BACKUP_TIMEOUT = 12 * 3600.0
#: Longest wait for a new node's agent to run its server before its restore starts.
BOOT_TIMEOUT = 900.0
POLL = 0.5
SHOWN = ("id", "kind", "state", "started", "finished", "gtid", "bytes", "node", "parent")
INTERRUPTED = "interrupted: the manager stopped while it ran"
RESTORE_INTERRUPTED = ("interrupted: the manager stopped while the node restored it; remove "
                       "the node and restore again")
RESUMED = ("waiting", "running")


def object_key(backup_id: str) -> str:
    return f"backups/{backup_id}.xbstream"


@dataclass(eq=False)
class Use:
    """A restore or a verification under way: the backups of its chain, in use."""

    ids: frozenset[str]
    what: str  # "the restore of node 5 (from backup ...)"


class Backups:
    """The backup use cases over the service's store."""

    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self._store: BackupStore | None = None
        self._running: str | None = None  # the id of the backup being taken
        self._source: Node | None = None  # the node taking it
        #: How far the agents' backups and restores have got.
        self.probe = ProgressProbe(lambda: self.rt.agents)
        #: Called with each backup's record once it is done or failed.
        self.after_backup: list[Callable[[BackupRecord], Awaitable[None]]] = []
        #: More fields of ``list_backups``' entries: name -> its value for a record.
        self.listed: dict[str, Callable[[BackupRecord], Any]] = {}
        #: Told of each backup taken, done or failed (the scheduler's retention).
        self.on_finished: Callable[[BackupRecord], None] | None = None
        self._uses: list[Use] = []  # the restores and verifications under way
        #: Held while a chain is chosen and its hold taken, and by a retention pass
        #: while it decides and deletes backups: no pass deletes a chain being chosen.
        self.choosing = asyncio.Lock()
        #: Bumped when a backup of this manager starts or ends or one is deleted (the
        #: scheduler's copy of the catalog is read anew then).
        self.generation = 0

    # -- the store --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A backup (or a verification) is being taken."""
        return self._running is not None

    @property
    def store(self) -> BackupStore:
        if self._store is None:
            self._store = open_store(self.rt.config.backup, self.rt.secrets.backup_key,
                                     self.rt.state_dir)
        return self._store

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.store)

    def settings(self) -> StoreSettings:
        """The store as an agent opens it (a file store's directory made absolute)."""
        config = self.rt.config.backup
        path = None
        if config.bucket is None:
            path = str(config.directory(self.rt.state_dir).resolve())
        return StoreSettings(
            path=path, bucket=config.bucket, prefix=config.prefix,
            endpoint_url=config.endpoint_url, region=config.region,
            access_key_id=config.access_key_id, secret_access_key=config.secret_access_key,
            session_token=config.session_token,
            addressing_style=config.addressing_style,  # type: ignore[arg-type]
            part_size=config.part_size, key=self.rt.secrets.backup_key.to_text())

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()

    # -- taking one -------------------------------------------------------------

    def source(self, parent: BackupRecord | None = None) -> Node:
        """A running slave (the newest), else the running master; for an incremental,
        its parent's node (LSNs are a server's own: another node's pages would not
        follow from the parent's)."""
        running = [n for n in self.nodes.live_nodes() if n.state is NodeState.RUNNING]
        if parent is not None:
            node = next((n for n in running if str(n.id) == parent.node
                         and n.role in (Role.SLAVE, Role.MASTER)), None)
            if node is None:
                raise WrongStateError(detail=f"node {parent.node}, which took backup "
                                      f"{parent.id}, is not running: take a full backup")
            return node
        for role in (Role.SLAVE, Role.MASTER):
            found = sorted((n for n in running if n.role is role), key=lambda n: -n.id)
            if found:
                return found[0]
        raise WrongStateError(detail="no running master or slave to take a backup from")

    async def start(self, kind: str, scheduled: bool = False) -> BackupRecord:
        """Start a backup in the background; its record (``running``)."""
        if self._running is not None:
            raise BusyError(detail=f"busy: backup {self._running} is running")
        self._running = "starting"
        try:
            parent = await self._parent() if kind == "incremental" else None
            node = self.source(parent)
            backup_id = new_backup_id(kind)
            record = BackupRecord(backup_id, kind, started=time.time(), node=str(node.id),
                                  parent=parent.id if parent else None,
                                  objects=[object_key(backup_id)])
            self._running = backup_id  # before its record shows it running
            await self.catalog.save(record)
            self.generation += 1
        except BaseException:
            self._running = None
            raise
        how = f"{kind}, scheduled" if scheduled else kind
        self.rt.store.record_event(f"backup {record.id} ({how}) started on node {node.id}",
                                   node.id)
        self.nodes.spawn(self._take(record, node, parent), f"backup {record.id}")
        return record

    async def _parent(self) -> BackupRecord:
        done = [r for r in await self.catalog.records() if r.state == "done"]
        if not done:
            raise WrongStateError(detail="no backup to take an incremental from: take a "
                                  "full backup first")
        return done[-1]

    async def _take(self, record: BackupRecord, node: Node, parent: BackupRecord | None) -> None:
        request = BackupToStoreRequest(
            store=self.settings(), object=record.objects[0],
            incremental_lsn=parent.lsn["to"] if parent is not None else None)
        self._source = node
        try:
            taken = await self.rt.agents.backup_to_store(node, request, timeout=BACKUP_TIMEOUT)
        except ConpaasSQLError as exc:
            record.state, record.error = "failed", str(exc)
        else:
            record.state, record.gtid, record.bytes = "done", taken.gtid, taken.bytes
            record.lsn = {"from": taken.from_lsn, "to": taken.to_lsn}
        finally:
            record.finished = time.time()
            try:
                await self.catalog.save(record)
            finally:
                self._running = self._source = None
                self.generation += 1
        if record.state == "done":
            self.rt.store.record_event(
                f"backup {record.id} done: {record.bytes} bytes from node {node.id}, "
                f"GTID position {record.gtid or 'empty'}", node.id)
        else:
            self.rt.store.record_event(f"backup {record.id} failed: {record.error}", node.id)
        if self.on_finished is not None:
            self.on_finished(record)
        for hook in self.after_backup:
            await hook(record)

    # -- backups in use ----------------------------------------------------------

    def hold(self, chain: list[BackupRecord], what: str) -> Use:
        """``chain`` in use by ``what`` until ``release``: not deleted meanwhile."""
        use = Use(frozenset(r.id for r in chain), what)
        self._uses.append(use)
        return use

    def release(self, use: Use) -> None:
        if use in self._uses:
            self._uses.remove(use)

    def users(self, backup_id: str) -> list[str]:
        """What uses ``backup_id`` now (restores, verifications)."""
        return [use.what for use in self._uses if backup_id in use.ids]

    def held(self) -> dict[str, list[str]]:
        """Every backup in use: its id -> what uses it."""
        return {backup_id: self.users(backup_id)
                for backup_id in sorted({i for use in self._uses for i in use.ids})}

    def _refuse_if_held(self, backup_ids: list[str]) -> None:
        for backup_id in backup_ids:
            users = self.users(backup_id)
            if users:
                raise BusyError(detail=f"busy: backup {backup_id} is in use by "
                                f"{' and '.join(users)}")

    # -- listing and deleting ---------------------------------------------------

    async def records(self) -> list[BackupRecord]:
        """The catalog, a ``running`` record this manager is not taking shown failed."""
        found = await self.catalog.records()
        for record in found:
            if record.state == "running" and record.id != self._running:
                record.state, record.error = "failed", INTERRUPTED
        return found

    async def listing(self) -> dict[str, Any]:
        archive = await index.current(self.store)
        records = await self.records()  # read last, with what is running at this moment
        start, end = point_in_time.window(records, [], archive.last_time)
        shown = [{**{name: getattr(r, name) for name in SHOWN},
                  **{name: value(r) for name, value in self.listed.items()}}
                 for r in records]
        running, source = self._running, self._source
        for entry in shown:
            if entry["id"] == running and entry["state"] == "running" and source is not None:
                progress = await self.probe.of(source, "backup")
                if progress is not None:
                    entry["progress"] = progress
        return {"backups": shown, "restorable": {"from": start, "to": end}}

    async def restore_progress(self, node: Node) -> dict[str, Any] | None:
        """How far the restore running on ``node`` has got (None: none known)."""
        restore = node.details.get("restore") or {}
        if restore.get("state") != "running" or restore.get("source"):
            return None
        return await self.probe.of(node, "restore")

    async def delete(self, backup_id: str, with_incrementals: bool = False) -> list[str]:
        """Delete a backup (objects, then record); the ids deleted, newest first."""
        records = await self.records()
        by_id = {r.id: r for r in records}
        if backup_id not in by_id:
            raise NotFoundError("id", detail=f"no backup {backup_id}")
        if backup_id == self._running:
            raise BusyError(detail=f"busy: backup {backup_id} is running")
        self._refuse_if_held([backup_id])
        dependents = _descendants(backup_id, records)
        if dependents and not with_incrementals:
            raise WrongStateError(detail=f"backup {backup_id} is needed by incremental(s) "
                                  f"{', '.join(dependents)}: delete them first, or with it "
                                  "(with_incrementals)")
        doomed = [*reversed(dependents), backup_id]
        self._refuse_if_held(doomed)
        for victim in doomed:
            for key in by_id[victim].objects:
                await self.store.delete(key)
            await self.catalog.delete(victim)
        self.generation += 1
        self.rt.store.record_event(f"backup(s) {', '.join(doomed)} deleted")
        return doomed

    async def chain(self, backup_id: str) -> list[BackupRecord]:
        """The full backup and the incrementals up to ``backup_id``, oldest first."""
        return chain_of(await self.records(), backup_id)

    # -- restoring --------------------------------------------------------------

    async def restore_node(self, backup_id: str, cloud: str | None = None) -> Node:
        """A new node (role ``restored``) that takes the backup's data once it runs."""
        async with self.choosing:
            started = self._starting(await self.chain(backup_id))
        return await self._restore_node(started, cloud, None)

    async def restore_node_at(self, target: float, cloud: str | None = None) -> Node:
        """A new node (role ``restored``) holding the data as it was at the second
        ``target``: the latest backup at or before it, then the archived binlogs."""
        async with self.choosing:
            records = await self.records()
            archive = await index.current(self.store)
            chosen = point_in_time.choose(records, [], target, archive.last_time)
            started = self._starting(chain_of(records, chosen.id))
        return await self._restore_node(started, cloud, target)

    def _starting(self, chain: list[BackupRecord]) -> tuple[list[BackupRecord], Use]:
        return chain, self.hold(chain, f"a restore being started (from backup {chain[-1].id})")

    async def _restore_node(self, held: tuple[list[BackupRecord], Use], cloud: str | None,
                            target: float | None) -> Node:
        chain, use = held
        backup_id = chain[-1].id
        try:
            node = (await self.nodes.add_nodes(1, cloud, role=Role.RESTORED))[0]
        except BaseException:
            self.release(use)
            raise
        use.what = _restore_of(node.id, backup_id)
        restore: dict[str, Any] = {"backup": backup_id, "state": "waiting"}
        what = f"backup {backup_id}"
        if target is not None:
            restore["time"] = target
            what = f"the data of {point_in_time.shown(target)} (from {what})"
        node = self.rt.store.update_node(node.id, details={**node.details, "restore": restore})
        self.rt.store.record_event(f"node {node.id} added to hold {what}", node.id)
        self.nodes.spawn(self._restore(node.id, chain, target, use), f"restore node {node.id}")
        return node

    async def resume(self) -> None:
        """After a manager restart: a restore not begun is begun; one its agent was
        doing when the manager stopped is marked failed (its outcome is unknown)."""
        for node in self.nodes.live_nodes():
            restore = node.details.get("restore") or {}
            if node.role is not Role.RESTORED or restore.get("state") not in RESUMED \
                    or restore.get("source"):  # restore_from's (manager.restore_from)
                continue
            if restore["state"] == "running":
                self._note(node.id, state="failed", error=RESTORE_INTERRUPTED)
                continue
            try:
                async with self.choosing:
                    chain = await self.chain(str(restore.get("backup")))
                    use = self.hold(chain, _restore_of(node.id, chain[-1].id))
            except ConpaasSQLError as exc:
                self._note(node.id, state="failed", error=str(exc))
                continue
            self.nodes.spawn(self._restore(node.id, chain, restore.get("time"), use),
                             f"restore node {node.id}")

    def _note(self, node_id: int, **restore: Any) -> None:
        node = self.rt.store.get_node(node_id)
        if node is not None:
            details = {**node.details}
            details["restore"] = {**details.get("restore", {}), **restore}
            self.rt.store.update_node(node_id, details=details)

    async def _running_node(self, node_id: int) -> Node | None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            node = self.rt.store.get_node(node_id)
            if node is None or not node.state.is_live:
                return None
            if node.state is NodeState.RUNNING:
                return node
            await asyncio.sleep(POLL)
        return None

    async def _restore(self, node_id: int, chain: list[BackupRecord], target: float | None,
                       use: Use) -> None:
        try:
            await self._restore_chain(node_id, chain, target)
        finally:
            self.release(use)

    async def _restore_chain(self, node_id: int, chain: list[BackupRecord],
                             target: float | None) -> None:
        backup_id = chain[-1].id
        node = await self._running_node(node_id)
        if node is None:
            self._note(node_id, state="failed", error="the node did not come up")
            self.rt.store.record_event(f"restoring node {node_id} from backup {backup_id} "
                                       "failed: the node did not come up", node_id)
            return
        self._note(node_id, state="running")
        request = RestoreFromStoreRequest(
            store=self.settings(), objects=[key for r in chain for key in r.objects],
            target_time=target)
        try:
            done = await self.rt.agents.restore_from_store(node, request,
                                                           timeout=BACKUP_TIMEOUT)
        except ConpaasSQLError as exc:
            self._note(node_id, state="failed", error=str(exc))
            self.rt.store.record_event(f"restoring node {node_id} from backup {backup_id} "
                                       f"failed: {exc}", node_id)
            return
        self._note(node_id, state="done", gtid=done.gtid_position)
        upto = "" if target is None else f" and the binlogs to {point_in_time.shown(target)}"
        self.rt.store.record_event(
            f"node {node_id} restored from backup {backup_id}{upto} (GTID position "
            f"{done.gtid_position or 'empty'}), read-only, apart from replication", node_id)


def _restore_of(node_id: int, backup_id: str) -> str:
    return f"the restore of node {node_id} (from backup {backup_id})"


def chain_of(records: list[BackupRecord], backup_id: str) -> list[BackupRecord]:
    """The full backup and the incrementals up to ``backup_id``, oldest first."""
    by_id = {r.id: r for r in records}
    chain: list[BackupRecord] = []
    current: str | None = backup_id
    while current is not None:
        record = by_id.get(current)
        if record is None:
            what = "no backup" if current == backup_id else "its chain lacks backup"
            raise NotFoundError("backup", detail=f"{what} {current}")
        if record.state != "done":
            raise WrongStateError(detail=f"backup {record.id} is {record.state}")
        chain.append(record)
        current = record.parent
    return list(reversed(chain))


def _descendants(backup_id: str, records: list[BackupRecord]) -> list[str]:
    """The incrementals built on ``backup_id``, directly or not, oldest first."""
    found: list[str] = []
    wanted = {backup_id}
    for record in records:  # oldest first: a parent comes before its children
        if record.parent in wanted:
            found.append(record.id)
            wanted.add(record.id)
    return found
