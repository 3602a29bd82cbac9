"""Continuous binlog archiving: the master's own binlog files, cut at transactions,
uploaded to the store every interval.

The archiver runs beside the master's mariadbd (in its agent). Each pass lists
the binlog files (``SHOW BINARY LOGS``: a file's size, the active one's included,
is at a group-commit boundary), reads what is new since the last pass straight
from the datadir and uploads it as one object per file touched:
``binlogs/<server_id>/<file>.<start>-<end>``, a standalone binlog (the file's
header, then whole transactions) whose metadata holds the GTIDs and the commit
times it covers. Where to begin is a GTID position, not a file name: the first
transaction after ``since`` in this server's binlogs, so that a new master
continues where the old one stopped with no gap and no duplicate. If this
server's binlogs no longer reach back to ``since`` (purged before they were
archived), the gap is kept in the state and archiving goes on from the oldest
file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conpaassql.backup import binlog_events as ev
from conpaassql.backup import index
from conpaassql.backup.lineage import align, own_gtids
from conpaassql.backup.segments import PREFIX, Segment, archived, gaps, position_of
from conpaassql.backup.store import BackupStore
from conpaassql.domain.gtid import Gtid, GtidPosition
from conpaassql.mysql.connection import ConnectInfo, execute

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "ArchiveState", "Archiver", "Segment", "archived", "gaps", "position_of"]

PASS_MARGIN = 1.5  # the next pass's time, as a multiple of the last one's
MAX_SEGMENT = 64 << 20  # bytes of one segment at most, cut at a transaction
READ_BLOCK = 1 << 20  # a segment is streamed from its file in blocks of this size
EARLY = 0.05  # and a share of the interval, for the scheduler's jitter


@dataclass
class ArchiveState:
    """What the archiver reports (``archive_status``)."""

    since: str
    archived_to: str = ""
    archived_time: int | None = None  # commit time of the last archived transaction
    caught_up_at: float | None = None  # every commit before this is in the store
    segments: int = 0
    gap: dict[str, str] | None = None
    diverged: dict[str, str] | None = None  # the archive's tail was another history
    error: str | None = None
    cursor: dict[str, Any] = field(default_factory=dict)


class Archiver:
    """Uploads this server's new binlog transactions to ``store`` every ``interval``."""

    def __init__(self, store: BackupStore, info: ConnectInfo, datadir: Path,
                 since: GtidPosition, interval: float = 5.0, *,
                 only_writable: bool = False) -> None:
        """``only_writable``: pass while the server is read-only (a master that lost
        its role, now fenced or a slave: what it logs now is another master's)."""
        self.store, self.info, self.datadir, self.interval = store, info, datadir, interval
        self.only_writable = only_writable
        self.max_segment = MAX_SEGMENT
        self.since = since
        self.state = ArchiveState(since=str(since), archived_to=str(since))
        self._file: str | None = None
        self._pos = 4
        self._server_id: int | None = None
        self._stopping = asyncio.Event()

    def request_stop(self) -> None:
        """End ``run`` after the pass under way (an upload is not cut in the middle:
        what it stored is in ``since``)."""
        self._stopping.set()

    async def run(self) -> None:
        """Pass after pass until stopped; an error is kept in the state and retried."""
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self.archive_once()
                self.state.error = None
            except (OSError, ev.BinlogFormatError, ValueError) as exc:
                self.state.error = str(exc)[:300]
                log.warning("binlog archiving: %s", self.state.error)
            except Exception as exc:  # noqa: BLE001 (MySQL and store errors alike)
                self.state.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("binlog archiving: %s", self.state.error)
            # A commit just after this pass's cut is stored by the end of the next:
            # start it early by this pass's time (and a margin), so that it ends
            # within ``interval`` of this cut.
            took = time.monotonic() - started
            pause = max(0.0, self.interval * (1 - EARLY) - (1 + PASS_MARGIN) * took)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def archive_once(self) -> int:
        """One pass: everything committed before it begins is uploaded. Returns the
        number of objects uploaded."""
        began = time.time()
        rows = await execute(self.info, "SELECT @@server_id AS id, @@read_only AS ro")
        if self.only_writable and int(rows[0]["ro"]):
            return 0
        self._server_id = int(rows[0]["id"])
        files = await self._binlogs()
        if self._file is None or self._file not in files:
            await self._locate(list(files))
        assert self._file is not None
        uploaded = 0
        names = list(files)
        for name in names[names.index(self._file):]:
            if name != self._file:
                self._file, self._pos = name, 4
            while files[name] > self._pos:
                stop = await asyncio.to_thread(self._boundary, name, self._pos, files[name])
                uploaded += await self._upload(name, self._pos, stop)
                self._pos = stop
        self.state.caught_up_at = began
        self.state.cursor = {"file": self._file, "pos": self._pos}
        return uploaded

    async def _binlogs(self) -> dict[str, int]:
        rows = await execute(self.info, "SHOW BINARY LOGS")
        return {str(row["Log_name"]): int(row["File_size"]) for row in rows}

    async def _locate(self, names: list[str]) -> None:
        """The newest file whose starting state is within ``since``; a gap if none."""
        if not names:
            raise ValueError("the server has no binary log")
        chosen = None
        for name in names:
            head = await asyncio.to_thread(self._read, name, 0, 64 * 1024)
            before = ev.gtid_list(head) or GtidPosition()
            if self.since.contains(before):
                chosen = name
            elif chosen is None:
                self.state.gap = {"archived_to": str(self.since), "binlogs_from": str(before),
                                  "file": name, "detected": str(int(time.time()))}
                log.warning("binlog archive gap: archived to %s, binlogs start after %s",
                            self.since, before)
                chosen = name
                break
            else:
                break
        assert chosen is not None
        self._file, self._pos = chosen, 4
        if self.state.gap is None and self.since.last:
            await self._align(names[names.index(chosen):])

    async def _align(self, names: list[str]) -> None:
        """Archive from the last transaction the archive and this server share."""
        head = await asyncio.to_thread(self._read, names[0], 0, 64 * 1024)
        base = ev.gtid_list(head) or GtidPosition()
        ours = await own_gtids(self.datadir, names)
        for gtid in base.last:
            ours[(gtid.domain, gtid.sequence)] = gtid
        lineage = await align(self.store, ours, base)
        if lineage.moved:
            self.state.diverged = {"archived_to": str(self.since),
                                   "kept_to": str(lineage.since),
                                   "set_aside": str(len(lineage.moved))}
            self.since = lineage.since
            self.state.archived_to = str(lineage.since)

    def _boundary(self, name: str, start: int, end: int) -> int:
        """Where a segment from ``start`` ends: ``end``, or a transaction's start
        ``max_segment`` bytes on at most (past it if one transaction is larger)."""
        if end - start <= self.max_segment:
            return end
        offsets = [tx.offset for tx in ev.file_transactions(self.datadir / name, end)
                   if tx.offset > start]
        within = [offset for offset in offsets if offset <= start + self.max_segment]
        return within[-1] if within else (offsets[0] if offsets else end)

    def _read(self, name: str, start: int, end: int) -> bytes:
        with open(self.datadir / name, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    async def _upload(self, name: str, start: int, end: int) -> int:
        """Store the transactions of ``name`` between ``start`` and ``end`` not archived
        yet, as a standalone binlog streamed from the file (never read whole)."""
        header_bytes = await asyncio.to_thread(self._read, name, 0, 4096)
        size = ev.header_size(header_bytes)
        header = header_bytes[:size]
        begin = max(start, size)
        listed = await asyncio.to_thread(ev.file_transactions, self.datadir / name, end)
        found = [tx for tx in listed if tx.offset >= begin
                 and tx.gtid.sequence > self.since.sequence(tx.gtid.domain)]
        if not found:
            return 0
        first_in_file = found[0].offset
        last = ev.last_gtids(found)
        metadata = {"server_id": str(self._server_id), "file": name,
                    "start": str(first_in_file), "end": str(end),
                    "gtid_first": str(ev.first_gtids(found)), "gtid_last": str(last),
                    "time_first": str(found[0].timestamp),
                    "time_last": str(found[-1].timestamp), "count": str(len(found))}
        key = f"{PREFIX}{self._server_id}/{name}.{first_in_file}-{end}"
        await self.store.put(key, self._segment(name, header, first_in_file, end), metadata)
        self.since = _merge(self.since, last)
        self.state.archived_to = str(self.since)
        self.state.archived_time = found[-1].timestamp
        self.state.segments += 1
        await index.note(self.store, self.since, found[0].timestamp, found[-1].timestamp)
        return 1

    async def _segment(self, name: str, header: bytes, start: int,
                       end: int) -> AsyncIterator[bytes]:
        """The file's header, then its bytes from ``start`` to ``end``, a block at a time."""
        yield header
        offset = start
        while offset < end:
            step = min(READ_BLOCK, end - offset)
            yield await asyncio.to_thread(self._read, name, offset, offset + step)
            offset += step


def _merge(position: GtidPosition, later: GtidPosition) -> GtidPosition:
    by_domain = {g.domain: g for g in position.last}
    for gtid in later.last:
        if gtid.sequence > by_domain.get(gtid.domain, Gtid(gtid.domain, 0, 0)).sequence:
            by_domain[gtid.domain] = gtid
    return GtidPosition(tuple(sorted(by_domain.values())))
