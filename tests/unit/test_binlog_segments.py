"""Binlog segments without a server: events parsed from synthetic bytes, transactions
cut by time and GTID, gaps found, replay plans refused across a gap."""

from __future__ import annotations

import struct

import pytest

from conpaassql.backup import binlog_events as ev
from conpaassql.backup.segments import Segment, gaps, position_of
from conpaassql.domain.gtid import GtidPosition
from conpaassql.mysql.binlog_replay import Replayed, ReplayError, Target, _cut, plan

QUERY = 2


def event(kind: int, body: bytes, timestamp: int = 1000, server: int = 1) -> bytes:
    return struct.pack("<IBIIIH", timestamp, kind, server, ev.HEADER + len(body), 0, 0) + body


def gtid_event(sequence: int, timestamp: int, server: int = 1, domain: int = 0) -> bytes:
    return event(ev.GTID_EVENT, struct.pack("<QIB", sequence, domain, 0), timestamp, server)


def binlog(*transactions: tuple[int, int]) -> bytes:
    """Magic, a Format_description, a Gtid_list, then (sequence, time) transactions."""
    head = ev.MAGIC + event(ev.FORMAT_DESCRIPTION, b"\x04\x00" + b"x" * 60)
    listed = event(ev.GTID_LIST, struct.pack("<IIIQ", 1, 0, 1, 7))
    body = b"".join(gtid_event(seq, at) + event(QUERY, b"INSERT") for seq, at in transactions)
    return head + listed + body


def segment(first: int, last: int, key: str = "k") -> Segment:
    return Segment(f"binlogs/1/{key}", 1, "binlog.000001", 4, 100,
                   GtidPosition.parse(f"0-1-{first}"), GtidPosition.parse(f"0-1-{last}"),
                   0, 0, last - first + 1, 0.0)


def test_transactions_and_the_state_before_the_file() -> None:
    data = binlog((8, 100), (9, 101), (10, 101))
    size = ev.header_size(data)
    found = ev.transactions(data, size)
    assert [str(tx.gtid) for tx in found] == ["0-1-8", "0-1-9", "0-1-10"]
    assert [tx.timestamp for tx in found] == [100, 101, 101]
    assert str(ev.gtid_list(data)) == "0-1-7"
    assert str(ev.last_gtids(found)) == "0-1-10" and str(ev.first_gtids(found)) == "0-1-8"


def test_a_cut_event_or_no_magic_is_refused() -> None:
    data = binlog((8, 100))
    with pytest.raises(ev.BinlogFormatError):
        list(ev.events(data[:-3]))
    with pytest.raises(ev.BinlogFormatError):
        ev.header_size(b"nope" + data[4:])


def test_cut_keeps_what_is_after_the_start_and_up_to_the_second() -> None:
    data = binlog((8, 100), (9, 101), (10, 102), (11, 103))
    done = Replayed(GtidPosition.parse("0-1-8"))
    chunk, finished = _cut(data, done, Target(time=102.9))
    assert finished and chunk is not None
    size = ev.header_size(chunk)
    assert [tx.gtid.sequence for tx in ev.transactions(chunk, size)] == [9, 10]
    assert str(done.position) == "0-1-10" and done.transactions == 2 and done.last_time == 102


def test_cut_stops_at_a_gtid_and_skips_what_was_applied() -> None:
    data = binlog((8, 100), (9, 101), (10, 102))
    done = Replayed(GtidPosition.parse("0-1-10"))
    assert _cut(data, done, Target(gtid=GtidPosition.parse("0-1-12"))) == (None, False)
    done = Replayed(GtidPosition())
    chunk, finished = _cut(data, done, Target(gtid=GtidPosition.parse("0-1-8")))
    assert finished and chunk is not None and str(done.position) == "0-1-8"


def test_gaps_and_plans() -> None:
    whole = [segment(1, 5, "a"), segment(6, 9, "b"), segment(10, 10, "c")]
    assert gaps(whole) == [] and str(position_of(whole)) == "0-1-10"
    assert [s.key for s in plan(whole, GtidPosition.parse("0-1-7"))] == [
        "binlogs/1/b", "binlogs/1/c"]
    holed = [segment(1, 5, "a"), segment(8, 9, "b")]
    assert gaps(holed) == [{"after": "0-5", "next": "0-1-8", "segment": "binlogs/1/b"}]
    with pytest.raises(ReplayError, match="after 0-5 the next archived is 0-1-8"):
        plan(holed, GtidPosition())
    assert gaps(whole, GtidPosition.parse("0-1-0")) == []
    with pytest.raises(ReplayError):
        plan(whole[1:], GtidPosition.parse("0-1-3"))
