"""``[backup] schedule``: the grammar, its errors, and which backup is due when."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from conpaassql.backup.catalog import BackupRecord, Catalog
from conpaassql.config import IniFile
from conpaassql.config.backup import BackupConfig
from conpaassql.config.schedule import RETRY, Rule, Schedule, ScheduleError, parse_schedule
from conpaassql.errors import ConfigError
from conpaassql.manager.schedule import IDLE_TURN, REREAD, TURN, BackupScheduler
from tests.unit.test_retention import runtime_backups

H = 3600.0
MIDNIGHT = 1796601600.0  # 2026-12-07 00:00:00 UTC


@dataclass
class Taken:
    kind: str
    started: float
    state: str = "done"


@pytest.mark.parametrize(("text", "expected"), [
    ("full every 24h", Schedule(Rule(interval=24 * H))),
    ("full every 24h, incremental every 1h", Schedule(Rule(interval=24 * H),
                                                      Rule(interval=H))),
    ("full daily 03:00, incremental every 1h", Schedule(Rule(at=3 * H), Rule(interval=H))),
    ("  Full  Daily 3:30 ,incremental every 90m", Schedule(Rule(at=3.5 * H),
                                                         Rule(interval=90 * 60.0))),
    ("incremental every 30s, full every 2d", Schedule(Rule(interval=2 * 86400.0),
                                                      Rule(interval=30.0))),
])
def test_schedules_parse(text: str, expected: Schedule) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(("text", "written"), [
    ("full every 24h, incremental every 1h", "full every 1d, incremental every 1h"),
    ("full daily 03:05", "full daily 03:05"),
    ("full every 90s", "full every 90s"),
])
def test_a_schedule_is_shown_in_its_own_grammar(text: str, written: str) -> None:
    assert str(parse_schedule(text)) == written
    assert parse_schedule(written) == parse_schedule(text)


@pytest.mark.parametrize(("text", "reason"), [
    ("full every day", "is not '<full|incremental> every"),
    ("full every 24x", "'x' is not a unit"),
    ("full every 0h", "at least 1"),
    ("full daily 24:00", "not a time of day"),
    ("full daily 03:60", "not a time of day"),
    ("incremental every 1h", "needs a full part"),
    ("full every 1h, full every 2h", "full is scheduled twice"),
    ("differential every 1h, full every 1d", "not a kind of backup"),
    ("full every 1h,", "is not '<full|incremental>"),
])
def test_bad_schedules_say_why(text: str, reason: str) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(text)


def config(text: str) -> BackupConfig:
    ini = IniFile.from_text(text, env={}, name="/etc/conpaassql/manager.ini")
    return BackupConfig.from_section(ini.section("backup"))


def test_the_backup_section_names_the_file_section_and_key_of_a_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"manager\.ini \[backup\] SCHEDULE.*not a unit"):
        config("[backup]\nschedule = full every 3w\n")
    with pytest.raises(ConfigError, match=r"manager\.ini \[backup\] RETENTION_DAYS"):
        config("[backup]\nretention_days = 0\n")
    with pytest.raises(ConfigError, match=r"RETENTION_DAYS.*not a number"):
        config("[backup]\nretention_days = a week\n")


@pytest.mark.parametrize(("text", "days"), [
    ("0.0001", None), ("0.0003", None), ("0", None),  # 9 s, 26 s: a slip
    ("0.000347", None),  # just under 30 seconds
    ("0.00035", 0.00035), ("0.000462963", 0.000462963),  # 30.24 s; 40 s (the tests')
    ("0.5", 0.5), ("7", 7.0),
])
def test_retention_days_has_a_minimum(text: str, days: float | None) -> None:
    if days is None:
        with pytest.raises(ConfigError, match=r"manager\.ini \[backup\] RETENTION_DAYS.*"
                                              r"at least 30 seconds"):
            config(f"[backup]\nretention_days = {text}\n")
    else:
        assert config(f"[backup]\nretention_days = {text}\n").retention_days == days


def test_by_default_nothing_is_scheduled_nor_deleted() -> None:
    assert config("[backup]\n") == BackupConfig()
    assert BackupConfig().schedule is None and BackupConfig().retention_days is None
    read = config("[backup]\nschedule = full daily 03:00, incremental every 1h\n"
                  "retention_days = 0.5\n")
    assert read.schedule == parse_schedule("full daily 03:00, incremental every 1h")
    assert read.retention_days == 0.5


EVERY = parse_schedule("full every 24h, incremental every 1h")
DAILY = parse_schedule("full daily 03:00, incremental every 1h")


@pytest.mark.parametrize(("schedule", "taken", "now", "expected"), [
    # nothing yet: a full backup at once, whatever the schedule
    (EVERY, [], MIDNIGHT, ("full", MIDNIGHT)),
    (DAILY, [], MIDNIGHT, ("full", MIDNIGHT)),
    # every: from the last of its kind; an incremental from the last of either kind
    (EVERY, [Taken("full", MIDNIGHT)], MIDNIGHT + 10, ("incremental", MIDNIGHT + H)),
    (EVERY, [Taken("full", MIDNIGHT), Taken("incremental", MIDNIGHT + H)],
     MIDNIGHT + H + 5, ("incremental", MIDNIGHT + 2 * H)),
    (EVERY, [Taken("full", MIDNIGHT), Taken("incremental", MIDNIGHT + 23.5 * H)],
     MIDNIGHT + 24 * H, ("full", MIDNIGHT + 24 * H)),
    # daily: the last 03:00 passed with no full backup since
    (DAILY, [Taken("full", MIDNIGHT - 20 * H)], MIDNIGHT + 2 * H,
     ("incremental", MIDNIGHT - 19 * H)),
    (DAILY, [Taken("full", MIDNIGHT - 20 * H), Taken("incremental", MIDNIGHT + 1.5 * H)],
     MIDNIGHT + 3 * H + 1, ("full", MIDNIGHT + 3 * H)),
    (DAILY, [Taken("full", MIDNIGHT + 3 * H), Taken("incremental", MIDNIGHT + 3.9 * H)],
     MIDNIGHT + 4 * H, ("incremental", MIDNIGHT + 4.9 * H)),
    (parse_schedule("full daily 03:00"), [Taken("full", MIDNIGHT + 3 * H)], MIDNIGHT + 4 * H,
     ("full", MIDNIGHT + 27 * H)),
    # one running: not due again from its start
    (EVERY, [Taken("full", MIDNIGHT, "running")], MIDNIGHT + 60, ("full", MIDNIGHT + 24 * H)),
    # a failed attempt is retried after RETRY, not at once, nor a day later
    (EVERY, [Taken("full", MIDNIGHT, "failed")], MIDNIGHT + 60, ("full", MIDNIGHT + RETRY)),
    (EVERY, [Taken("full", MIDNIGHT - 30 * H), Taken("full", MIDNIGHT, "failed")],
     MIDNIGHT + 60, ("full", MIDNIGHT + RETRY)),
    # an incremental needs a done backup: none yet, the full one stays next
    (EVERY, [Taken("full", MIDNIGHT, "failed")], MIDNIGHT + 2 * RETRY,
     ("full", MIDNIGHT + 2 * RETRY)),
])
def test_the_next_backup(schedule: Schedule, taken: list[Taken], now: float,
                         expected: tuple[str, float]) -> None:
    assert schedule.next(taken, now) == expected


def test_a_scheduler_turn_decides_from_the_catalog(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, events = runtime_backups(tmp_path, None)
        backups.rt.config.backup = BackupConfig(schedule=EVERY)
        scheduler = BackupScheduler(backups)
        # no backup yet: a full one is due, and refused (no node) once in the history
        await scheduler.turn(now=MIDNIGHT)
        await scheduler.turn(now=MIDNIGHT + 60)
        assert scheduler.next == ("full", MIDNIGHT + 60)
        assert events == ["scheduled full backup not started: Service in wrong state "
                          "DETAIL:no running master or slave to take a backup from"]
        # one running: skipped, nothing recorded
        backups._running = "starting"
        await scheduler.turn(now=MIDNIGHT + 120)
        assert len(events) == 1
        backups._running = None
        # a new scheduler (a restarted manager) reads the catalog: an incremental next
        full = record(f"{FULL_ID}", MIDNIGHT - 600)
        await Catalog(backups.store).save(full)
        fresh = BackupScheduler(backups)
        pause = await fresh.turn(now=MIDNIGHT + 10)
        assert fresh.next == ("incremental", MIDNIGHT - 600 + H)
        assert pause == TURN  # the due time is further: the next turn in a minute
        shown = fresh.service_info()
        assert shown["schedule"] == "full every 1d, incremental every 1h"
        assert shown["next_backup"] == {"kind": "incremental", "at": MIDNIGHT - 600 + H}
        assert shown["last_backup"] == MIDNIGHT - 540
        assert shown["backups_by_state"] == {"running": 0, "done": 1, "failed": 0}
        # the incremental due, its parent's node gone: a full backup is tried instead
        await fresh.turn(now=MIDNIGHT - 600 + H + 1)
        assert events[1:] == ["scheduled full backup not started: Service in wrong state "
                              "DETAIL:no running master or slave to take a backup from"]

    asyncio.run(scenario())


FULL_ID = "20261206T235000Z-full-aaaaaa"


def record(backup_id: str, started: float) -> BackupRecord:
    return BackupRecord(backup_id, "full", state="done", started=started,
                        finished=started + 60, gtid="0-1-5")


def test_a_turn_that_fails_is_logged_and_the_next_one_comes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, None)
        scheduler = BackupScheduler(backups)
        turns: list[int] = []
        pauses: list[float] = []
        second = asyncio.Event()
        sleep = asyncio.sleep

        async def turn(now: float | None = None) -> float:
            turns.append(len(turns))
            if len(turns) == 1:
                raise ValueError("a bug in a turn")
            second.set()
            return TURN

        async def pause(seconds: float) -> None:
            pauses.append(seconds)
            await sleep(0)

        scheduler.turn = turn  # type: ignore[method-assign]
        monkeypatch.setattr("conpaassql.manager.schedule.asyncio.sleep", pause)
        scheduler.start()
        assert scheduler._task is not None
        waiting = asyncio.create_task(second.wait())
        await asyncio.wait([scheduler._task, waiting], return_when=asyncio.FIRST_COMPLETED)
        assert not scheduler._task.done()  # the error did not end the scheduler
        assert turns[:2] == [0, 1] and pauses[0] == IDLE_TURN  # the loop's usual pause
        await scheduler.stop()
        assert "backup scheduler: a turn failed" in caplog.text
        assert "ValueError: a bug in a turn" in caplog.text

    asyncio.run(scenario())


def test_stop_logs_an_error_the_task_ended_with(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, None)
        scheduler = BackupScheduler(backups)

        async def broken() -> None:
            raise RuntimeError("the task's end")

        scheduler._task = asyncio.create_task(broken())
        await asyncio.sleep(0)
        await scheduler.stop()  # logged, not raised
        assert "backup scheduler ended by an error" in caplog.text
        assert "RuntimeError: the task's end" in caplog.text

    asyncio.run(scenario())


def test_the_catalog_is_read_anew_when_backups_change_or_the_copy_is_old(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        backups, _ = runtime_backups(tmp_path, None)
        backups.rt.config.backup = BackupConfig(schedule=EVERY)
        await Catalog(backups.store).save(record(FULL_ID, MIDNIGHT - 600))
        reads: list[int] = []
        records = backups.records

        async def counted() -> list[BackupRecord]:
            reads.append(1)
            return await records()

        backups.records = counted  # type: ignore[method-assign]
        scheduler = BackupScheduler(backups)
        await scheduler.turn(now=MIDNIGHT)  # the first turn reads (a restarted manager)
        await scheduler.turn(now=MIDNIGHT + 60)
        assert len(reads) == 1 and scheduler.next == ("incremental", MIDNIGHT - 600 + H)
        # a backup deleted: read anew, and the schedule follows
        await backups.delete(FULL_ID)
        await scheduler.turn(now=MIDNIGHT + 120)
        assert len(reads) == 3  # delete's own read, then the turn's
        assert scheduler.next == ("full", MIDNIGHT + 120)
        # one saved behind this manager's back: seen once the copy is REREAD old
        await Catalog(backups.store).save(record(FULL_ID, MIDNIGHT + 100))
        await scheduler.turn(now=MIDNIGHT + 180)
        assert len(reads) == 3 and scheduler.next == ("full", MIDNIGHT + 180)
        generation, at = scheduler._read
        scheduler._read = (generation, at - REREAD)
        await scheduler.turn(now=MIDNIGHT + 240)
        assert len(reads) == 4 and scheduler.next == ("incremental", MIDNIGHT + 100 + H)

    asyncio.run(scenario())
