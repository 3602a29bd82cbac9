"""Point-in-time restore through a real manager and its agents, on the file store
and on S3 (moto's server): rows written with their commit times around a full
backup, an incremental, a switchover and a failover (the master's node killed),
then a ``DROP TABLE``; ``restore_node --time`` a second before the drop holds
exactly the rows committed up to that second; a time before the first backup is
refused with the window."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE
from testbed.standins.s3 import s3_server
from tests.integration.harness import Manager, process_alive, rpc_error, wait_until
from tests.integration.test_backups import backed_up, history_line, value

pytestmark = pytest.mark.integration

KEY_ID, SECRET, BUCKET = "AKIDBACKUPSTANDIN003", "backup-standin-Secret-3", "pitr-backups"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port, with the service's bucket."""
    with s3_server(BUCKET, KEY_ID, SECRET) as (url, _):
        yield url


@pytest.fixture(params=["file", "s3"])
def pair(template_cache: Path, request: pytest.FixtureRequest) -> Iterator[Manager]:
    sections = "[backup]\narchive_interval = 1\n"
    if request.param == "s3":
        url = request.getfixturevalue("s3_endpoint")
        sections += (f"store = s3://{BUCKET}/svc\nendpoint_url = {url}\nregion = us-east-1\n"
                     f"access_key_id = {KEY_ID}\nsecret_access_key = {SECRET}\n"
                     "addressing_style = path\n")
    manager = Manager(template_cache, sections=sections).start()
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


def kill_node(manager: Manager, node: int) -> None:
    """The node's agent and server SIGKILLed at once, as in a crash of its machine."""
    pids = [int((manager.node_dir(node) / name).read_text())
            for name in (AGENT_PID_FILE, MYSQLD_PID_FILE)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(process_alive(pid) for pid in pids), 30, what="node dead")


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
    master, slaves = manager.wait_topology(2)
    write(manager, master, 5)
    manager.sync_slaves(master, slaves)

    before_failover = max(i for i, _ in rows_of(manager, master))
    kill_node(manager, master)  # a failover: the other node takes over
    wait_until(lambda: manager.get("list_nodes")["masters"] == slaves, 120, 0.5,
               what="the failover")
    master = slaves[0]
    write(manager, master, 10)  # about two seconds of writes on the new master
    rows = rows_of(manager, master)
    value(manager, master, "DROP TABLE app.t")

    seconds = sorted({math.floor(at) for _, at in rows if at > incremental["finished"]})
    target = seconds[-2]  # rows after it exist, written before the drop
    expected = [i for i, at in rows if math.floor(at) <= target]
    assert 0 < len(expected) < len(rows)
    assert max(expected) > before_failover  # rows the new master archived after it
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
