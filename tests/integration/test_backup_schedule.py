"""Schedule and retention through a real manager, its agent and mariadbd, on the file
store: retention (a window of 40 seconds) deletes the backups and archived binlogs
that fall out of it, and a point-in-time restore at the window's start still holds
exactly the rows committed by then; scheduled backups start on their own, and a
restarted manager goes on from the catalog."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conpaassql.backup import BackupKey, FileStore, index
from conpaassql.backup.segments import Segment, archived
from conpaassql.domain.gtid import GtidPosition
from tests.integration.harness import Manager, wait_until
from tests.integration.test_backups import backed_up, history_line, value
from tests.integration.test_point_in_time import rows_of, write

pytestmark = pytest.mark.integration

WINDOW = 40.0  # seconds of retention
RETENTION = f"{WINDOW / 86400:.9f}"


@pytest.fixture
def single(request: pytest.FixtureRequest, template_cache: Path) -> Iterator[Manager]:
    """A master with a table ``app.t`` of rows and their commit times."""
    manager = Manager(template_cache, sections=f"[backup]\narchive_interval = 1\n"
                      f"{request.param}\n").start()
    try:
        manager.post("add_nodes", count=1)
        master, _ = manager.wait_topology(1)
        value(manager, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT "
              "AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT NOW(6))")
        yield manager
    finally:
        manager.close()


def store_of(manager: Manager) -> FileStore:
    key = BackupKey.from_text(manager.secret("backup_key"))
    return FileStore(manager.state_dir / "backups", key)


def segments_of(manager: Manager) -> list[Segment]:
    return asyncio.run(archived(store_of(manager)))


def event(manager: Manager, *words: str) -> str:
    """The service's history message holding every one of ``words``, once there."""
    def found() -> str | None:
        entries = manager.get("get_service_history", limit=300)["history"]
        return next((e["message"] for e in entries
                     if all(word in e["message"] for word in words)), None)

    return wait_until(found, 120, 0.5, f"history: {words}")


@pytest.mark.parametrize("single", [f"retention_days = {RETENTION}"], indirect=True)
def test_retention_keeps_the_window_restorable(single: Manager) -> None:
    manager = single
    master, _ = manager.wait_topology(1)
    write(manager, master, 3)
    first = backed_up(manager, "full")
    write(manager, master, 3)
    first_incremental = backed_up(manager, "incremental")
    write(manager, master, 3)
    # rows committed while the next full backup runs, around its end
    writer = threading.Thread(target=write, args=(manager, master, 25))
    writer.start()
    second = backed_up(manager, "full")
    writer.join()
    write(manager, master, 3)
    held = GtidPosition.parse(second["gtid"])
    wait_until(lambda: any(held.contains(s.last) for s in segments_of(manager)), 60, 0.5,
               "the binlogs of the first backups archived")
    doomed = {s.key for s in segments_of(manager) if held.contains(s.last)}
    # once the second full backup is older than the window, the next backup prunes
    time.sleep(max(0.0, second["finished"] + WINDOW + 1 - time.time()))
    last = backed_up(manager, "incremental")
    assert last["parent"] == second["id"]
    message = event(manager, "retention (", first["id"], first_incremental["id"])
    assert f"the window starts from backup {second['id']}" in message, message
    listed = manager.get("list_backups")
    assert [b["id"] for b in listed["backups"]] == [second["id"], last["id"]]
    assert listed["restorable"]["from"] == math.floor(second["finished"])
    store = store_of(manager)
    assert not asyncio.run(store.exists(f"backups/{first['id']}.xbstream"))
    kept = {s.key for s in segments_of(manager)}
    assert doomed and not doomed & kept
    assert all(not held.contains(s.last) for s in segments_of(manager))
    stored = asyncio.run(index.read(store))
    assert stored is not None and stored.position.contains(held)

    # the window's first second: the second full backup, then its binlogs
    rows = rows_of(manager, master)
    target = math.floor(second["finished"])
    expected = [i for i, at in rows if math.floor(at) <= target]
    assert 0 < len(expected) < len(rows)
    restored = manager.post("restore_node", time=target)
    node = restored["serviceNode"]["id"]
    assert restored["backup"] == second["id"]
    history_line(manager, node, f"node {node} restored from backup")
    assert [i for i, _ in rows_of(manager, node)] == expected


def scheduled(manager: Manager, kind: str, after: float = 0.0) -> dict[str, Any]:
    """The first backup of ``kind`` started after ``after``, once done."""
    def done() -> dict[str, Any] | None:
        for entry in manager.get("list_backups")["backups"]:
            if entry["kind"] == kind and entry["started"] > after:
                assert entry["state"] != "failed", entry
                return entry if entry["state"] == "done" else None
        return None

    return wait_until(done, 180, 1.0, f"a scheduled {kind} backup")


@pytest.mark.parametrize("single", ["schedule = full every 1d, incremental every 10s"],
                         indirect=True)
def test_scheduled_backups_start_on_their_own(single: Manager) -> None:
    manager = single
    master, _ = manager.wait_topology(1)
    full = scheduled(manager, "full")
    event(manager, f"backup {full['id']} (full, scheduled) started")
    incremental = scheduled(manager, "incremental")
    assert incremental["parent"] == full["id"]
    assert incremental["started"] >= full["started"] + 10
    shown = manager.get("get_service_info")["backup"]
    assert shown["schedule"] == "full every 1d, incremental every 10s"
    assert shown["retention_days"] is None
    assert shown["next_backup"]["kind"] == "incremental"
    metrics = httpx.get(f"{manager.url}metrics", timeout=10).text
    assert "conpaassql_last_backup_age_seconds " in metrics
    assert 'conpaassql_backups{state="done"}' in metrics

    # a restarted manager goes on from the catalog: an incremental, no full backup
    manager.stop()
    restarted = time.time()
    manager.start()
    write(manager, master, 2)
    after = scheduled(manager, "incremental", restarted)
    assert [b["id"] for b in manager.get("list_backups")["backups"]
            if b["kind"] == "full"] == [full["id"]]
    assert after["parent"] is not None
