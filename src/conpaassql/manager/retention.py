"""Retention: ``[backup] retention_days``, what falls out of the window deleted.

The restorable window must stay [now - retention, now]. A restore to its first
second starts from the newest done full backup at or before it whose verification
did not fail (the *anchor*), its incrementals, then the archived binlogs from the
anchor's GTID position. So
what goes: every backup started before the anchor (a full one with its
incrementals), every failed backup started before the window, and every archived
segment whose transactions are all in the anchor's position. Without an anchor
(no done full backup yet as old as the window), the backups are all kept, and
only the segments wholly before the oldest done full backup's position, and
older than the window, go, and the segments set aside under ``diverged/`` (another
history, after a failover) older than the window. A running backup is never touched, nor one a kept
backup is built on, nor (this pass) one in the chain of a restore or a verification
under way; the segments after such a backup's position stay with it. A chain is
chosen and held under ``Backups.choosing``, which a pass holds while it decides and
deletes backups; a hold taken after (a restore resumed) has the segments decided anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conpaassql.backup import index
from conpaassql.backup.catalog import BackupRecord
from conpaassql.backup.lineage import DIVERGED
from conpaassql.backup.segments import Segment, archived
from conpaassql.domain.gtid import GtidPosition
from conpaassql.errors import ConpaasSQLError
from conpaassql.manager import point_in_time
from conpaassql.manager.backups import Backups

log = logging.getLogger(__name__)

DAY = 86400.0


@dataclass
class Pruning:
    """What a retention pass deletes."""

    backups: list[str] = field(default_factory=list)  # ids, newest first
    segments: list[str] = field(default_factory=list)  # keys
    set_aside: list[str] = field(default_factory=list)  # keys under diverged/
    anchor: str | None = None  # the full backup the window starts from
    cutoff: float = 0.0
    held: dict[str, list[str]] = field(default_factory=dict)  # kept, in use: id -> by what

    def __bool__(self) -> bool:
        return bool(self.backups or self.segments or self.set_aside)


def decide(records: list[BackupRecord], segments: list[Segment], now: float, days: float,
           held: Mapping[str, Sequence[str]] | None = None) -> Pruning:
    """What falls out of a window of ``days`` ending at ``now`` (records oldest first);
    ``held``: the backups in use (id -> what uses them), kept."""
    held = held or {}
    cutoff = now - days * DAY
    fulls = [r for r in records if r.kind == "full" and r.state == "done"
             and r.finished is not None and not _failed_verification(r)]
    before = [r for r in fulls if r.finished is not None and r.finished <= cutoff]
    anchor = max(before, key=_finish) if before else None
    doomed: list[str] = []
    if anchor is not None:
        doomed = [r.id for r in records if (r.started, r.id) < (anchor.started, anchor.id)
                  and r.state != "running"]
    doomed += [r.id for r in records if r.state == "failed" and r.started < cutoff
               and r.id not in doomed]
    kept = {i: list(held[i]) for i in doomed if i in held}
    doomed = [i for i in doomed if i not in kept]
    _spare_ancestors(records, doomed)
    base = anchor if anchor is not None else (min(fulls, key=_finish) if fulls else None)
    gone: list[str] = []
    if base is not None:
        reached = _position(base)
        needed = [_position(r) for r in records if r.id in kept]
        gone = [s.key for s in segments if s.last.last and reached.contains(s.last)
                and s.last_time < cutoff and all(p.contains(s.last) for p in needed)]
    order = {r.id: i for i, r in enumerate(records)}
    return Pruning(sorted(doomed, key=lambda i: -order[i]), gone,
                   anchor=anchor.id if anchor else None, cutoff=cutoff, held=kept)


def _failed_verification(record: BackupRecord) -> bool:
    """A verification of it failed: no anchor (kept or deleted by age only)."""
    verified = record.extra.get("verified")
    return isinstance(verified, dict) and verified.get("ok") is False


def _position(record: BackupRecord) -> GtidPosition:
    try:
        return GtidPosition.parse(record.gtid)
    except ValueError:
        return GtidPosition()


def _spare_ancestors(records: list[BackupRecord], doomed: list[str]) -> None:
    """Keep (take out of ``doomed``) every backup a kept one is built on."""
    parents = {r.id: r.parent for r in records}
    for record in records:
        if record.id in doomed:
            continue
        parent = record.parent
        while parent is not None:
            if parent in doomed:
                doomed.remove(parent)
            parent = parents.get(parent)


def _finish(record: BackupRecord) -> float:
    return record.finished or 0.0


class Retention:
    """Runs ``decide`` on the store and deletes what it names; one pass at a time."""

    def __init__(self, backups: Backups) -> None:
        self.backups = backups
        self.last: Pruning | None = None
        self._lock = asyncio.Lock()

    @property
    def days(self) -> float | None:
        return self.backups.rt.config.backup.retention_days

    async def prune(self, now: float | None = None) -> Pruning:
        """One pass (nothing without ``retention_days``); the archive's index is
        rebuilt from the listing it reads."""
        async with self._lock:
            store = self.backups.store
            segments = await archived(store)
            days = self.days
            if days is None:
                await index.rebuild(store, segments)
                return Pruning()
            now = time.time() if now is None else now
            async with self.backups.choosing:  # no chain is chosen while backups go
                records = await self.backups.records()
                held = self.backups.held()
                pruning = decide(records, segments, now, days, held)
                await self._delete_backups(pruning, records)
            kept = [r for r in records if r.id not in set(pruning.backups)]
            if self.backups.held() != held:  # a hold taken since: decided anew
                held = self.backups.held()
                pruning.segments = self._redecided(pruning, kept, segments, now, days)
            doomed = set(pruning.segments)  # listed anew: the archiver's notes since stay
            await index.rebuild(store, [s for s in await archived(store) if s.key not in doomed])
            for key in list(pruning.segments):
                if self.backups.held() != held:
                    held = self.backups.held()
                    pruning.segments = self._redecided(pruning, kept, segments, now, days)
                    if key not in pruning.segments:
                        continue
                await store.delete(key)
            pruning.set_aside = [item.key for item in await store.list(DIVERGED)
                                 if item.created < pruning.cutoff]
            for key in pruning.set_aside:
                await store.delete(key)
            self.last = pruning
            if pruning.held:
                log.info("retention keeps backup(s) in use this pass: %s", _in_use(pruning))
            if pruning:
                self._report(pruning, days, segments)
            return pruning

    async def _delete_backups(self, pruning: Pruning, records: list[BackupRecord]) -> None:
        """The backups ``pruning`` names, each unless in use by now (kept, then)."""
        by_id = {r.id: r for r in records}
        for backup_id in list(pruning.backups):
            users = self.backups.users(backup_id)  # a hold taken since
            if users:
                pruning.backups.remove(backup_id)
                pruning.held[backup_id] = users
                continue
            for key in by_id[backup_id].objects:
                await self.backups.store.delete(key)
            await self.backups.catalog.delete(backup_id)
            self.backups.generation += 1

    def _redecided(self, pruning: Pruning, kept: list[BackupRecord], segments: list[Segment],
                   now: float, days: float) -> list[str]:
        """The segments still to delete now that more backups are held: only those no
        backup in use needs (its position onwards stays)."""
        again = decide(kept, segments, now, days, self.backups.held())
        pruning.held.update(again.held)
        return [key for key in pruning.segments if key in set(again.segments)]

    def _report(self, pruning: Pruning, days: float, segments: list[Segment]) -> None:
        doomed = [s for s in segments if s.key in set(pruning.segments)]
        parts = []
        if pruning.backups:
            parts.append(f"backup(s) {', '.join(pruning.backups)}")
        if doomed:
            upto = max(doomed, key=lambda s: s.order)
            parts.append(f"{len(doomed)} archived binlog segment(s) (up to GTID "
                         f"{upto.last}, committed by {point_in_time.shown(upto.last_time)})")
        if pruning.set_aside:
            parts.append(f"{len(pruning.set_aside)} set-aside segment(s) of another history")
        message = (f"retention ({days:g} days): deleted {' and '.join(parts)}; the window "
                   f"starts from backup {pruning.anchor or 'the oldest kept'}")
        if pruning.held:
            message += f"; kept this pass, in use: {_in_use(pruning)}"
        log.info("%s", message)
        self.backups.rt.store.record_event(message)

    async def prune_quietly(self) -> None:
        """A pass whose failure is logged, not raised (after a backup, periodically)."""
        try:
            await self.prune()
        except (ConpaasSQLError, OSError) as exc:
            log.warning("retention pass failed: %s", exc)


def _in_use(pruning: Pruning) -> str:
    return ", ".join(f"backup {backup_id} ({' and '.join(users)})"
                     for backup_id, users in pruning.held.items())
