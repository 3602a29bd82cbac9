"""What uploads and downloads need besides the RPC client: a progress meter and a
download file that appears complete or not at all.

``Meter`` counts the bytes of one transfer; given a console (a terminal) it
shows a rich progress bar while the transfer runs and a summary line after,
without one it stays silent, so that pipes and scripts see nothing.
``PartialFile`` writes under a temporary sibling name and renames into place
only when told the content is complete.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from conpaassql.rpc.units import human_bytes

MIN_SECONDS = 1e-3


class Meter:
    """Counts the bytes of one transfer; on ``console``, a bar and then a summary."""

    def __init__(self, label: str, console: Console | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.console = console
        self.done = 0
        self._clock = clock
        self._started = clock()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self, total: int | None) -> None:
        """Start timing and, on a console, show the bar (indeterminate without a total)."""
        self._started = self._clock()
        if self.console is None or self._progress is not None:
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=total)

    def advance(self, size: int) -> None:
        """Count ``size`` more bytes."""
        self.done += size
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=size)

    def stop(self) -> None:
        """Take the bar away (if shown)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def elapsed(self) -> float:
        """Seconds since ``start``."""
        return self._clock() - self._started

    def summary(self, verb: str) -> str:
        """One line: how many bytes, in how long, how fast."""
        seconds = max(self.elapsed, MIN_SECONDS)
        rate = self.done / seconds / 1e6
        return (f"{verb} {self.done:,} bytes ({human_bytes(self.done)}) in {seconds:.1f} s, "
                f"{rate:.1f} MB/s")

    def finish(self, verb: str) -> None:
        """Stop the bar; on a console, print the summary line."""
        self.stop()
        if self.console is not None:
            self.console.print(Text(self.summary(verb)))


class PartialFile:
    """A file written as ``.NAME.*.part`` beside ``target`` (mode 0600), renamed to
    ``target`` by ``commit``; left without a commit, it is removed."""

    def __init__(self, target: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".part")
        self.target = target
        self.temporary = Path(name)
        self.file: BinaryIO = os.fdopen(descriptor, "wb")
        self.committed = False

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.committed:
            self.discard()

    def commit(self) -> None:
        """The content is complete: put it in place of ``target``."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.target)
        self.committed = True

    def discard(self) -> None:
        """Drop what was written."""
        self.file.close()
        self.temporary.unlink(missing_ok=True)


def size_of(file: BinaryIO) -> int | None:
    """The size of ``file`` if it is a regular file (not a pipe or a terminal)."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
