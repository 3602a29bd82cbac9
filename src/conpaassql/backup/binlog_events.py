"""Just enough of MariaDB's binary log format to cut it at transactions.

A binlog file is a 4-byte magic, a Format_description event, then events with a
19-byte header each (timestamp, type, server id, size, end position, flags).
Every transaction starts with a GTID event; a Gtid_list event at the start of a
file holds the binlog state before it. Archived segments are stored as small,
standalone binlogs: the file's magic and Format_description event followed by
whole transactions, so that ``mariadb-binlog`` reads each one alone.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conpaassql.domain.gtid import Gtid, GtidPosition

MAGIC = b"\xfebin"
HEADER = 19
FORMAT_DESCRIPTION = 15
GTID_EVENT = 162
GTID_LIST = 163
_HEAD = struct.Struct("<IBIIIH")


class BinlogFormatError(ValueError):
    """Bytes that are not a binlog (or a cut one)."""


@dataclass(frozen=True)
class Event:
    offset: int  # in the bytes parsed
    type: int
    timestamp: int
    server_id: int
    size: int


@dataclass(frozen=True)
class Transaction:
    offset: int  # of its GTID event, in the bytes parsed
    gtid: Gtid
    timestamp: int  # epoch seconds, the statement's start as the server logged it


def events(data: bytes | memoryview, start: int = 4) -> Iterator[Event]:
    """The whole events of ``data`` from ``start``; a cut last event is an error."""
    offset, end = start, len(data)
    while offset < end:
        if end - offset < HEADER:
            raise BinlogFormatError(f"a cut event header at {offset}")
        timestamp, kind, server_id, size, _, _ = _HEAD.unpack_from(data, offset)
        if size < HEADER or offset + size > end:
            raise BinlogFormatError(f"a cut or bad event at {offset} (size {size})")
        yield Event(offset, kind, timestamp, server_id, size)
        offset += size


def header_size(data: bytes | memoryview) -> int:
    """Where the first event after the Format_description event starts."""
    if bytes(data[:4]) != MAGIC:
        raise BinlogFormatError("no binlog magic")
    first = next(events(data[: 4 + HEADER + _size_at(data, 4)]), None)
    if first is None or first.type != FORMAT_DESCRIPTION:
        raise BinlogFormatError("no Format_description event first")
    return 4 + first.size


def _size_at(data: bytes | memoryview, offset: int) -> int:
    if len(data) < offset + HEADER:
        raise BinlogFormatError("a cut Format_description event")
    return int(_HEAD.unpack_from(data, offset)[3]) - HEADER


def transactions(data: bytes | memoryview, start: int = 4) -> list[Transaction]:
    """The transactions that start in ``data`` after ``start``, in order."""
    found = []
    for event in events(data, start):
        if event.type == GTID_EVENT:
            sequence, domain = struct.unpack_from("<QI", data, event.offset + HEADER)
            found.append(Transaction(event.offset, Gtid(domain, event.server_id, sequence),
                                     event.timestamp))
    return found


def gtid_list(data: bytes | memoryview) -> GtidPosition | None:
    """The binlog state before a file (its Gtid_list event), from its first bytes."""
    for event in events(data):
        if event.type == GTID_LIST:
            count = struct.unpack_from("<I", data, event.offset + HEADER)[0] & 0x0FFFFFFF
            base = event.offset + HEADER + 4
            items = [struct.unpack_from("<IIQ", data, base + 16 * i) for i in range(count)]
            return GtidPosition(tuple(sorted(Gtid(d, s, q) for d, s, q in items)))
        if event.type == GTID_EVENT:
            break
    return None


def standalone(header: bytes, body: bytes | memoryview) -> bytes:
    """A readable binlog: a file's magic and Format_description, then ``body``."""
    return bytes(header) + bytes(body)


def last_gtids(found: list[Transaction]) -> GtidPosition:
    """The last GTID of each domain among ``found``."""
    by_domain: dict[int, Gtid] = {}
    for item in found:
        by_domain[item.gtid.domain] = item.gtid
    return GtidPosition(tuple(sorted(by_domain.values())))


def first_gtids(found: list[Transaction]) -> GtidPosition:
    by_domain: dict[int, Gtid] = {}
    for item in found:
        by_domain.setdefault(item.gtid.domain, item.gtid)
    return GtidPosition(tuple(sorted(by_domain.values())))


def file_transactions(path: Path, end: int | None = None) -> list[Transaction]:
    """The transactions of a binlog file up to ``end``, reading event headers only."""
    found = []
    with open(path, "rb") as handle:
        if handle.read(4) != MAGIC:
            raise BinlogFormatError(f"no binlog magic in {path.name}")
        size = os.fstat(handle.fileno()).st_size if end is None else end
        offset = 4
        while offset + HEADER <= size:
            handle.seek(offset)
            head = handle.read(HEADER + 12)
            timestamp, kind, server_id, length, _, _ = _HEAD.unpack_from(head)
            if length < HEADER or offset + length > size:
                break
            if kind == GTID_EVENT and len(head) == HEADER + 12:
                sequence, domain = struct.unpack_from("<QI", head, HEADER)
                found.append(Transaction(offset, Gtid(domain, server_id, sequence), timestamp))
            offset += length
    return found
