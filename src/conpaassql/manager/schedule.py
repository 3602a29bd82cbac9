"""The backup scheduler: ``[backup] schedule`` and ``retention_days`` kept, as a task
of the manager.

Each turn reads the catalog (off the event loop, as every store call; a copy kept
while no backup starts, ends or is deleted, ``REREAD`` seconds at most), starts the
backup the schedule says is due (none while one runs: ``busy`` is a skip, the
next turn tries again) and, every ``RETENTION_EVERY`` seconds and after each
backup, runs a retention pass. It decides from the catalog's times only, so a
restarted manager goes on where the last one was. The catalog it read is kept for
``get_service_info`` and the metrics (the newest done backup, the count by state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from conpaassql.backup.catalog import STATES, BackupRecord
from conpaassql.config.backup import BackupConfig
from conpaassql.errors import BusyError, ConpaasSQLError, WrongStateError
from conpaassql.manager.backups import Backups
from conpaassql.manager.retention import Retention

log = logging.getLogger(__name__)

#: Longest pause between two turns (seconds); shorter when a backup is due sooner.
TURN = 60.0
#: Seconds between turns while a backup runs.
SOON = 5.0
#: Between two turns without a schedule (they only refresh the summary; a backup's
#: end refreshes it too).
IDLE_TURN = 600.0
#: Seconds between two periodic retention passes.
RETENTION_EVERY = 3600.0
#: Longest the scheduler goes on from its copy of the catalog (seconds): it is read
#: anew sooner when a backup of this manager starts or ends or one is deleted.
REREAD = 600.0


@dataclass
class Summary:
    """What the last catalog read showed."""

    newest_done: float | None = None  # finish time of the newest done backup
    by_state: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, records: list[BackupRecord]) -> Summary:
        finished = [r.finished for r in records if r.state == "done" and r.finished]
        return cls(max(finished) if finished else None,
                   {state: sum(r.state == state for r in records) for state in STATES})


class BackupScheduler:
    """Starts scheduled backups and runs retention passes."""

    def __init__(self, backups: Backups) -> None:
        self.backups = backups
        self.retention = Retention(backups)
        self.summary: Summary | None = None
        self.next: tuple[str, float] | None = None
        self._pruned_at = 0.0
        self._refused: str | None = None  # the last reason a scheduled start was refused
        self._task: asyncio.Task[None] | None = None
        self._records: list[BackupRecord] | None = None  # the catalog as last read
        self._read = (0, 0.0)  # then: the backups' generation, time.monotonic()
        backups.on_finished = self._finished

    @property
    def config(self) -> BackupConfig:
        return self.backups.rt.config.backup

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="backup scheduler")

    async def stop(self) -> None:
        """Cancel the task; an error it ended with is logged, not raised (the manager's
        other parts still close)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("backup scheduler ended by an error")

    async def run(self) -> None:
        """Turns until cancelled; a turn's error is logged and the next turn comes."""
        while True:
            pause = TURN if self.config.schedule is not None else IDLE_TURN
            try:
                pause = await self.turn()
            except (ConpaasSQLError, OSError) as exc:
                log.warning("backup scheduler: %s", exc)
            except Exception:
                log.exception("backup scheduler: a turn failed")
            await asyncio.sleep(pause)

    async def turn(self, now: float | None = None) -> float:
        """One turn; the seconds until the next."""
        now = time.time() if now is None else now
        records = await self._catalog()
        self.summary = Summary.of(records)
        schedule = self.config.schedule
        self.next = schedule.next(records, now) if schedule is not None else None
        if self.next is not None and self.next[1] <= now:
            await self._start(self.next[0])
        if self.config.retention_days is not None and now - self._pruned_at >= RETENTION_EVERY:
            self._pruned_at = now
            await self.retention.prune_quietly()
        if self.next is None:
            return IDLE_TURN if schedule is None else TURN
        if self.backups.busy:  # the next may fall due as soon as this one ends
            return SOON
        return TURN if self.next[1] <= now else min(TURN, max(1.0, self.next[1] - now))

    async def _catalog(self) -> list[BackupRecord]:
        """The catalog: the copy of the last read unless a backup started or ended or
        one was deleted since, or it is ``REREAD`` seconds old (the first turn reads)."""
        generation, at = self._read
        if (self._records is None or generation != self.backups.generation
                or time.monotonic() - at >= REREAD):
            generation = self.backups.generation
            self._records = await self.backups.records()
            self._read = (generation, time.monotonic())
        return self._records

    async def _start(self, kind: str) -> None:
        try:
            await self.backups.start(kind, scheduled=True)
            self._refused = None
        except BusyError:
            log.info("scheduled %s backup waits: another one runs", kind)
        except WrongStateError as exc:
            if kind == "incremental":  # its parent's node is gone: a full one instead
                log.info("scheduled incremental backup impossible (%s): a full one", exc)
                await self._start("full")
            else:
                self._refuse(kind, exc)
        except ConpaasSQLError as exc:
            self._refuse(kind, exc)

    def _refuse(self, kind: str, exc: ConpaasSQLError) -> None:
        if str(exc) != self._refused:  # once in the history, not every turn
            self._refused = str(exc)
            self.backups.rt.store.record_event(f"scheduled {kind} backup not started: {exc}")

    def _finished(self, record: BackupRecord) -> None:
        """A backup ended: retention runs after a done one, then the summary is read."""
        self.backups.nodes.spawn(self._after(record), f"after backup {record.id}")

    async def _after(self, record: BackupRecord) -> None:
        if record.state == "done" and self.config.retention_days is not None:
            await self.retention.prune_quietly()
        try:
            self.summary = Summary.of(await self._catalog())
        except (ConpaasSQLError, OSError) as exc:
            log.warning("backup catalog unread: %s", exc)

    def service_info(self) -> dict[str, Any]:
        """``get_service_info``'s ``backup`` part from the scheduler."""
        schedule, summary = self.config.schedule, self.summary
        return {
            "schedule": None if schedule is None else str(schedule),
            "retention_days": self.config.retention_days,
            "next_backup": (None if self.next is None
                            else {"kind": self.next[0], "at": self.next[1]}),
            "last_backup": None if summary is None else summary.newest_done,
            "backups_by_state": None if summary is None else dict(summary.by_state),
        }
