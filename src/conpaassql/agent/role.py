"""The role the manager gave this node, as the agent remembers it.

Only ``set_up_replica_master`` makes a node the master; ``set_read_only(true)``, a
slave setup and ``fence`` undo it. The intent is kept in a file of the node's
data directory, so that an agent restarted beside a running (writable) server
still knows it is the master while its manager is away. Being made the master gives
a lease (``agent.lease``); losing the role drops it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from conpaassql.agent.lease import LEASE_FILE, Lease

INTENT_FILE = "master-intent"


class MasterIntent:
    """Whether the manager made this node the writable master (and has not undone it)."""

    def __init__(self, path: Path, lease: Lease | None = None) -> None:
        self.path = path
        self.lease = lease if lease is not None else Lease(path.with_name(LEASE_FILE))
        self._master = path.is_file()
        #: Counts the changes: a cached view of the server older than the last one is
        #: read again.
        self.changes = 0
        #: Called after each change (the heartbeat beats at once: a master's renews
        #: its lease).
        self.on_change: Callable[[], None] = lambda: None

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
            self.lease.drop("not the master")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        else:
            self.path.write_text("master\n", encoding="ascii")
            self.lease.renew(time.monotonic(), "made the master by the manager")
            self._master = True
        self.on_change()
