"""Backups into the file store and restores out of it, with real nodes: a full backup
from the slave, an incremental, a node restored from the incremental standing apart
from replication, the catalog's shapes, deletions refused, a corrupted object."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.standins.s3 import s3_server
from tests.integration.harness import Manager, rpc_error, wait_until

pytestmark = pytest.mark.integration

SHOWN = {"id", "kind", "state", "started", "finished", "gtid", "bytes", "node", "parent",
         "verified"}


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    """A master and a slave replicating, with a table ``app.t``."""
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        master, _ = manager.wait_topology(2)
        done = manager.sql(master, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        assert done.returncode == 0, done.stderr
        yield manager
    finally:
        manager.close()


def value(manager: Manager, node: int, statement: str) -> str:
    answer = manager.sql(node, statement)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()


def insert(manager: Manager, master: int, first: int, last: int) -> None:
    rows = ", ".join(f"({n})" for n in range(first, last + 1))
    value(manager, master, f"INSERT INTO app.t VALUES {rows}")


def backed_up(manager: Manager, kind: str) -> dict[str, Any]:
    """Take a backup of ``kind``; its entry in ``list_backups`` once it is done."""
    started = manager.post("backup", kind=kind)
    assert started["state"] == "running" and started["kind"] == kind

    def done() -> dict[str, Any] | None:
        listed = {b["id"]: b for b in manager.get("list_backups")["backups"]}
        entry = listed[started["id"]]
        assert entry["state"] != "failed", entry
        return entry if entry["state"] == "done" else None

    return wait_until(done, 120, 0.5, f"{kind} backup done")


def history_line(manager: Manager, node: int, start: str) -> str:
    def found() -> str | None:
        entries = manager.get("get_service_history", serviceNodeId=node, limit=200)["history"]
        return next((e["message"] for e in entries if e["message"].startswith(start)), None)

    return wait_until(found, 240, 0.5, f"history: {start}")


def test_backup_incremental_and_restore(pair: Manager) -> None:
    manager = pair
    master, slaves = manager.wait_topology(2)
    slave = slaves[0]
    insert(manager, master, 1, 10)
    manager.sync_slaves(master, slaves)

    full = backed_up(manager, "full")
    assert full["node"] == str(slave)  # taken from the slave, not the master
    assert full["parent"] is None and full["bytes"] > 0 and full["gtid"]
    # A second backup while one runs is refused.
    running = manager.post("backup")
    assert "busy: backup" in rpc_error(lambda: manager.post("backup"))
    wait_until(lambda: all(b["state"] != "running"
                           for b in manager.get("list_backups")["backups"]), 120, 0.5,
               "the extra backup done")
    manager.post("delete_backup", id=running["id"])

    insert(manager, master, 11, 20)
    manager.sync_slaves(master, slaves)
    incremental = backed_up(manager, "incremental")
    assert incremental["parent"] == full["id"] and incremental["node"] == str(slave)
    assert incremental["gtid"] != full["gtid"]
    insert(manager, master, 21, 30)

    listed = manager.get("list_backups")
    assert set(listed) == {"backups", "restorable"}
    assert [b["id"] for b in listed["backups"]] == [full["id"], incremental["id"]]
    for entry in listed["backups"]:
        assert set(entry) == SHOWN
    # Whole seconds; the archive reaches at least as far as the last backup.
    assert listed["restorable"]["from"] == int(full["finished"])
    assert listed["restorable"]["to"] >= int(incremental["finished"])

    refused = rpc_error(lambda: manager.post("delete_backup", id=full["id"]))
    assert f"needed by incremental(s) {incremental['id']}" in refused
    refused = rpc_error(lambda: manager.post("restore_node", time=1765000000))
    assert "restorable from" in refused, refused

    restored = manager.post("restore_node", backup=incremental["id"])["serviceNode"]
    node = restored["id"]
    assert restored["role"] == "restored"
    line = history_line(manager, node, f"node {node} restored from backup")
    assert incremental["gtid"] in line
    ids = [int(n) for n in value(manager, node, "SELECT id FROM app.t ORDER BY id").split()]
    assert ids == list(range(1, 21))  # up to the incremental: nothing after
    assert value(manager, node, "SELECT @@global.read_only") == "1"
    assert value(manager, node, "SELECT @@global.gtid_slave_pos") == incremental["gtid"]
    assert value(manager, node, "SHOW SLAVE STATUS") == ""  # replication left it alone
    shown = manager.node(node)
    assert shown["role"] == "restored"
    assert shown["restore"] == {"backup": incremental["id"], "state": "done",
                                "gtid": incremental["gtid"]}
    listed_nodes = manager.get("list_nodes")
    assert listed_nodes["masters"] == [master] and listed_nodes["slaves"] == [slave]
    assert value(manager, master, "SELECT COUNT(*) FROM app.t") == "30"

    # One byte changed in the full backup's object: the restore fails, naming it.
    stored = manager.state_dir / "backups" / "backups" / f"{full['id']}.xbstream"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    broken = manager.post("restore_node", backup=incremental["id"])["serviceNode"]["id"]
    failure = history_line(manager, broken, f"restoring node {broken} from backup")
    assert f"backups/{full['id']}.xbstream" in failure, failure
    assert manager.node(broken)["restore"]["state"] == "failed"
    assert value(manager, broken, "SHOW DATABASES LIKE 'app'") == ""

    deleted = manager.post("delete_backup", id=full["id"], with_incrementals=True)
    assert deleted["deleted"] == [incremental["id"], full["id"]]
    assert manager.get("list_backups") == {"backups": [], "restorable": {"from": None,
                                                                          "to": None}}


def test_s3_store_backup_from_the_master_and_restore(template_cache: Path) -> None:
    """Through moto's S3 server: with no slave the master is backed up, the node
    restored from S3 holds its rows, promoted it becomes the master and the old one
    a copy of it; neither key nor secret is in any log."""
    key_id, secret, bucket = "AKIDBACKUPSTANDIN002", "backup-standin-Secret-7", "svc-backups"
    moto = contextlib.ExitStack()
    url, s3 = moto.enter_context(s3_server(bucket, key_id, secret))
    manager = Manager(template_cache, sections=(
        f"[backup]\nstore = s3://{bucket}/svc\nendpoint_url = {url}\nregion = us-east-1\n"
        f"access_key_id = {key_id}\nsecret_access_key = {secret}\naddressing_style = path\n"))
    try:
        manager.start()
        manager.post("add_nodes", count=1)
        master, _ = manager.wait_topology(1)
        value(manager, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        insert(manager, master, 1, 5)
        full = backed_up(manager, "full")
        assert full["node"] == str(master)
        stored = {item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]}
        assert f"svc/backups/{full['id']}.xbstream" in stored
        insert(manager, master, 6, 9)

        node = manager.post("restore_node", backup=full["id"])["serviceNode"]["id"]
        history_line(manager, node, f"node {node} restored from backup")
        assert value(manager, node, "SELECT COUNT(*) FROM app.t") == "5"
        assert value(manager, node, "SELECT @@global.read_only") == "1"
        assert manager.get("list_nodes")["masters"] == [master]

        # Promoted: the service rolled back to the backup, the old master copied anew.
        promoted = manager.post("set_up_replica_master", id=node)
        assert promoted["master"] == node and promoted["recopied"] == [master]
        new_master, slaves = manager.wait_topology(2)
        assert (new_master, slaves) == (node, [master])
        insert(manager, node, 100, 100)
        manager.sync_slaves(node, slaves)
        ids = value(manager, master, "SELECT id FROM app.t ORDER BY id").split()
        assert ids == ["1", "2", "3", "4", "5", "100"]
        assert value(manager, node, "SELECT @@global.read_only") == "0"
        backup_key = manager.secret("backup_key")
        logs = [manager.state_dir / "manager.log", *manager.state_dir.rglob("agent.log")]
        assert len(logs) == 3
        for log in logs:
            text = log.read_text(errors="replace")
            assert secret not in text and backup_key not in text, log
    finally:
        manager.close()
        moto.close()
