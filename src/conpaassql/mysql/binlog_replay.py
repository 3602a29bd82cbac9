"""Point-in-time replay: archived binlog segments applied to a restored server.

The transactions after the server's own GTID position are taken from the store
in order, cut (by this module, from the segments' GTID events) at the first one
committed after the target second or past the target GTID, decoded by
``mariadb-binlog`` and applied by ``mariadb`` over the server's socket (its
credentials from its 0600 client defaults file, never on a command line). The
same transaction archived twice is applied once; a missing one stops the replay
with the gap named.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from conpaassql.backup import binlog_events as ev
from conpaassql.backup.errors import BackupStoreError
from conpaassql.backup.segments import Segment, archived, gaps
from conpaassql.backup.store import BackupStore
from conpaassql.domain.gtid import Gtid, GtidPosition
from conpaassql.mysql.binaries import CLIENT, find_binary
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import pipe_into

log = logging.getLogger(__name__)

BINLOG = ("mariadb-binlog", "mysqlbinlog")


class ReplayError(BackupStoreError):
    """The archive cannot bring the server to the target."""


@dataclass(frozen=True)
class Target:
    """Where to stop: every transaction committed at or before ``time`` (epoch
    seconds, whole seconds as the binlog keeps them) and at or before ``gtid``."""

    time: float | None = None
    gtid: GtidPosition | None = None

    def admits(self, tx: ev.Transaction) -> bool:
        if self.time is not None and tx.timestamp > int(self.time):
            return False
        return self.gtid is None or tx.gtid.sequence <= self.gtid.sequence(tx.gtid.domain)


@dataclass
class Replayed:
    position: GtidPosition
    transactions: int = 0
    last_time: int | None = None


def plan(segments: list[Segment], start: GtidPosition) -> list[Segment]:
    """The segments that hold transactions after ``start``; ``ReplayError`` on a gap."""
    needed = [s for s in segments if not start.contains(s.last)]
    missing = gaps(needed, start)
    if missing:
        raise ReplayError("archived binlogs", detail=f"a gap: after {missing[0]['after']} "
                          f"the next archived is {missing[0]['next']}")
    return needed


async def replay(store: BackupStore, paths: ServerPaths, start: GtidPosition,
                 target: Target) -> Replayed:
    """Apply the archived transactions after ``start`` up to ``target``."""
    done = Replayed(start)
    segments = plan(await archived(store), start)

    async def pieces() -> AsyncIterator[bytes]:
        for segment in segments:
            chunk, finished = _cut(await store.get_bytes(segment.key), done, target)
            if chunk is not None:
                yield await _decode(chunk)
            if finished:
                return

    status, message = await pipe_into(
        [find_binary(*CLIENT), f"--defaults-extra-file={paths.client_cnf}", "--binary-mode"],
        pieces())
    if status != 0:
        raise ReplayError("binlog replay", detail=f"mariadb exited {status}: "
                          f"{message.strip()[-300:]}")
    return done


def _cut(data: bytes, done: Replayed, target: Target) -> tuple[bytes | None, bool]:
    """The part of one segment to apply (a standalone binlog, or None) and whether the
    target was reached in it; ``done`` is advanced past what is kept."""
    size = ev.header_size(data)
    found = ev.transactions(data, size)
    first = last = None
    finished = False
    for index, tx in enumerate(found):
        if tx.gtid.sequence <= done.position.sequence(tx.gtid.domain):
            continue
        if not target.admits(tx):
            finished = True
            last = index
            break
        first = index if first is None else first
        done.position = _advance(done.position, tx.gtid)
        done.transactions += 1
        done.last_time = tx.timestamp
    if first is None:
        return None, finished
    end = found[last].offset if last is not None else len(data)
    return ev.standalone(data[:size], data[found[first].offset:end]), finished


def _advance(position: GtidPosition, gtid: Gtid) -> GtidPosition:
    kept = tuple(g for g in position.last if g.domain != gtid.domain)
    return GtidPosition(tuple(sorted((*kept, gtid))))


async def _decode(chunk: bytes) -> bytes:
    """``mariadb-binlog``'s SQL for one standalone binlog, read from its stdin."""
    process = await asyncio.create_subprocess_exec(
        find_binary(*BINLOG), "-", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    output, errors = await process.communicate(chunk)
    if process.returncode != 0:
        text = errors.decode("utf-8", "replace").strip()[-300:]
        raise ReplayError("binlog replay", detail=f"mariadb-binlog exited "
                          f"{process.returncode}: {text}")
    return output
