"""The archive's tail against a new master's binlog, after a failover.

A master that dies may have archived transactions no slave received (a commit
in its binlog whose semi-sync acknowledgement never came). The new master has
other transactions under the same sequence numbers: the archive's tail is not
its history. Before it archives, its archiver compares the archived
transactions after its oldest binlog's start with its own, GTID by GTID (server
ids included); the segments that hold others are moved under ``diverged/``
(kept for inspection, out of every replay), their common part archived again,
and archiving goes on from the last transaction both share.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from conpaassql.backup import binlog_events as ev
from conpaassql.backup import index
from conpaassql.backup.segments import PREFIX, Segment, archived, position_of
from conpaassql.backup.store import BackupStore
from conpaassql.domain.gtid import Gtid, GtidPosition

log = logging.getLogger(__name__)

DIVERGED = "diverged/"


@dataclass
class Lineage:
    since: GtidPosition  # where archiving goes on
    moved: list[str] = field(default_factory=list)  # segments set aside


async def own_gtids(datadir: Path, names: list[str]) -> dict[tuple[int, int], Gtid]:
    """Every transaction of these binlog files: (domain, sequence) -> its GTID."""
    ours: dict[tuple[int, int], Gtid] = {}
    for name in names:
        for tx in await asyncio.to_thread(ev.file_transactions, datadir / name):
            ours[(tx.gtid.domain, tx.gtid.sequence)] = tx.gtid
    return ours


async def align(store: BackupStore, ours: dict[tuple[int, int], Gtid],
                base: GtidPosition) -> Lineage:
    """Set aside the archived transactions after ``base`` (where this server's binlogs
    start) that are not this server's; where archiving goes on."""
    segments = await archived(store)
    moved = []
    for segment in reversed(segments):
        if not await _set_aside(store, segment, ours, base):
            break
        moved.append(segment.key)
    if moved:
        log.warning("archived binlog segments not in this server's history set aside: %s",
                    ", ".join(moved))
        segments = await archived(store)
        await index.rebuild(store, segments)
    return Lineage(position_of(segments), moved)


async def _set_aside(store: BackupStore, segment: Segment, ours: dict[tuple[int, int], Gtid],
                     base: GtidPosition) -> bool:
    """False if every transaction of ``segment`` is this server's; else it is moved
    under ``diverged/`` and its common beginning, if any, archived again."""
    data = await store.get_bytes(segment.key)
    size = ev.header_size(data)
    found = ev.transactions(data, size)
    foreign = next((i for i, tx in enumerate(found)
                    if tx.gtid.sequence > base.sequence(tx.gtid.domain)
                    and ours.get((tx.gtid.domain, tx.gtid.sequence)) != tx.gtid), None)
    if foreign is None:
        return False
    record = await store.head(segment.key)
    await store.put_bytes(DIVERGED + segment.key, data, record.metadata)
    if foreign > 0:
        kept = found[:foreign]
        end = segment.start + (found[foreign].offset - found[0].offset)
        metadata = {**record.metadata, "end": str(end),
                    "gtid_first": str(ev.first_gtids(kept)),
                    "gtid_last": str(ev.last_gtids(kept)),
                    "time_last": str(kept[-1].timestamp), "count": str(len(kept))}
        key = f"{PREFIX}{segment.server_id}/{segment.file}.{segment.start}-{end}"
        await store.put_bytes(key, ev.standalone(data[:size], data[found[0].offset:
                                                                found[foreign].offset]),
                              metadata)
        if key == segment.key:
            return True
    await store.delete(segment.key)
    return True
