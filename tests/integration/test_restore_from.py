"""``[backup] restore_from``: new services built from another service's file store,
each with its own state directory and secrets, reading the store with that
service's key: one from a backup (its first node restored and made the master, the
second copied from it), one from a second between two commits; the data is
exactly the source's at that point. A restart does not restore again; an unknown
backup or a wrong key refuses ``add_nodes`` and is shown."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conpaassql.backup import BackupKey
from tests.integration.harness import Manager, rpc_error, wait_until
from tests.integration.test_backups import backed_up, history_line, value
from tests.integration.test_point_in_time import rows_of, write

pytestmark = pytest.mark.integration


@pytest.fixture
def source(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache, sections="[backup]\narchive_interval = 1\n").start()
    try:
        manager.post("add_nodes", count=1)
        master, _ = manager.wait_topology(1)
        value(manager, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT "
              "AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT NOW(6)); "
              "CREATE USER 'reader'@'%' IDENTIFIED BY 'Reader-pw-12'; "
              "GRANT SELECT ON app.* TO 'reader'@'%'")
        yield manager
    finally:
        manager.close()


def restored(template_cache: Path, restore_from: str, key: str) -> Manager:
    return Manager(template_cache, sections=f"[backup]\nrestore_from = {restore_from}\n{key}\n")


def ids(manager: Manager, node: int) -> list[int]:
    return [int(i) for i in value(manager, node, "SELECT id FROM app.t ORDER BY id").split()]


def test_new_services_from_a_backup_and_from_a_time(source: Manager,
                                                    template_cache: Path) -> None:
    first = source
    master, _ = first.wait_topology(1)
    write(first, master, 3)
    full = backed_up(first, "full")
    write(first, master, 10)  # about two seconds of commits after the backup
    rows = rows_of(first, master)
    seconds = sorted({math.floor(at) for _, at in rows if at > full["finished"]})
    target = seconds[-2]
    at_target = [i for i, at in rows if math.floor(at) <= target]
    assert 3 < len(at_target) < len(rows)
    wait_until(lambda: (first.get("list_backups")["restorable"]["to"] or 0) > target, 60,
               0.5, what="the archive past the target")
    store = (first.state_dir / "backups").as_uri()
    key_file = first.state_dir / "secrets" / "backup_key"
    when = datetime.fromtimestamp(target, UTC).strftime("%Y-%m-%dT%H:%M:%S")

    by_backup = restored(template_cache, f"{store}#{full['id']}",
                         f"restore_key_file = {key_file}")
    by_time = restored(template_cache, f"{store}@{when}",
                       f"restore_key = {first.secret('backup_key')}")
    try:
        by_backup.start()
        by_time.start()
        assert by_backup.get("get_service_info")["restore_from"] == {
            "source": f"{store}#{full['id']}"}
        added = by_backup.post("add_nodes", count=2)["nodes"]
        assert added[0]["role"] == "restored"
        by_time.post("add_nodes", count=1)

        new_master, slaves = by_backup.wait_topology(2, timeout=300)
        assert new_master == added[0]["id"] and slaves == [added[1]["id"]]
        assert ids(by_backup, new_master) == [1, 2, 3]  # the backup's, nothing after
        value(by_backup, new_master, "INSERT INTO app.t (id) VALUES (100)")  # writable
        by_backup.sync_slaves(new_master, slaves)
        assert ids(by_backup, slaves[0]) == [1, 2, 3, 100]
        # The users' accounts came with the data; root is this service's.
        assert value(by_backup, new_master, "SELECT COUNT(*) FROM mysql.user WHERE "
                     "User = 'reader'") == "1"
        info = by_backup.get("get_service_info")["restore_from"]
        assert info["state"] == "done" and info["backup"] == full["id"]
        assert info["node"] == new_master and info["error"] is None
        history_line(by_backup, new_master, f"restore_from done: node {new_master} holds "
                     f"backup {full['id']}")

        time_master, _ = by_time.wait_topology(1, timeout=300)
        assert ids(by_time, time_master) == at_target
        info = by_time.get("get_service_info")["restore_from"]
        assert info["state"] == "done" and info["time"] == target

        # A restart restores nothing again.
        by_backup.stop()
        by_backup.start()
        by_backup.wait_topology(2)
        assert by_backup.get("get_service_info")["restore_from"]["state"] == "done"
        assert ids(by_backup, new_master) == [1, 2, 3, 100]
        assert len(by_backup.nodes()) == 2
    finally:
        by_backup.close()
        by_time.close()

    # An unknown backup, a wrong key, a time outside the window: refused and shown.
    other_key = BackupKey.generate().to_text()
    for restore_from, key, error in (
            (f"{store}#20261207T000000Z-full-000000", f"restore_key_file = {key_file}",
             "no backup 20261207T000000Z-full-000000"),
            (f"{store}@{full['id'][:8]}", f"restore_key = {other_key}", "key"),
            (f"{store}@1765000000", f"restore_key_file = {key_file}", "restorable from")):
        failing = restored(template_cache, restore_from, key)
        try:
            failing.start()
            refused = rpc_error(lambda m=failing: m.post("add_nodes", count=1))  # type: ignore[misc]
            assert error in refused, refused
            assert failing.nodes() == []
            info = failing.get("get_service_info")["restore_from"]
            assert info["state"] == "failed" and error in info["error"], info
            assert any(entry["message"].startswith(f"restore_from {restore_from} failed")
                       for entry in failing.get("get_service_history")["history"])
        finally:
            failing.close()
