"""Binlog archiving and point-in-time replay against real mariadbd servers and the
file store: segments cut at transactions, continued by GTID without gap or
duplicate, a purged binlog detected as a gap, and a restored copy replayed to a
second in the middle of the writes."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.backup import FileStore, load_or_create_key
from conpaassql.backup.segments import archived, gaps, position_of
from conpaassql.domain.gtid import GtidPosition
from conpaassql.mysql import ServerSettings, execute, initialise_datadir, prepare_template
from conpaassql.mysql.binlog_archive import Archiver
from conpaassql.mysql.binlog_replay import Target, replay
from tests.integration.test_mysql_server import Lab, Node, net

pytestmark = pytest.mark.integration

PASSWORD = "archive pw 'x'"


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="cq-bl-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def template(root: Path) -> Path:
    return asyncio.run(prepare_template(root / "template"))


@pytest.fixture
def lab(root: Path) -> Iterator[Lab]:
    lab = Lab(Path(tempfile.mkdtemp(prefix="t-", dir=root)))
    try:
        yield lab
    finally:
        lab.kill_all()


def store_in(root: Path) -> FileStore:
    return FileStore(root / "store", load_or_create_key(root / "secrets" / "backup_key"))


async def boot(lab: Lab, template: Path, name: str, ip: str) -> Node:
    node = lab.node(name, ip, password=PASSWORD)
    await initialise_datadir(node.paths, PASSWORD, template)
    await lab.start(node, use_init_file=True)
    return node


async def gtid(node: Node) -> GtidPosition:
    rows = await execute(node.info, "SELECT @@gtid_binlog_pos AS p")
    return GtidPosition.parse(rows[0]["p"])


async def write_rows(node: Node, count: int, pause: float = 0.0) -> None:
    """``count`` transactions, each one row holding its own commit second."""
    for _ in range(count):
        await execute(node.info, "INSERT INTO pitr.t (at) VALUES (UNIX_TIMESTAMP())")
        if pause:
            await asyncio.sleep(pause)


def test_archive_across_files_then_replay_to_a_second(lab: Lab, template: Path) -> None:
    async def scenario() -> None:
        source = await boot(lab, template, "src", f"{net()}.41")
        store = store_in(lab.root)
        await execute(source.info, "CREATE DATABASE pitr")
        await execute(source.info, "CREATE TABLE pitr.t (id INT AUTO_INCREMENT PRIMARY KEY,"
                      " at BIGINT NOT NULL) ENGINE=InnoDB")
        await write_rows(source, 5)
        # the copy: the table and its rows as they are at a known GTID
        copied_at = await gtid(source)
        copied = await execute(source.info, "SELECT id, at FROM pitr.t ORDER BY id")

        archiver = Archiver(store, source.info, source.paths.datadir, GtidPosition())
        archiver.max_segment = 1000  # segments of a few transactions each
        arrivals: list[float] = []
        for round_ in range(6):
            await write_rows(source, 8, pause=0.12)
            if round_ == 2:
                await execute(source.info, "FLUSH BINARY LOGS")
            before = time.time()
            await archiver.archive_once()
            arrivals.append(time.time() - before)
            if round_ == 3:
                # a new archiver (a new master) continues from the archived GTIDs
                archiver = Archiver(store, source.info, source.paths.datadir,
                                    position_of(await archived(store)))
                archiver.max_segment = 1000
        segments = await archived(store)
        assert len({s.file for s in segments}) >= 2
        assert len(segments) > 12 and max(s.count for s in segments) < 8
        assert gaps(segments) == []
        assert position_of(segments) == await gtid(source)
        assert sum(s.count for s in segments) == (await gtid(source)).sequence(0)
        print(f"archive passes: worst {max(arrivals):.3f}s, {len(segments)} segments")

        rows = await execute(source.info, "SELECT id, at FROM pitr.t ORDER BY id")
        seconds = sorted({row["at"] for row in rows if row["id"] > len(copied)})
        middle = seconds[len(seconds) // 2]
        expected = [(r["id"], r["at"]) for r in rows if r["at"] <= middle]
        assert 0 < len(expected) - len(copied) < len(rows) - len(copied)

        restored = await boot(lab, template, "restored", f"{net()}.42")
        await execute(restored.info, "RESET MASTER")
        await execute(restored.info, "CREATE DATABASE pitr")
        await execute(restored.info, "CREATE TABLE pitr.t (id INT AUTO_INCREMENT PRIMARY "
                      "KEY, at BIGINT NOT NULL) ENGINE=InnoDB")
        for row in copied:
            await execute(restored.info, "INSERT INTO pitr.t VALUES (%s, %s)",
                          [row["id"], row["at"]])
        await execute(restored.info, "RESET MASTER")
        done = await replay(store, restored.paths, copied_at, Target(time=middle))
        got = await execute(restored.info, "SELECT id, at FROM pitr.t ORDER BY id")
        assert [(r["id"], r["at"]) for r in got] == expected
        assert done.transactions == len(expected) - len(copied)
        assert done.last_time == middle

        # then on to a GTID: exactly up to it, the rest of the way
        stop = await gtid(source)
        more = await replay(store, restored.paths, done.position, Target(gtid=stop))
        got = await execute(restored.info, "SELECT id, at FROM pitr.t ORDER BY id")
        assert [(r["id"], r["at"]) for r in got] == [(r["id"], r["at"]) for r in rows]
        assert more.position == stop

    asyncio.run(scenario())


def test_a_binlog_purged_before_it_was_archived_is_a_gap(lab: Lab, template: Path) -> None:
    async def scenario() -> None:
        source = await boot(lab, template, "src", f"{net()}.43")
        store = store_in(lab.root)
        await execute(source.info, "CREATE DATABASE pitr")
        await execute(source.info, "CREATE TABLE pitr.t (id INT AUTO_INCREMENT PRIMARY KEY,"
                      " at BIGINT NOT NULL) ENGINE=InnoDB")
        archiver = Archiver(store, source.info, source.paths.datadir, GtidPosition())
        await archiver.archive_once()
        assert archiver.state.gap is None
        archived_to = position_of(await archived(store))
        # archiving paused (its master changed): writes, a rotation, a purge
        await write_rows(source, 4)
        await execute(source.info, "FLUSH BINARY LOGS")
        await write_rows(source, 3)
        files = await execute(source.info, "SHOW BINARY LOGS")
        await execute(source.info, f"PURGE BINARY LOGS TO '{files[-1]['Log_name']}'")
        resumed = Archiver(store, source.info, source.paths.datadir, archived_to)
        await resumed.archive_once()
        assert resumed.state.gap is not None
        assert resumed.state.gap["archived_to"] == str(archived_to)
        segments = await archived(store)
        found = gaps(segments)
        assert len(found) == 1 and found[0]["after"] == f"0-{archived_to.sequence(0)}"
        # what is left is archived all the same
        assert position_of(segments) == await gtid(source)

    asyncio.run(scenario())


def test_an_archived_tail_the_new_master_never_had_is_set_aside(lab: Lab,
                                                                 template: Path) -> None:
    """A master archived transactions no slave received, then died: the new master's
    archiver keeps the shared part, sets the rest aside, and goes on from there."""
    async def scenario() -> None:
        old = await boot(lab, template, "old", f"{net()}.44")
        store = store_in(lab.root)
        await execute(old.info, "CREATE DATABASE pitr")
        await execute(old.info, "CREATE TABLE pitr.t (id INT AUTO_INCREMENT PRIMARY KEY,"
                      " at BIGINT NOT NULL) ENGINE=InnoDB")
        await write_rows(old, 3)
        shared = await gtid(old)
        archiver = Archiver(store, old.info, old.paths.datadir, GtidPosition())
        await archiver.archive_once()
        await write_rows(old, 3)  # committed and archived, never replicated
        await archiver.archive_once()
        lost = await gtid(old)

        new = lab.node("new", f"{net()}.45", password=PASSWORD)
        new.settings = ServerSettings(bind_address=f"{net()}.45", server_id=2)
        new.write_cnf()
        await initialise_datadir(new.paths, PASSWORD, template)
        await lab.start(new, use_init_file=True)
        await execute(new.info, "RESET MASTER")
        await replay(store, new.paths, GtidPosition(), Target(gtid=shared))
        assert await gtid(new) == shared
        await write_rows(new, 4)
        resumed = Archiver(store, new.info, new.paths.datadir, position_of(
            await archived(store)))
        assert str(resumed.since) == str(lost)
        await resumed.archive_once()
        assert resumed.state.diverged is not None
        assert resumed.state.diverged["kept_to"] == str(shared)
        segments = await archived(store)
        assert gaps(segments) == [] and position_of(segments) == await gtid(new)
        assert sum(s.count for s in segments) == (await gtid(new)).sequence(0)
        assert [item.key for item in await store.list("diverged/")]

    asyncio.run(scenario())
