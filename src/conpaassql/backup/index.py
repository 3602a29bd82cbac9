"""The binlog archive's index: how far the archive reaches, in one small object.

``index/binlogs.json`` holds the archived GTID position and the commit times of
the oldest and newest archived transactions, so the archiving's starting point
and the restorable window are read in one request, not by listing every segment
(whose number grows with time). The master's archiver rewrites it after each
segment it stores, the retention after it prunes (each replaces it whole, as the
stores do). It is a hint: absent or unreadable, it is rebuilt from a listing; a
stale one lags a pass at most (its position behind: the next archiver begins a
little early, and replay skips what it already applied), and each retention
pass rebuilds it from a listing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from conpaassql.backup.errors import BackupStoreError
from conpaassql.backup.segments import Segment, archived, position_of
from conpaassql.backup.store import BackupStore
from conpaassql.domain.gtid import GtidPosition

log = logging.getLogger(__name__)

KEY = "index/binlogs.json"
VERSION = 1


@dataclass(frozen=True)
class ArchiveIndex:
    position: GtidPosition = field(default_factory=GtidPosition)
    first_time: int | None = None  # commit time of the oldest archived transaction
    last_time: int | None = None  # and of the newest
    written: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps({"version": VERSION, "position": str(self.position),
                           "first_time": self.first_time, "last_time": self.last_time,
                           "written": self.written}, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ArchiveIndex:
        record = json.loads(data)
        if record.get("version") != VERSION:
            raise ValueError(f"index version {record.get('version')!r}")
        first, last = record.get("first_time"), record.get("last_time")
        return cls(GtidPosition.parse(record.get("position")),
                   None if first is None else int(first), None if last is None else int(last),
                   float(record.get("written", 0.0)))

    @classmethod
    def of(cls, segments: list[Segment]) -> ArchiveIndex:
        """The index of these segments (a listing)."""
        if not segments:
            return cls(written=time.time())
        return cls(position_of(segments), min(s.first_time for s in segments),
                   max(s.last_time for s in segments), time.time())


async def read(store: BackupStore) -> ArchiveIndex | None:
    """The stored index; None if absent or unreadable (logged)."""
    try:
        if not await store.exists(KEY):
            return None
        return ArchiveIndex.from_json(await store.get_bytes(KEY))
    except (BackupStoreError, ValueError, TypeError, AttributeError) as exc:
        log.warning("binlog archive index unreadable, rebuilt from a listing: %s", exc)
        return None


async def write(store: BackupStore, index: ArchiveIndex) -> None:
    await store.put_bytes(KEY, index.to_json(), {"kind": "index"})


async def rebuild(store: BackupStore, segments: list[Segment] | None = None) -> ArchiveIndex:
    """The index of a listing (``segments``, else the store's), written."""
    index = ArchiveIndex.of(await archived(store) if segments is None else segments)
    await write(store, index)
    return index


async def current(store: BackupStore) -> ArchiveIndex:
    """The stored index, else one rebuilt from a listing."""
    return await read(store) or await rebuild(store)


async def note(store: BackupStore, position: GtidPosition, first_time: int,
               last_time: int) -> None:
    """After a segment is stored: the archive reaches ``position`` (the archiver's own,
    which it knows whole), its newest commit at ``last_time``. Without an index, one
    is built from a listing."""
    stored = await read(store)
    if stored is None:
        await rebuild(store)
        return
    oldest = first_time if stored.first_time is None else stored.first_time
    await write(store, ArchiveIndex(position, min(oldest, first_time), last_time, time.time()))
