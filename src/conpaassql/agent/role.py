"""The role the manager gave this node, as the agent remembers it.

Only ``set_up_replica_master`` makes a node the master; ``set_read_only(true)``, a
slave setup and ``fence`` undo it. The intent is kept in a file of the node's
data directory, so that an agent restarted beside a running (writable) server
still knows it is the master while its manager is away.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

INTENT_FILE = "master-intent"


class MasterIntent:
    """Whether the manager made this node the writable master (and has not undone it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._master = path.is_file()
        #: Counts the changes: a cached view of the server older than the last one is
        #: read again.
        self.changes = 0

    @classmethod
    def in_dir(cls, data_dir: Path) -> MasterIntent:
        return cls(data_dir / INTENT_FILE)

    @property
    def master(self) -> bool:
        return self._master

    def set(self, master: bool) -> None:
        """Remember the role; cleared in memory first, so no answer lags behind."""
        self.changes += 1
        if not master:
            self._master = False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.path.write_text("master\n", encoding="ascii")
        self._master = True
