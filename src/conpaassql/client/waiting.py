"""``backup --wait`` and ``restore_node --wait``: follow what the call started until
it is done or failed, polling the manager.

A backup is followed through ``list_backups`` (its state, and its bytes when the
manager reports them while it runs), a restored node through ``get_node_info``
(its state and its restore's phase) until it holds its data. On a terminal a
spinner shows the state and the time so far, and a bar with the bytes and the
percent done while the manager knows how many to expect (the agent's ``progress``),
then one summary line; elsewhere a plain line is written each time the state or
the phase changes, so that logs stay short. A manager that cannot be reached (it
restarting) is asked again, one poll apart, up to ``UNREACHABLE_TRIES`` times in a
row before the wait gives up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from conpaassql.errors import UnreachableError
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.units import human_bytes

POLL = 1.0
#: How many looks in a row may fail to reach the manager before the wait ends.
UNREACHABLE_TRIES = 30
#: A restored node's states that end its restore; FAILED does not: its server is down
#: while its agent replaces the data, and it comes back RUNNING after.
ENDED = ("TERMINATING", "TERMINATED")


@dataclass(frozen=True)
class Seen:
    """One look at what is followed: its state in words, whether it is over (and
    well), and the record to print at the end."""

    text: str
    settled: bool = False
    ok: bool = False
    record: Mapping[str, Any] | None = None
    progress: Mapping[str, Any] | None = None  # the manager's {"phase", "bytes", "expected"}


class Known(ProgressColumn):
    """``column`` while the total is known; nothing otherwise (the spinner alone)."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self.column = column

    def render(self, task: Task) -> Any:
        return self.column.render(task) if task.total is not None else Text("")


def amounts(progress: Mapping[str, Any] | None) -> tuple[int, int | None]:
    """The bytes done and the total expected (None: unknown) of ``progress``."""
    progress = progress or {}
    done = progress.get("bytes")
    done = done if isinstance(done, int) and done > 0 else 0
    expected = progress.get("expected")
    if not isinstance(expected, int) or expected <= 0:
        return done, None
    return done, max(done, expected)


class Display:
    """Shows the states seen: on ``console``, a spinner with the time so far; else a
    plain line on ``plain`` whenever the text changes."""

    def __init__(self, label: str, console: Console | None, plain: TextIO | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.console = console
        self.plain = plain
        self._clock = clock
        self._started = clock()
        self._last = ""
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Display:
        if self.console is not None:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), Known(BarColumn()),
                Known(DownloadColumn()), Known(TaskProgressColumn()), TimeElapsedColumn(),
                console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

    def show(self, text: str, progress: Mapping[str, Any] | None = None) -> None:
        """``text``; on a console, with a bar when ``progress`` tells the bytes expected."""
        if self._progress is not None and self._task is not None:
            done, total = amounts(progress)
            self._progress.update(self._task, description=f"{self.label}: {text}",
                                  total=total, completed=done)
            if total is None:  # update() keeps a total it is not given
                for task in self._progress.tasks:
                    if task.id == self._task:
                        task.total = None
        elif self.plain is not None and text != self._last:
            self.plain.write(f"{self.label}: {text}\n")
            self.plain.flush()
        self._last = text

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def finish(self, text: str) -> None:
        """The last line: what came of it, and in how long."""
        self.stop()
        line = f"{self.label}: {text} ({self.elapsed:.1f} s)"
        if self.console is not None:
            self.console.print(Text(line))
        elif self.plain is not None:
            self.plain.write(line + "\n")
            self.plain.flush()


Look = Callable[[RpcClient], Awaitable[Seen]]


async def follow(client: RpcClient, look: Look, display: Display,
                 poll: float = POLL) -> Seen:
    """Look until settled, showing each state; ``UnreachableError`` once the manager
    could not be reached ``UNREACHABLE_TRIES`` times in a row."""
    missed = 0
    while True:
        try:
            seen = await look(client)
        except UnreachableError as exc:
            missed += 1
            if missed >= UNREACHABLE_TRIES:
                raise
            display.show(f"{exc.message}; trying again")
            await asyncio.sleep(poll)
            continue
        missed = 0
        if seen.settled:
            display.finish(seen.text)
            return seen
        display.show(seen.text, seen.progress)
        await asyncio.sleep(poll)


def backup_seen(backup_id: str, listed: Mapping[str, Any]) -> Seen:
    """Backup ``backup_id`` as ``list_backups`` shows it."""
    entry = next((b for b in listed.get("backups") or []
                  if isinstance(b, Mapping) and b.get("id") == backup_id), None)
    if entry is None:
        return Seen(f"backup {backup_id} is no longer listed", settled=True)
    state = str(entry.get("state") or "?")
    size = entry.get("bytes")
    amount = human_bytes(size) if isinstance(size, int) and size > 0 else ""
    where = f" on node {entry['node']}" if entry.get("node") else ""
    if state == "running":
        progress = entry.get("progress")
        progress = progress if isinstance(progress, Mapping) else None
        phase = f", {progress['phase']}" if progress and progress.get("phase") else ""
        return Seen(f"running{where}{phase}" + (f", {amount} so far" if amount else ""),
                    progress=progress)
    if state == "done":
        return Seen(f"done, {amount or '0 B'}{where}", settled=True, ok=True, record=entry)
    error = entry.get("error")
    return Seen(f"{state}" + (f": {error}" if error else ""), settled=True, record=entry)


def restore_seen(node: Mapping[str, Any]) -> Seen:
    """A restored node as ``get_node_info`` shows it."""
    state = str(node.get("state") or "?")
    restore = node.get("restore")
    restore = restore if isinstance(restore, Mapping) else {}
    phase = str(restore.get("state") or "waiting")
    if state in ENDED:
        return Seen(f"node {state}", settled=True, record=node)
    if phase == "failed":
        return Seen(f"restore failed: {restore.get('error') or 'see the node log'}",
                    settled=True, record=node)
    if phase == "done" and state == "RUNNING":
        gtid = restore.get("gtid")
        return Seen("RUNNING, restored" + (f" to GTID position {gtid}" if gtid else ""),
                    settled=True, ok=True, record=node)
    progress = restore.get("progress")
    progress = progress if isinstance(progress, Mapping) else None
    step = (progress or {}).get("phase") or restore.get("phase") or restore.get("step")
    doing = {"waiting": "waiting for the node to run", "running": "restoring",
             "done": "restored, its server starting"}.get(phase, phase)
    return Seen(f"node {state}, {doing}" + (f" ({step})" if step else ""), progress=progress)


def backup_look(backup_id: str) -> Look:
    async def look(client: RpcClient) -> Seen:
        return backup_seen(backup_id, await client.get("list_backups"))

    return look


def restore_look(node_id: int) -> Look:
    async def look(client: RpcClient) -> Seen:
        answer = await client.get("get_node_info", serviceNodeId=node_id)
        return restore_seen(answer.get("serviceNode") or {})

    return look


def look_for(method: str, result: Any) -> tuple[str, Look] | None:
    """What to follow after ``method`` answered ``result``: a label and how to look
    (None when the method starts nothing to follow)."""
    if not isinstance(result, Mapping):
        return None
    if method == "backup" and result.get("id"):
        return f"backup {result['id']}", backup_look(str(result["id"]))
    node = result.get("serviceNode")
    if method == "restore_node" and isinstance(node, Mapping) and \
            isinstance(node.get("id"), int):
        return f"restored node {node['id']}", restore_look(node["id"])
    return None
