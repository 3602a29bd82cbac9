"""``conpaassql-client backup --wait`` and ``restore_node --wait`` against a real
manager with a real node: the client follows the backup until it is done and the
restored node until it holds the data, writing one plain line per state on stderr
(not a terminal), and prints the final record as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Manager

pytestmark = pytest.mark.integration


@pytest.fixture
def single(template_cache: Path) -> Iterator[Manager]:
    """A master alone, with a table of three rows."""
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=1)
        master, _ = manager.wait_topology(1)
        done = manager.sql(master, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY "
                           "KEY); INSERT INTO app.t VALUES (1), (2), (3)")
        assert done.returncode == 0, done.stderr
        yield manager
    finally:
        manager.close()


def client(manager: Manager, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conpaassql.client", "127.0.0.1",
                           str(manager.port), *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_backup_and_restore_wait_until_done(single: Manager) -> None:
    manager = single
    master, _ = manager.wait_topology(1)
    taken = client(manager, "backup", "--wait")
    assert taken.returncode == 0, taken.stderr
    entry = json.loads(taken.stdout)
    assert entry["state"] == "done" and entry["kind"] == "full"
    assert entry["node"] == str(master) and entry["bytes"] > 0
    lines = taken.stderr.splitlines()
    label = f"backup {entry['id']}: "
    assert lines[0].startswith(f"{label}running on node {master}"), taken.stderr
    assert lines[-1].startswith(f"{label}done, ") and lines[-1].endswith(" s)"), lines
    assert "\x1b[" not in taken.stderr  # no bar: stderr is not a terminal
    listed = {b["id"]: b for b in manager.get("list_backups")["backups"]}
    assert listed[entry["id"]]["state"] == "done"

    plain = client(manager, "backup", "--kind", "incremental")  # the seed-style call
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["state"] == "running" and plain.stderr == ""

    restored = client(manager, "restore_node", "--backup", entry["id"], "--wait")
    assert restored.returncode == 0, restored.stderr
    node = json.loads(restored.stdout)
    assert node["state"] == "RUNNING" and node["role"] == "restored"
    assert node["restore"]["state"] == "done" and node["restore"]["backup"] == entry["id"]
    assert restored.stderr.splitlines()[-1].startswith(
        f"restored node {node['id']}: RUNNING, restored"), restored.stderr
    rows = manager.sql(node["id"], "SELECT COUNT(*) FROM app.t")
    assert rows.returncode == 0 and rows.stdout.strip() == "3", rows.stderr


#: Rows of 400 bytes of hex: a table of some 100 MB, whose backup takes a while.
DOUBLINGS = 18
#: Only a bound on a hang: not a measure.
HANG = 900.0


def test_list_backups_shows_a_running_backups_progress(single: Manager) -> None:
    """While the backup runs, ``list_backups`` shows the agent's bytes growing towards
    the datadir's size, and while it is restored ``get_node_info`` shows the restore's;
    the samples are taken as fast as the manager answers."""
    manager = single
    master, _ = manager.wait_topology(1)
    fill = ["CREATE TABLE app.big (id INT AUTO_INCREMENT PRIMARY KEY, pad VARCHAR(400)) "
            "ENGINE=InnoDB", "INSERT INTO app.big (pad) VALUES (REPEAT('x', 400))"]
    fill += ["INSERT INTO app.big (pad) SELECT CONCAT(MD5(RAND()), MD5(RAND()), SHA2(RAND(), "
             "512), SHA2(RAND(), 512), SHA2(RAND(), 256)) FROM app.big"] * DOUBLINGS
    done = manager.sql(master, "; ".join(fill))
    assert done.returncode == 0, done.stderr
    backup_id = manager.post("backup")["id"]
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + HANG
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        time.sleep(0.05)
        listing = manager.get("list_backups")
        # (absent while the file store replaces its record, as the backup ends)
        entry = next((b for b in listing["backups"] if b["id"] == backup_id), {})
        if entry.get("state") not in (None, "running"):
            break
        if "progress" in entry:
            samples.append(entry["progress"])
    assert entry["state"] == "done", entry
    growing = [s for s in samples if isinstance(s["bytes"], int) and s["bytes"] > 0]
    assert growing, samples
    assert all(s["phase"] == "copy" for s in samples), samples
    expected = growing[-1]["expected"]
    assert isinstance(expected, int) and expected > 2 ** DOUBLINGS * 400

    # its restore: get_node_info shows the bytes fetched, then the later phases
    node_id = manager.post("restore_node", backup=backup_id)["serviceNode"]["id"]
    phases: list[dict[str, Any]] = []
    restore: dict[str, Any] = {}
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline and restore.get("state") not in ("done", "failed"):
        time.sleep(0.05)
        restore = manager.get("get_node_info", serviceNodeId=node_id)["serviceNode"]["restore"]
        if "progress" in restore:
            phases.append(restore["progress"])
    assert restore["state"] == "done", restore
    assert phases, restore
    assert {p["phase"] for p in phases} <= {"fetch", "prepare", "start", "replay"}, phases
    assert all(p["expected"] > 0 and p["bytes"] <= p["expected"] for p in phases), phases
