"""Binlog archiving through a real manager and its agents, on the file store: rows
written without pause, a switchover, the master's mysqld SIGKILLed, the manager
killed and restarted; the archive has every transaction once, in order; a binlog
purged before it was archived is found, shown and recorded."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.backup import FileStore
from conpaassql.backup.keys import BackupKey
from conpaassql.backup.segments import Segment, archived, gaps, position_of
from conpaassql.domain.gtid import GtidPosition
from tests.integration import workload
from tests.integration.harness import Manager, wait_until

pytestmark = pytest.mark.integration

INTERVAL = 1.0


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache,
                      sections=f"[backup]\narchive_interval = {INTERVAL}\n").start()
    try:
        manager.post("add_nodes", count=2)
        manager.wait_topology(2)
        workload.prepare(manager)
        yield manager
    finally:
        manager.close()


def segments_of(manager: Manager) -> list[Segment]:
    text = (manager.state_dir / "secrets" / "backup_key").read_text()
    store = FileStore(manager.state_dir / "backups", BackupKey.from_text(text))
    return asyncio.run(archived(store))


def position(manager: Manager, node: int) -> GtidPosition:
    answer = manager.sql(node, "SELECT @@global.gtid_binlog_pos")
    assert answer.returncode == 0, answer.stderr
    return GtidPosition.parse(answer.stdout.strip())


def master_of(manager: Manager) -> int:
    return int(manager.get("get_service_info")["master"]["id"])


class Sampler:
    """Every 0.3 s, the master's binlog position and when it was read: later matched
    with the time the segment holding it was stored."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            try:
                node = master_of(self.manager)
                answer = self.manager.sql(node, "SELECT @@global.gtid_binlog_pos")
            except Exception:
                continue
            if answer.returncode == 0 and answer.stdout.strip():
                self.samples.append((time.time(),
                                     GtidPosition.parse(answer.stdout.strip()).sequence(0)))

    def delays(self, segments: list[Segment]) -> list[float]:
        found = []
        for at, sequence in self.samples:
            holder = next((s for s in segments if s.last.sequence(0) >= sequence), None)
            if holder is not None:
                found.append(max(0.0, holder.created - at))
        return found


def assert_once_in_order(segments: list[Segment], end: GtidPosition) -> None:
    """Domain 0's sequence numbers, segment after segment: each one exactly once."""
    assert gaps(segments) == []
    for before, after in itertools.pairwise(segments):
        assert after.first.sequence(0) == before.last.sequence(0) + 1, (before.key, after.key)
    assert position_of(segments).sequence(0) == end.sequence(0)
    assert sum(s.count for s in segments) == end.sequence(0) - segments[0].first.sequence(0) + 1


def test_archiving_survives_switchover_kill_and_restart_and_finds_a_gap(pair: Manager) -> None:
    manager = pair
    first, second = sorted(n["id"] for n in manager.nodes())
    wait_until(lambda: manager.get("get_service_info")["backup"]["archiving"], 60,
               what="archiving")
    sampler = Sampler(manager).start()
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 100, 30, what="writes flowing")
        old = master_of(manager)
        target = second if old == first else first
        manager.post("set_up_replica_master", id=target)
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count + 100, 60, what="writes after switchover")
        wait_until(lambda: manager.get("get_service_info")["backup"].get("node") == target,
                   60, what="the new master archiving")
        mysqld = manager.mysqld_pid(target)
        assert mysqld is not None
        os.kill(mysqld, signal.SIGKILL)
        wait_until(lambda: manager.get("list_nodes")["masters"] not in ([target], []), 90,
                   0.2, what="a new master")
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count + 100, 60, what="writes after failover")
    finally:
        writer.stop()
        sampler.stop()
    master = master_of(manager)
    end = position(manager, master)
    wait_until(lambda: position_of(segments_of(manager)).contains(end), 60,
               what="the archive holding the last write")
    segments = segments_of(manager)
    assert_once_in_order(segments, end)
    assert len({s.server_id for s in segments}) == 2  # both nodes wrote a part
    delays = sorted(sampler.delays(segments))
    print(f"commit to store (interval {INTERVAL}s): median {delays[len(delays) // 2]:.2f}s, "
          f"worst {delays[-1]:.2f}s over {len(delays)} samples")
    info = wait_until(lambda: (found := manager.get("get_service_info")["backup"])
                      ["archived_gtid"] == str(end) and found, 30, what="archived_gtid shown")
    assert info["gap"] is None and info["archive_lag_seconds"] is not None

    # The manager killed and started again while the master archives and writes go on.
    writer = workload.writer(manager).start()
    try:
        wait_until(lambda: len(writer.acked) > 50, 30, what="writes flowing again")
        manager.kill()
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count + 50, 30, what="writes, no manager")
        manager.start()
        count = len(writer.acked)
        wait_until(lambda: len(writer.acked) > count + 50, 30, what="writes, manager back")
    finally:
        writer.stop()
    end = position(manager, master)
    wait_until(lambda: position_of(segments_of(manager)).contains(end), 60,
               what="the archive holding the last write")
    assert_once_in_order(segments_of(manager), end)

    # The manager killed; archiving paused; a binlog purged before it was archived.
    manager.agent_url(master)  # (known before the manager goes)
    manager.kill()
    manager.agent_call(master, "stop_archiving")
    slaves = [n for n in (first, second) if n != master]
    for statement in ("INSERT INTO app.w VALUES (-1, 0)", "FLUSH BINARY LOGS",
                      "INSERT INTO app.w VALUES (-2, 0)"):
        assert manager.sql(master, statement).returncode == 0
    logs = manager.sql(master, "SHOW BINARY LOGS").stdout.split()
    assert manager.sql(master, f"PURGE BINARY LOGS TO '{logs[-2]}'").returncode == 0
    manager.start()
    gap = wait_until(lambda: manager.get("get_service_info")["backup"]["gap"], 60,
                     what="the gap reported")
    assert gap["archived_to"] == str(end)
    events = [e["message"] for e in manager.get("get_service_history", limit=100)["history"]]
    assert any(m.startswith("binlog archive gap:") for m in events), events[-10:]
    assert slaves  # (the slave still has them: a gap in this node's binlogs only)
    # The gap asked for a new full backup, which starts on its own and completes.
    taken = wait_until(lambda: [b for b in manager.get("list_backups")["backups"]
                                if b["kind"] == "full" and b["state"] == "done"], 120,
                       what="a full backup after the gap")
    assert len(taken) == 1
    after = position(manager, master)
    wait_until(lambda: position_of(segments_of(manager)).contains(after), 60,
               what="archiving on after the gap")
