"""How far a backup or a restore under way has got: the agent's ``get_job_progress``.

A backup counts the bytes mariabackup has produced (read by ``zstd`` straight from
its pipe, so they are ``zstd``'s reads as ``/proc/<pid>/io`` tells them, sampled
only when asked) and the bytes written to the store; it expects the size of the
datadir's files for a full backup, nothing for an incremental (only the pages changed
are copied: their amount is unknown until the end). A restore counts the stored
bytes fetched of the chain's stored size, then names its later phases.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Files of a datadir that are not in a physical backup: binlogs, relay logs, the
#: temporary tablespace, and the redo log (only what is written meanwhile is copied).
_NOT_COPIED = re.compile(r"^(binlog|relay-bin)\.(\d+|index)$|^ib_logfile\d+$|^ibtmp\d+$"
                         r"|\.(pid|sock)$")


@dataclass
class JobProgress:
    """One job's figures, updated by the pipeline as it runs."""

    kind: str  # "backup" or "restore"
    phase: str
    started: float = field(default_factory=time.time)
    bytes: int = 0  # a backup: produced by mariabackup; a restore: stored bytes fetched
    stored: int = 0  # a backup: written to the store (compressed, encrypted)
    expected: int | None = None  # what ``bytes`` should reach; None: unknown
    #: Reads ``bytes`` when they go by outside Python (a pipe into zstd); None or a
    #: failing read keeps the last value.
    sampler: Callable[[], int | None] | None = None

    def sample(self) -> None:
        if self.sampler is not None:
            value = self.sampler()
            if value is not None and value > self.bytes:
                self.bytes = value

    def snapshot(self) -> dict[str, Any]:
        """The figures as ``get_job_progress`` answers them."""
        self.sample()
        return {"kind": self.kind, "phase": self.phase, "bytes": self.bytes,
                "stored": self.stored, "expected": self.expected, "started": self.started}


def bytes_read(pid: int) -> int | None:
    """``rchar`` of ``/proc/<pid>/io`` (the bytes the process has read), or None."""
    try:
        text = Path(f"/proc/{pid}/io").read_text(encoding="ascii")
    except (OSError, ValueError):
        return None
    found = re.search(r"^rchar:\s*(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def datadir_size(datadir: Path) -> int:
    """The bytes of a datadir's files a full backup copies (binlogs, relay logs, the
    redo log and runtime files left out): what the backup's stream should come to,
    roughly (the stream adds its chunk headers and the redo written meanwhile)."""
    total = 0
    for root, _dirs, files in os.walk(datadir):
        for name in files:
            if _NOT_COPIED.search(name):
                continue
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
