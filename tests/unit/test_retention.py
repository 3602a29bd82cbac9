"""Retention: which backups and archived binlog segments fall out of the window (the
decision, table-driven), a pass over a real file store, and the archive's index."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conpaassql.backup import BackupKey, FileStore, index
from conpaassql.backup.catalog import BackupRecord, Catalog
from conpaassql.backup.segments import Segment, archived
from conpaassql.config import BackupConfig
from conpaassql.domain.gtid import GtidPosition
from conpaassql.manager.backups import Backups, object_key
from conpaassql.manager.retention import DAY, Retention, decide

NOW = 1796637600.0  # 2026-12-07 10:00:00 UTC
KEY = BackupKey.generate()


def backup(name: str, days_ago: float, seq: int, parent: str | None = None,
           state: str = "done") -> BackupRecord:
    """``name`` (a letter) made a backup id; its GTID position is ``0-1-seq``."""
    at = NOW - days_ago * DAY
    kind = "full" if parent is None else "incremental"
    stamp = f"20261207T{int(100000 - days_ago * 10):06d}Z"
    backup_id = f"{stamp}-{kind}-{name.encode().hex() * 3}"
    return BackupRecord(backup_id, kind, state=state, started=at - 60,
                        finished=None if state == "running" else at, gtid=f"0-1-{seq}",
                        parent=None if parent is None else ids[parent],
                        objects=[object_key(backup_id)])


def segment(first: int, last: int, days_ago: float) -> Segment:
    at = int(NOW - days_ago * DAY)
    return Segment(f"binlogs/1/b.000001.{first}-{last}", 1, "b.000001", first, last,
                   GtidPosition.parse(f"0-1-{first}"), GtidPosition.parse(f"0-1-{last}"),
                   at - 10, at, last - first + 1, float(at))


ids: dict[str, str] = {}


def chain(*made: tuple[str, float, int, str | None, str]) -> list[BackupRecord]:
    records = []
    for name, days_ago, seq, parent, state in made:
        record = backup(name, days_ago, seq, parent, state)
        ids[name] = record.id
        records.append(record)
    return sorted(records, key=lambda r: (r.started, r.id))


SEGMENTS = [segment(1, 10, 9.5), segment(11, 20, 7.5), segment(21, 30, 5.5),
            segment(31, 40, 3.5), segment(41, 50, 1.5), segment(51, 60, 0.1)]


@pytest.mark.parametrize(("made", "days", "gone", "segments_gone", "anchor"), [
    # A full backup 8 days ago, one 6 days ago with incrementals, one 2 days ago; a
    # window of 5 days starts from the one of 6 days (older than the window, needed).
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done"), ("c", 5.8, 27, "b", "done"),
      ("d", 4, 35, "c", "done"), ("e", 2, 45, None, "done")], 5, ["a"],
     ["b.000001.1-10", "b.000001.11-20"], "b"),
    # the incrementals of a full backup out of the window go with it
    ([("a", 8, 15, None, "done"), ("b", 7.9, 16, "a", "done"), ("c", 7, 22, "b", "done"),
      ("d", 6, 25, None, "done"), ("e", 1, 45, "d", "done")], 5, ["c", "b", "a"],
     ["b.000001.1-10", "b.000001.11-20"], "d"),
    # no full backup as old as the window: every backup kept, and only the segments
    # before the oldest full one's position and older than the window go
    ([("a", 4, 35, None, "done"), ("b", 3, 38, "a", "done")], 5, [],
     ["b.000001.1-10", "b.000001.11-20", "b.000001.21-30"], None),
    # a chain whose full backup is older than the window: kept whole, and its binlogs
    ([("a", 9, 10, None, "done"), ("b", 8, 12, "a", "done"), ("c", 1, 50, "b", "done")],
     5, [], ["b.000001.1-10"], "a"),
    # failed backups out of the window go; a running one and failed ones inside stay
    ([("a", 9, 10, None, "done"), ("f", 8.5, 0, None, "failed"), ("g", 1, 0, None, "failed"),
      ("r", 0.01, 0, None, "running")], 5, ["f"], ["b.000001.1-10"], "a"),
    # a failed full backup is no anchor
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "failed"), ("c", 3, 38, None, "done")],
     5, ["b"], ["b.000001.1-10"], "a"),
    # an incremental newer than the anchor built on an older chain: that chain stays
    ([("a", 8, 15, None, "done"), ("b", 7, 20, None, "done"), ("c", 1, 50, "a", "done")],
     5, [], ["b.000001.1-10", "b.000001.11-20"], "b"),
    # nothing backed up: nothing to start a restore from, nothing deleted
    ([], 5, [], [], None),
    # a long window: nothing is old enough
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done")], 30, [], [], None),
])
def test_what_falls_out_of_the_window(made: list[tuple[Any, ...]], days: float,
                                      gone: list[str], segments_gone: list[str],
                                      anchor: str | None) -> None:
    records = chain(*made)
    pruning = decide(records, SEGMENTS, NOW, days)
    assert pruning.backups == [ids[name] for name in gone]
    assert pruning.segments == [f"binlogs/1/{name}" for name in segments_gone]
    assert pruning.anchor == (None if anchor is None else ids[anchor])
    assert bool(pruning) == bool(gone or segments_gone)
    # what stays keeps the window's start restorable: the anchor and its chain
    kept = {r.id for r in records} - set(pruning.backups)
    for record in records:
        if record.id in kept and record.parent is not None:
            assert record.parent in kept


@pytest.mark.parametrize(("made", "bad", "gone", "segments_gone", "anchor"), [
    # the newest full backup before the window failed its verification: the one
    # before it anchors the window, and only what is older goes
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done"), ("e", 2, 45, None, "done")],
     ["b"], [], ["b.000001.1-10"], "a"),
    ([("z", 9, 8, None, "done"), ("a", 8, 15, None, "done"), ("b", 6, 25, None, "done")],
     ["b"], ["z"], ["b.000001.1-10"], "a"),
    # a failed one older than the anchor goes by age, as any other
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done")], ["a"], ["a"],
     ["b.000001.1-10", "b.000001.11-20"], "b"),
    # every full one failed: no anchor, everything kept, and no segment goes
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done")], ["a", "b"], [], [], None),
    # a verification that passed, or none yet, changes nothing
    ([("a", 8, 15, None, "done"), ("b", 6, 25, None, "done")], [], ["a"],
     ["b.000001.1-10", "b.000001.11-20"], "b"),
])
def test_a_full_backup_that_failed_its_verification_is_no_anchor(
        made: list[tuple[Any, ...]], bad: list[str], gone: list[str],
        segments_gone: list[str], anchor: str | None) -> None:
    records = chain(*made)
    for number, record in enumerate(records):
        failed = record.id in {ids[name] for name in bad}
        if failed or number % 2:  # the others: one verified, one never verified
            record.extra["verified"] = {"ok": not failed, "error": "bad" if failed else None}
    pruning = decide(records, SEGMENTS, NOW, 5)
    assert pruning.backups == [ids[name] for name in gone]
    assert pruning.segments == [f"binlogs/1/{name}" for name in segments_gone]
    assert pruning.anchor == (None if anchor is None else ids[anchor])


def runtime_backups(tmp_path: Path, days: float | None) -> tuple[Backups, list[str]]:
    events: list[str] = []
    history = SimpleNamespace(record_event=lambda message, *_: events.append(message))
    runtime = SimpleNamespace(config=SimpleNamespace(backup=BackupConfig(retention_days=days)),
                              store=history, secrets=SimpleNamespace(backup_key=KEY),
                              state_dir=tmp_path)
    service = SimpleNamespace(rt=runtime, live_nodes=lambda: [])
    return Backups(service), events  # type: ignore[arg-type]


async def archive(store: FileStore, item: Segment) -> None:
    await store.put_bytes(item.key, b"binlog", {
        "server_id": str(item.server_id), "file": item.file, "start": str(item.start),
        "end": str(item.end), "gtid_first": str(item.first), "gtid_last": str(item.last),
        "time_first": str(item.first_time), "time_last": str(item.last_time),
        "count": str(item.count)})


def test_a_pass_deletes_objects_records_and_segments_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, events = runtime_backups(tmp_path, 5)
        store = backups.store
        records = chain(("a", 8, 15, None, "done"), ("b", 7.9, 16, "a", "done"),
                        ("c", 6, 25, None, "done"), ("d", 1, 45, "c", "done"))
        for record in records:
            await store.put_bytes(record.objects[0], b"xbstream")
            await Catalog(store).save(record)
        for item in SEGMENTS:
            await archive(store, item)  # type: ignore[arg-type]
        pruning = await Retention(backups).prune(now=NOW)
        assert pruning.backups == [ids["b"], ids["a"]]
        left = [r.id for r in await backups.catalog.records()]
        assert left == [ids["c"], ids["d"]]
        assert not await store.exists(records[0].objects[0])
        assert await store.exists(records[2].objects[0])
        assert [s.key for s in await archived(store)] == [s.key for s in SEGMENTS[2:]]
        assert events == [f"retention (5 days): deleted backup(s) {ids['b']}, {ids['a']} and "
                          "2 archived binlog segment(s) (up to GTID 0-1-20, committed by "
                          "2026-11-29 22:00:00 UTC); the window starts from backup "
                          f"{ids['c']}"]
        # the index follows: the oldest archived commit is now the third segment's
        stored = await index.read(store)
        assert stored is not None and stored.first_time == SEGMENTS[2].first_time
        assert stored.position == GtidPosition.parse("0-1-60")
        # a second pass has nothing more to delete, and says nothing
        assert not await Retention(backups).prune(now=NOW)
        assert len(events) == 1

    asyncio.run(scenario())


def test_segments_set_aside_go_once_older_than_the_window(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, events = runtime_backups(tmp_path, 5)
        key = "diverged/binlogs/1/b.000001.1-10"
        await backups.store.put_bytes(key, b"another history")
        created = (await backups.store.head(key)).created
        assert not await Retention(backups).prune(now=created + 4 * DAY)
        assert await backups.store.exists(key)
        pruning = await Retention(backups).prune(now=created + 6 * DAY)
        assert pruning.set_aside == [key] and not await backups.store.exists(key)
        assert "1 set-aside segment(s) of another history" in events[-1]

    asyncio.run(scenario())


def test_without_retention_nothing_is_deleted(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, events = runtime_backups(tmp_path, None)
        record = chain(("a", 800, 15, None, "done"))[0]
        await Catalog(backups.store).save(record)
        await archive(backups.store, SEGMENTS[0])  # type: ignore[arg-type]
        assert not await Retention(backups).prune(now=NOW)
        assert len(await backups.catalog.records()) == 1
        assert len(await archived(backups.store)) == 1 and events == []

    asyncio.run(scenario())


def test_the_index_is_rebuilt_when_absent_or_unreadable_and_follows_the_archiver(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore(tmp_path / "store", KEY)
        for item in SEGMENTS[:3]:
            await archive(store, item)
        assert await index.read(store) is None
        built = await index.current(store)  # absent: from a listing, and written
        assert built.position == GtidPosition.parse("0-1-30")
        assert (built.first_time, built.last_time) == (SEGMENTS[0].first_time,
                                                       SEGMENTS[2].last_time)
        assert await index.read(store) == built
        # the archiver's note after its next segment: no listing needed
        await archive(store, SEGMENTS[3])
        await index.note(store, GtidPosition.parse("0-1-40"), SEGMENTS[3].first_time,
                         SEGMENTS[3].last_time)
        noted = await index.current(store)
        assert noted.position == GtidPosition.parse("0-1-40")
        assert (noted.first_time, noted.last_time) == (SEGMENTS[0].first_time,
                                                       SEGMENTS[3].last_time)
        # unreadable (another version): rebuilt from the listing
        await store.put_bytes(index.KEY, b'{"version": 99}')
        assert (await index.current(store)).position == GtidPosition.parse("0-1-40")
        assert (await index.read(store) or index.ArchiveIndex()).written > 0
        # the index is not a segment
        assert index.KEY not in {s.key for s in await archived(store)}

    asyncio.run(scenario())


def test_the_index_keeps_what_the_archiver_noted_during_a_pass(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, 5)
        store = backups.store
        records = chain(("a", 8, 15, None, "done"), ("c", 6, 25, None, "done"))
        for record in records:
            await store.put_bytes(record.objects[0], b"xbstream")
            await Catalog(store).save(record)
        for item in SEGMENTS[:-1]:
            await archive(store, item)
        await index.rebuild(store)
        delete, newest = store.delete, SEGMENTS[-1]

        async def archiving_meanwhile(key: str) -> None:
            if key == records[0].objects[0]:  # the archiver stores a segment mid-pass
                await archive(store, newest)
                await index.note(store, newest.last, newest.first_time, newest.last_time)
            await delete(key)

        store.delete = archiving_meanwhile  # type: ignore[method-assign]
        pruning = await Retention(backups).prune(now=NOW)
        assert pruning.backups == [ids["a"]]
        stored = await index.read(store)
        assert stored is not None and stored.position == newest.last
        assert stored.last_time == newest.last_time
        assert stored.first_time == SEGMENTS[2].first_time

    asyncio.run(scenario())


RESTORE = "the restore of node 5"


@pytest.mark.parametrize(("made", "held", "gone", "segments_gone"), [
    # the anchor's window would drop a and its incremental: b, in use, keeps a with it
    ([("a", 8, 15, None, "done"), ("b", 7.9, 16, "a", "done"), ("c", 6, 25, None, "done")],
     ["a", "b"], [], ["b.000001.1-10"]),
    # only the full backup in use: its incremental still goes
    ([("a", 8, 15, None, "done"), ("b", 7.9, 16, "a", "done"), ("c", 6, 25, None, "done")],
     ["a"], ["b"], ["b.000001.1-10"]),
    # a backup in use newer than the anchor changes nothing
    ([("a", 8, 15, None, "done"), ("c", 6, 25, None, "done"), ("d", 1, 45, "c", "done")],
     ["c", "d"], ["a"], ["b.000001.1-10", "b.000001.11-20"]),
    # a failed backup is never in use: it goes as before
    ([("a", 9, 10, None, "done"), ("f", 8.5, 0, None, "failed")], [], ["f"],
     ["b.000001.1-10"]),
    # the oldest backup in use keeps the segments after its position
    ([("a", 9, 5, None, "done"), ("c", 6, 25, None, "done")], ["a"], [], []),
])
def test_a_backup_in_use_is_kept_this_pass(made: list[tuple[Any, ...]], held: list[str],
                                           gone: list[str], segments_gone: list[str]) -> None:
    records = chain(*made)
    in_use = {ids[name]: [RESTORE] for name in held}
    pruning = decide(records, SEGMENTS, NOW, 5, in_use)
    assert pruning.backups == [ids[name] for name in gone]
    assert pruning.segments == [f"binlogs/1/{name}" for name in segments_gone]
    assert set(pruning.held) <= set(in_use)
    assert not set(pruning.backups) & set(in_use)
    # without them in use, they would have gone
    assert set(decide(records, SEGMENTS, NOW, 5).backups) >= set(pruning.held)


def test_a_pass_keeps_the_chain_of_a_restore_under_way_and_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, events = runtime_backups(tmp_path, 5)
        records = chain(("a", 8, 15, None, "done"), ("b", 7.9, 16, "a", "done"),
                        ("c", 6, 25, None, "done"), ("d", 1, 45, "c", "done"))
        for record in records:
            await backups.store.put_bytes(record.objects[0], b"xbstream")
            await Catalog(backups.store).save(record)
        use = backups.hold(records[:2], RESTORE)
        pruning = await Retention(backups).prune(now=NOW)
        assert pruning.backups == [] and set(pruning.held) == {ids["a"], ids["b"]}
        assert [r.id for r in await backups.catalog.records()] == [r.id for r in records]
        assert not events  # nothing deleted, nothing in the history
        # the segments after b's position (0-1-16) stay too; those before it go
        for item in SEGMENTS[:2]:
            await archive(backups.store, item)  # type: ignore[arg-type]
        assert (await Retention(backups).prune(now=NOW)).segments == [SEGMENTS[0].key]
        assert events[-1].endswith(f"kept this pass, in use: backup {ids['a']} ({RESTORE}), "
                                   f"backup {ids['b']} ({RESTORE})")
        backups.release(use)  # the restore ended: the next pass deletes them
        pruning = await Retention(backups).prune(now=NOW)
        assert pruning.backups == [ids["b"], ids["a"]] and not pruning.held
        assert pruning.segments == [SEGMENTS[1].key]

    asyncio.run(scenario())


def test_a_restore_begun_during_a_pass_keeps_its_chain_and_segments(tmp_path: Path) -> None:
    """The decision is made on what was in use when the pass began; each backup is
    looked at again just before it is deleted, and the segments decided anew."""
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, 5)
        records = chain(("a", 8, 15, None, "done"), ("c", 6, 25, None, "done"))
        for record in records:
            await backups.store.put_bytes(record.objects[0], b"xbstream")
            await Catalog(backups.store).save(record)
        for item in SEGMENTS:
            await archive(backups.store, item)  # type: ignore[arg-type]
        retention = Retention(backups)
        held = backups.held

        def held_then_used() -> dict[str, list[str]]:
            found = held()
            if not found:
                backups.hold(records[:1], RESTORE)  # just after the decision's snapshot
            return found

        backups.held = held_then_used  # type: ignore[method-assign]
        pruning = await retention.prune(now=NOW)
        assert pruning.backups == [] and pruning.held == {ids["a"]: [RESTORE]}
        assert await backups.store.exists(records[0].objects[0])
        # a's position is 0-1-15: the segment 11-20 is needed to replay from it
        assert pruning.segments == [SEGMENTS[0].key]
        assert [s.key for s in await archived(backups.store)] == [s.key for s in SEGMENTS[1:]]

    asyncio.run(scenario())


def test_no_chain_is_chosen_while_a_pass_deletes_backups(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, 5)
        records = chain(("a", 8, 15, None, "done"), ("c", 6, 25, None, "done"))
        for record in records:
            await backups.store.put_bytes(record.objects[0], b"xbstream")
            await Catalog(backups.store).save(record)
        delete = backups.store.delete
        locked: list[bool] = []

        async def watched(key: str) -> None:
            locked.append(backups.choosing.locked())
            await delete(key)

        backups.store.delete = watched  # type: ignore[method-assign]
        pruning = await Retention(backups).prune(now=NOW)
        assert pruning.backups == [ids["a"]] and locked and all(locked)  # objects, record
        assert not backups.choosing.locked()

    asyncio.run(scenario())
