"""Point-in-time restore through a real manager and its agents, on the file store:
rows written with their commit times around a full backup, an incremental and a
switchover, then a ``DROP TABLE``; ``restore_node --time`` a second before the drop
holds exactly the rows committed up to that second; a time before the first
backup is refused with the window."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.harness import Manager, rpc_error, wait_until
from tests.integration.test_backups import backed_up, history_line, value

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache, sections="[backup]\narchive_interval = 1\n").start()
    try:
        manager.post("add_nodes", count=2)
        master, _ = manager.wait_topology(2)
        value(manager, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT "
              "AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT NOW(6))")
        yield manager
    finally:
        manager.close()


def write(manager: Manager, node: int, rows: int) -> None:
    """``rows`` inserts, each its own transaction, 0.2 s apart."""
    value(manager, node, "; ".join(["INSERT INTO app.t () VALUES (); DO SLEEP(0.2)"] * rows))


def rows_of(manager: Manager, node: int) -> list[tuple[int, float]]:
    text = value(manager, node, "SELECT id, UNIX_TIMESTAMP(at) FROM app.t ORDER BY id")
    return [(int(i), float(at)) for i, at in (line.split() for line in text.splitlines())]


def master_of(manager: Manager) -> int:
    return int(manager.get("get_service_info")["master"]["id"])


def test_restore_to_a_second_before_a_drop(pair: Manager) -> None:
    manager = pair
    master, slaves = manager.wait_topology(2)
    write(manager, master, 3)
    before_any = time.time()
    manager.sync_slaves(master, slaves)
    full = backed_up(manager, "full")
    write(manager, master, 3)
    manager.sync_slaves(master, slaves)
    incremental = backed_up(manager, "incremental")
    write(manager, master, 3)

    manager.post("set_up_replica_master", id=slaves[0])
    wait_until(lambda: master_of(manager) == slaves[0], 120, 0.5, what="the switchover")
    master = slaves[0]
    write(manager, master, 10)  # about two seconds of writes on the new master
    rows = rows_of(manager, master)
    value(manager, master, "DROP TABLE app.t")

    seconds = sorted({math.floor(at) for _, at in rows if at > incremental["finished"]})
    target = seconds[-2]  # rows after it exist, written before the drop
    expected = [i for i, at in rows if math.floor(at) <= target]
    assert 0 < len(expected) < len(rows)
    wait_until(lambda: (manager.get("list_backups")["restorable"]["to"] or 0) > target, 60,
               0.5, what="the archive past the target")
    listed = manager.get("list_backups")["restorable"]
    assert listed["from"] == math.floor(full["finished"])

    when = datetime.fromtimestamp(target, UTC).strftime("%Y-%m-%d %H:%M:%S")  # UTC, naive
    restored = manager.post("restore_node", time=when)
    node = restored["serviceNode"]["id"]
    assert restored["serviceNode"]["role"] == "restored"
    assert restored["backup"] == incremental["id"]  # the latest at or before the target
    line = history_line(manager, node, f"node {node} restored from backup")
    assert "and the binlogs to" in line, line
    assert [i for i, _ in rows_of(manager, node)] == expected
    assert value(manager, node, "SELECT @@global.read_only") == "1"
    assert value(manager, node, "SHOW SLAVE STATUS") == ""
    assert manager.node(node)["restore"]["state"] == "done"

    refused = rpc_error(lambda: manager.post("restore_node", time=before_any))
    assert "Invalid argument: time" in refused and "restorable from" in refused, refused
    assert "not a time" in rpc_error(lambda: manager.post("restore_node", time="yesterday"))
