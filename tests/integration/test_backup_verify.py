"""``verify_backup`` with real nodes: a backup restored on a scratch server of a
slave and its tables checked (``verify = after_full`` verifies a full backup on its
own), the result kept with the backup; a byte changed in a stored object makes the
verification fail, naming the object, and a restore refuse it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.standins.s3 import s3_server
from tests.integration.harness import Manager, rpc_error, wait_until
from tests.integration.test_backups import backed_up, history_line, insert, value

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    """A master and a slave, full backups verified on their own, three user tables."""
    manager = Manager(template_cache, sections="[backup]\nverify = after_full\n").start()
    try:
        manager.post("add_nodes", count=2)
        master, _ = manager.wait_topology(2)
        value(manager, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); "
              "CREATE TABLE app.u (id INT PRIMARY KEY, v TEXT) ENGINE=Aria; "
              "CREATE DATABASE other; CREATE TABLE other.w (id INT PRIMARY KEY); "
              "CREATE VIEW app.v AS SELECT id FROM app.t")
        yield manager
    finally:
        manager.close()


def verified(manager: Manager, backup_id: str) -> dict[str, Any]:
    """The backup's verification, once it is over."""
    def over() -> dict[str, Any] | None:
        entry = {b["id"]: b for b in manager.get("list_backups")["backups"]}[backup_id]
        shown = entry["verified"]
        return shown if shown is not None and shown.get("state") != "running" else None

    return wait_until(over, 240, 0.5, f"backup {backup_id} verified")


def test_verify_backup(pair: Manager) -> None:
    manager = pair
    master, slaves = manager.wait_topology(2)
    insert(manager, master, 1, 10)
    value(manager, master, "INSERT INTO app.u VALUES (1, 'one'); INSERT INTO other.w VALUES (7)")
    manager.sync_slaves(master, slaves)

    full = backed_up(manager, "full")
    result = verified(manager, full["id"])  # verify = after_full
    assert result["ok"] is True, result
    assert result["tables"] == 3  # app.t, app.u, other.w: not the view, not mysql.*
    assert result["node"] == str(slaves[0]) and result["error"] is None
    assert result["seconds"] > 0 and result["at"] >= full["finished"]
    history_line(manager, slaves[0], f"backup {full['id']} verified on node {slaves[0]}: "
                 "3 table(s) sound")

    insert(manager, master, 11, 20)
    manager.sync_slaves(master, slaves)
    incremental = backed_up(manager, "incremental")
    listed = {b["id"]: b for b in manager.get("list_backups")["backups"]}
    assert listed[incremental["id"]]["verified"] is None  # only full ones on their own
    job = manager.post("verify_backup", id=incremental["id"])
    assert job["id"] == incremental["id"] and job["node"] == str(slaves[0])
    assert job["verified"]["state"] == "running"
    assert "busy:" in rpc_error(lambda: manager.post("verify_backup", id=full["id"]))
    assert verified(manager, incremental["id"])["ok"] is True
    # The scratch server and its directory are gone; the slave's server was not touched.
    leftovers = [p for p in manager.state_dir.rglob(".verify-*")]
    assert leftovers == []
    assert value(manager, slaves[0], "SELECT COUNT(*) FROM app.t") == "20"
    assert "no backup 20261207T103000Z-full-000000" in rpc_error(lambda: manager.post(
        "verify_backup",
        id="20261207T103000Z-full-000000"))

    # One byte changed in the full backup's object: verification fails naming it...
    key = f"backups/{full['id']}.xbstream"
    stored = manager.state_dir / "backups" / key
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    manager.post("verify_backup", id=incremental["id"])
    failed = verified(manager, incremental["id"])
    assert failed["ok"] is False and failed["tables"] == 0
    assert key in failed["error"] and "Corrupt backup object" in failed["error"], failed
    line = history_line(manager, slaves[0], f"verification of backup {incremental['id']} "
                        "failed")
    assert key in line
    assert verified(manager, full["id"])["ok"] is True  # the earlier result is kept
    # ... and a restore refuses it, naming it.
    broken = manager.post("restore_node", backup=full["id"])["serviceNode"]["id"]
    failure = history_line(manager, broken, f"restoring node {broken} from backup")
    assert key in failure, failure
    assert manager.node(broken)["restore"]["state"] == "failed"


def test_s3_verify_and_a_new_service_from_the_s3_store(template_cache: Path) -> None:
    """Through moto's S3 server: a backup of the master (no slave) verified on it; a
    second service restores it from the first one's prefix; a byte changed in the
    object makes the verification fail, naming it."""
    key_id, secret, bucket = "AKIDVERIFYSTANDIN003", "verify-standin-Secret-3", "verify-bk"
    moto = contextlib.ExitStack()
    url, s3 = moto.enter_context(s3_server(bucket, key_id, secret))
    common = (f"endpoint_url = {url}\nregion = us-east-1\naccess_key_id = {key_id}\n"
              f"secret_access_key = {secret}\naddressing_style = path\n")
    first = Manager(template_cache, sections=f"[backup]\nstore = s3://{bucket}/one\n{common}")
    second = None
    try:
        first.start()
        first.post("add_nodes", count=1)
        master, _ = first.wait_topology(1)
        value(first, master, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
        insert(first, master, 1, 5)
        full = backed_up(first, "full")
        assert first.post("verify_backup", id=full["id"])["node"] == str(master)
        result = verified(first, full["id"])
        assert result["ok"] is True and result["tables"] == 1, result

        second = Manager(template_cache, sections=(
            f"[backup]\nstore = s3://{bucket}/two\n{common}restore_from = "
            f"s3://{bucket}/one#{full['id']}\nrestore_key = {first.secret('backup_key')}\n"))
        second.start()
        second.post("add_nodes", count=1)
        node, _ = second.wait_topology(1, timeout=300)
        assert value(second, node, "SELECT COUNT(*) FROM app.t") == "5"
        assert second.get("get_service_info")["restore_from"]["state"] == "done"

        key = f"backups/{full['id']}.xbstream"
        data = bytearray(s3.get_object(Bucket=bucket, Key=f"one/{key}")["Body"].read())
        data[len(data) // 2] ^= 0x01
        s3.put_object(Bucket=bucket, Key=f"one/{key}", Body=bytes(data))
        first.post("verify_backup", id=full["id"])
        failed = verified(first, full["id"])
        assert failed["ok"] is False and key in failed["error"], failed
    finally:
        first.close()
        if second is not None:
            second.close()
        moto.close()
