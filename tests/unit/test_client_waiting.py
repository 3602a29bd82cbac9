"""``--wait``'s progress without a manager: the states of a backup and of a restored
node in words, and what is written where (plain lines off a terminal, a spinner
then one line on it)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from conpaassql.client.waiting import (
    UNREACHABLE_TRIES,
    Display,
    Seen,
    amounts,
    backup_seen,
    follow,
    look_for,
    restore_seen,
)
from conpaassql.errors import UnreachableError
from conpaassql.rpc.client import RpcClient
from tests.unit.clock import Clock


def listed(state: str, **more: Any) -> dict[str, Any]:
    return {"backups": [{"id": "b9", "kind": "full", "state": state, "node": "2",
                         "bytes": None, **more}], "restorable": {"from": None, "to": None}}


def test_a_backups_states_in_words() -> None:
    assert backup_seen("b9", listed("running")) == Seen("running on node 2")
    assert backup_seen("b9", listed("running", bytes=3_000_000)).text == \
        "running on node 2, 3.0 MB so far"
    done = backup_seen("b9", listed("done", bytes=5_000_000))
    assert (done.text, done.settled, done.ok) == ("done, 5.0 MB on node 2", True, True)
    assert done.record is not None and done.record["id"] == "b9"
    failed = backup_seen("b9", listed("failed", error="disk full"))
    assert (failed.text, failed.settled, failed.ok) == ("failed: disk full", True, False)
    assert backup_seen("other", listed("done")).text == "backup other is no longer listed"


def test_a_restored_nodes_states_in_words() -> None:
    def node(node_state: str, **restore: Any) -> dict[str, Any]:
        return {"id": 5, "state": node_state, "role": "restored", "restore": restore}

    assert restore_seen(node("PENDING", state="waiting")).text == \
        "node PENDING, waiting for the node to run"
    assert restore_seen(node("RUNNING", state="running", phase="prepare")).text == \
        "node RUNNING, restoring (prepare)"
    done = restore_seen(node("RUNNING", state="done", gtid="0-1-7"))
    assert (done.text, done.ok) == ("RUNNING, restored to GTID position 0-1-7", True)
    assert restore_seen(node("RUNNING", state="failed", error="bad checksum")) == \
        Seen("restore failed: bad checksum", settled=True,
             record=node("RUNNING", state="failed", error="bad checksum"))
    # its server is down while the data is replaced: not over yet
    assert restore_seen(node("FAILED", state="running")) == Seen("node FAILED, restoring")
    assert restore_seen(node("RUNNING", state="done")).ok
    assert restore_seen(node("TERMINATED", state="running")).settled


def test_what_is_followed_after_which_call() -> None:
    assert look_for("backup", {"id": "b9", "state": "running"}) is not None
    assert look_for("restore_node", {"serviceNode": {"id": 5}}) is not None
    assert look_for("backup", {"error": "busy"}) is None
    assert look_for("list_backups", {"backups": []}) is None


class Scripted:
    """Answers ``list_backups`` from a script, one answer per call."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers: Iterator[dict[str, Any]] = iter(answers)

    async def get(self, method: str, **params: Any) -> dict[str, Any]:
        assert method == "list_backups"
        return next(self.answers)


def test_off_a_terminal_one_plain_line_per_state() -> None:
    out = io.StringIO()
    clock = Clock()
    client: Any = Scripted([listed("running"), listed("running"),
                            listed("running", bytes=1_000_000), listed("done", bytes=2_000_000)])

    async def look(rpc: RpcClient) -> Seen:
        clock.now += 1.5
        return backup_seen("b9", await rpc.get("list_backups"))

    with Display("backup b9", None, out, clock=clock) as display:
        seen = asyncio.run(follow(client, look, display, poll=0))
    assert seen.ok
    assert out.getvalue().splitlines() == [
        "backup b9: running on node 2",
        "backup b9: running on node 2, 1.0 MB so far",
        "backup b9: done, 2.0 MB on node 2 (6.0 s)",
    ]


def test_on_a_terminal_a_spinner_then_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    client: Any = Scripted([listed("running"), listed("failed", error="no slave")])

    async def look(rpc: RpcClient) -> Seen:
        return backup_seen("b9", await rpc.get("list_backups"))

    with Display("backup b9", console, None, clock=Clock()) as display:
        seen = asyncio.run(follow(client, look, display, poll=0))
    assert not seen.ok
    shown = buffer.getvalue()
    assert "backup b9: running on node 2" in shown  # the spinner's line
    # the spinner taken away, then the one line
    assert shown.rstrip().splitlines()[-1].endswith("backup b9: failed: no slave (0.0 s)")
    assert capsys.readouterr() == ("", "")


