"""The figures of a backup or a restore under way: the bytes a store's pipeline
reads and stores, the bytes a restore fetches, the datadir's expected size, and
the manager's probe of an agent (kept a second; an agent that does not answer
gives no progress, and the listing goes on without it)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from conpaassql.backup import BackupKey, FileStore
from conpaassql.backup.catalog import BackupRecord
from conpaassql.backup.pipeline import encode
from conpaassql.backup.progress import JobProgress, bytes_read, datadir_size
from conpaassql.domain.states import Role
from conpaassql.errors import UnreachableError
from conpaassql.manager.backups import object_key
from conpaassql.manager.job_progress import ProgressProbe
from conpaassql.protocol.backup import JobProgressReply
from testbed.streams import MIB, Generated
from tests.unit.clock import Clock
from tests.unit.test_backups import backups_of, node


def test_a_put_counts_the_bytes_read_and_stored(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore(tmp_path, BackupKey.generate())
        progress = JobProgress("backup", "copy")
        stored = await store.put("a", Generated(3 * MIB + 17).chunks(), progress=progress)
        assert progress.bytes == 3 * MIB + 17
        assert progress.stored == stored.size
        fetched = JobProgress("restore", "fetch")
        async for _ in store.get("a", fetched):
            pass
        assert fetched.bytes == stored.size
        assert progress.snapshot()["stored"] == stored.size
        await store.close()

    asyncio.run(scenario())


def test_a_descriptor_read_by_zstd_is_sampled_while_it_runs() -> None:
    """zstd reads a pipe itself: its reads are what ``/proc`` tells of it."""
    reader, writer = os.pipe()
    data = os.urandom(16 * MIB)

    def write() -> None:
        with os.fdopen(writer, "wb") as out:
            out.write(data)

    async def scenario() -> tuple[int, int]:
        progress = JobProgress("backup", "copy")
        blocks = encode(reader, BackupKey.generate(), "fd", progress=progress)
        sampled = 0
        try:
            async for block, _ in blocks:
                if len(block) > 100 and not sampled:  # a first frame out of zstd
                    sampled = progress.snapshot()["bytes"]
        finally:
            os.close(reader)
        return sampled, progress.stored

    thread = threading.Thread(target=write)
    thread.start()
    sampled, stored = asyncio.run(scenario())
    thread.join()
    assert sampled > 0
    assert stored > len(data)  # random bytes do not compress; frames add to them


def test_bytes_read_of_a_process() -> None:
    assert (bytes_read(os.getpid()) or 0) > 0
    assert bytes_read(2**22 + 1) is None  # no such process


def test_a_datadirs_expected_size_leaves_the_binlogs_out(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "t.ibd").write_bytes(b"x" * 300)
    (tmp_path / "ibdata1").write_bytes(b"x" * 1000)
    (tmp_path / "aria_log.00000001").write_bytes(b"x" * 20)
    for name in ("binlog.000001", "binlog.index", "relay-bin.000002", "relay-bin.index",
                 "ib_logfile0", "ibtmp1"):
        (tmp_path / name).write_bytes(b"y" * 5000)
    assert datadir_size(tmp_path) == 1320


class Agents:
    """The agents' ``get_job_progress``: ``reply``, or an error; counts the calls."""

    def __init__(self, reply: JobProgressReply | Exception) -> None:
        self.reply = reply
        self.calls = 0

    async def get_job_progress(self, target: Any, *,
                               timeout: float | None = None) -> JobProgressReply:
        self.calls += 1
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


COPYING = JobProgressReply(kind="backup", phase="copy", bytes=400, stored=100, expected=1000,
                           started=1.0)


def test_the_probe_asks_at_most_once_a_second() -> None:
    clock = Clock()
    agents = Agents(COPYING)
    probe = ProgressProbe(lambda: agents, clock=clock)
    source = node(2, Role.SLAVE)

    async def scenario() -> None:
        shown = {"phase": "copy", "bytes": 400, "expected": 1000}
        assert await probe.of(source, "backup") == shown
        assert await probe.of(source, "backup") == shown
        assert await probe.of(source, "restore") is None  # another kind of job
        assert agents.calls == 1
        clock.now += 1.0
        agents.reply = JobProgressReply()  # idle
        assert await probe.of(source, "backup") is None
        assert agents.calls == 2

    asyncio.run(scenario())


def running_listing(tmp_path: Path, agents: Agents) -> dict[str, Any]:
    source = node(2, Role.SLAVE)
    backups = backups_of(tmp_path, [source])
    backups.rt.agents = agents
    backup_id = "20261207T100000Z-full-aaaaaa"
    running = BackupRecord(backup_id, "full", started=1.0, node="2",
                           objects=[object_key(backup_id)])

    async def scenario() -> dict[str, Any]:
        await backups.catalog.save(running)
        backups._running, backups._source = backup_id, source
        try:
            return await backups.listing()
        finally:
            await backups.close()

    return asyncio.run(scenario())


def test_the_listing_shows_the_running_backups_progress(tmp_path: Path) -> None:
    (entry,) = running_listing(tmp_path, Agents(COPYING))["backups"]
    assert entry["state"] == "running"
    assert entry["progress"] == {"phase": "copy", "bytes": 400, "expected": 1000}


def test_an_agent_that_does_not_answer_leaves_the_listing_whole(tmp_path: Path) -> None:
    for failure in (UnreachableError("node 2 did not answer"), TimeoutError()):
        listing = running_listing(tmp_path / type(failure).__name__, Agents(failure))
        (entry,) = listing["backups"]
        assert entry["state"] == "running" and "progress" not in entry
        assert listing["restorable"] == {"from": None, "to": None}


def test_a_restoring_nodes_progress(tmp_path: Path) -> None:
    agents = Agents(JobProgressReply(kind="restore", phase="fetch", bytes=5, expected=10))
    backups = backups_of(tmp_path)
    backups.rt.agents = agents
    restoring = node(5, Role.RESTORED)

    async def progress(restore: dict[str, Any]) -> dict[str, Any] | None:
        restoring.details["restore"] = restore
        return await backups.restore_progress(restoring)

    assert asyncio.run(progress({"backup": "b", "state": "running"})) == \
        {"phase": "fetch", "bytes": 5, "expected": 10}
    assert asyncio.run(progress({"backup": "b", "state": "done"})) is None
