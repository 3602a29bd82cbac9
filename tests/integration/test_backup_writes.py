"""Backups do not block writes on the master: while a full backup runs from the
slave, an application's writer keeps committing on the master, and none of its
writes fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import workload
from tests.integration.harness import Manager, wait_until
from tests.integration.test_backups import value

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        manager.wait_topology(2)
        workload.prepare(manager)
        yield manager
    finally:
        manager.close()


def test_a_backup_from_the_slave_does_not_block_the_masters_writes(pair: Manager) -> None:
    manager = pair
    master, slaves = manager.wait_topology(2)
    # Some data, so that the copy is more than the empty tables.
    value(manager, master, "CREATE TABLE app.bulk (id INT PRIMARY KEY, pad CHAR(200)) "
          "SELECT seq AS id, REPEAT(MD5(seq), 6) AS pad FROM app.seq_1_to_50000")
    manager.sync_slaves(master, slaves)
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 20, 30, what="writes flowing")
        started = manager.post("backup", kind="full")

        def done() -> dict[str, float] | None:
            entry = {b["id"]: b for b in manager.get("list_backups")["backups"]}[started["id"]]
            assert entry["state"] != "failed", entry
            return entry if entry["state"] == "done" else None

        entry = wait_until(done, 120, 0.2, "the backup done")
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count, 30, what="writes after the backup")
    finally:
        writer.stop()
    assert entry["node"] == str(slaves[0])  # taken from the slave
    # The writer's acknowledgements, on the wall clock the backup's times are on.
    offset = time.time() - time.monotonic()
    during = [ack for ack in writer.acks
              if entry["started"] <= ack.at + offset <= entry["finished"]]
    assert during, (entry, len(writer.acks))
    assert {ack.node for ack in during} == {master}
    assert writer.failures == []
    rows = value(manager, master, "SELECT id FROM app.w ORDER BY id").split()
    assert sorted(int(row) for row in rows) == sorted(writer.rows())