class Restarting:
    """A manager that cannot be reached ``missed`` times in a row before each answer."""

    def __init__(self, answers: list[dict[str, Any]], missed: int) -> None:
        self.answers = iter(answers)
        self.missed = missed
        self.left = missed
        self.calls = 0

    async def get(self, method: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise UnreachableError("http://manager:50000", detail="Connection refused")
        self.left = self.missed
        return next(self.answers)


async def _backup_b9(rpc: RpcClient) -> Seen:
    return backup_seen("b9", await rpc.get("list_backups"))


def test_a_manager_restarting_is_asked_again() -> None:
    out = io.StringIO()
    client: Any = Restarting([listed("running"), listed("done", bytes=10)],
                             missed=UNREACHABLE_TRIES - 1)
    with Display("backup b9", None, out, clock=Clock()) as display:
        seen = asyncio.run(follow(client, _backup_b9, display, poll=0))
    assert seen.ok and client.calls == 2 * UNREACHABLE_TRIES
    assert out.getvalue().splitlines() == [
        "backup b9: Cannot reach http://manager:50000 DETAIL:Connection refused; "
        "trying again",
        "backup b9: running on node 2",
        "backup b9: Cannot reach http://manager:50000 DETAIL:Connection refused; "
        "trying again",
        "backup b9: done, 10 B on node 2 (0.0 s)",
    ]


def test_a_manager_gone_for_good_ends_the_wait() -> None:
    client: Any = Restarting([listed("done")], missed=UNREACHABLE_TRIES)
    with Display("backup b9", None, io.StringIO(), clock=Clock()) as display, \
            pytest.raises(UnreachableError, match="Connection refused"):
        asyncio.run(follow(client, _backup_b9, display, poll=0))
    assert client.calls == UNREACHABLE_TRIES


def running_with(phase: str, done: int, expected: int | None) -> dict[str, Any]:
    return listed("running", progress={"phase": phase, "bytes": done, "expected": expected})


def test_the_agents_progress_read() -> None:
    seen = backup_seen("b9", running_with("copy", 300, 1000))
    assert seen.text == "running on node 2, copy"
    assert seen.progress == {"phase": "copy", "bytes": 300, "expected": 1000}
    assert amounts(seen.progress) == (300, 1000)
    assert amounts({"phase": "copy", "bytes": 300, "expected": None}) == (300, None)
    assert amounts({"bytes": 1200, "expected": 1000}) == (1200, 1200)  # an estimate passed
    assert amounts(None) == (0, None)
    restoring = restore_seen({"id": 5, "state": "FAILED", "restore": {
        "state": "running", "progress": {"phase": "fetch", "bytes": 5, "expected": 10}}})
    assert restoring.text == "node FAILED, restoring (fetch)"
    assert amounts(restoring.progress) == (5, 10)


def test_on_a_terminal_a_bar_with_bytes_and_percent() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with Display("backup b9", console, None, clock=Clock()) as display:
        display.show("running on node 2, copy", {"phase": "copy", "bytes": 500_000,
                                                 "expected": 2_000_000})
        assert display._progress is not None
        display._progress.refresh()
        shown = buffer.getvalue()
        display.show("running on node 2, copy", {"phase": "copy", "bytes": 700_000,
                                                 "expected": None})
        display._progress.refresh()
        unknown = buffer.getvalue()[len(shown):]
    assert "25%" in shown and "0.5/2.0 MB" in shown
    assert "%" not in unknown and "MB" not in unknown  # the spinner alone again


def test_off_a_terminal_one_line_per_phase_not_per_byte() -> None:
    out = io.StringIO()
    client: Any = Scripted([running_with("copy", 1, 10), running_with("copy", 5, 10),
                            listed("done", bytes=2_000_000)])

    async def look(rpc: RpcClient) -> Seen:
        return backup_seen("b9", await rpc.get("list_backups"))

    with Display("backup b9", None, out, clock=Clock()) as display:
        asyncio.run(follow(client, look, display, poll=0))
    assert out.getvalue().splitlines()[:-1] == ["backup b9: running on node 2, copy"]
