"""The Backups page without a manager: ``list_backups`` shaped into the timeline's
shapes, the part rendered from them, the archive's status, a restore's progress,
and the restore form's time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conpaassql.gui import backup_view
from conpaassql.gui.backups import restore_node, restore_time
from conpaassql.gui.config import GuiConfig
from conpaassql.gui.context import Gui, InputError
from conpaassql.gui.security import Guard
from conpaassql.gui.sessions import Sessions

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def listing() -> dict[str, Any]:
    """A full backup an hour ago, an incremental on it, a full one running, one failed,
    and fields this page does not know (a newer manager's)."""
    return {"backups": [
        {"id": "f1", "kind": "full", "state": "done", "started": NOW - 3600,
         "finished": NOW - 3400, "gtid": "0-1-5", "bytes": 5_000_000, "node": "2",
         "parent": None, "verified": {"ok": True, "at": NOW - 3000, "tables": 12,
                                      "seconds": 14.2, "error": None, "node": "2"},
         "comment": {"by": "a newer manager"}},
        {"id": "i1", "kind": "incremental", "state": "done", "started": NOW - 1800,
         "finished": NOW - 1790, "gtid": "0-1-9", "bytes": 40_000, "node": "2",
         "parent": "f1"},
        {"id": "x1", "kind": "full", "state": "failed", "started": NOW - 900,
         "finished": NOW - 899, "gtid": None, "bytes": None, "node": "2", "parent": None},
        {"id": "f2", "kind": "full", "state": "running", "started": NOW - 360,
         "finished": None, "gtid": None, "bytes": None, "node": "3", "parent": None},
    ], "restorable": {"from": NOW - 3400, "to": NOW - 4}}


def test_the_timeline_places_each_backup_on_its_lane_and_links_its_parent() -> None:
    records = backup_view.backups(listing())
    assert [b.id for b in records] == ["f1", "i1", "x1", "f2"]
    assert records[0].children == ["i1"]
    assert records[0].extra == {"comment": "by a newer manager"}
    picture = backup_view.timeline(records, listing()["restorable"], now=NOW)
    assert picture is not None
    bars = {bar.id: bar for bar in picture.bars}
    # the axis runs from the first backup's start (x 0) to now (x 1000)
    assert bars["f1"].x == 0.0 and bars["f1"].width == pytest.approx(200 / 3600 * 1000, 0.01)
    assert bars["i1"].x == 500.0 and bars["i1"].width == backup_view.MIN_BAR
    assert bars["f2"].x + bars["f2"].width == pytest.approx(1000.0)  # running: up to now
    full_top, incremental_top = backup_view.LANES["full"][0], backup_view.LANES["incremental"][0]
    assert {bars["f1"].y, bars["f2"].y, bars["x1"].y} == {full_top}
    assert bars["i1"].y == incremental_top
    assert (bars["x1"].state, bars["f2"].state) == ("failed", "running")
    [link] = picture.links
    assert (link.x1, link.x2) == (bars["f1"].x + bars["f1"].width, bars["i1"].x)
    assert link.title == "i1 is built on f1"
    assert picture.window is not None
    assert picture.window[0] == bars["f1"].x + bars["f1"].width
    assert picture.window_title == ("restorable from 2027-01-15 07:03:20 to "
                                    "2027-01-15 07:59:56 UTC")
    assert (picture.start, picture.end) == ("2027-01-15 07:00:00", "2027-01-15 08:00:00")


def test_no_backup_draws_nothing_and_a_window_without_backups_is_none() -> None:
    assert backup_view.timeline([], {"from": None, "to": None}, now=NOW) is None
    records = backup_view.backups({"backups": [listing()["backups"][3]],
                                   "restorable": {"from": None, "to": None}})
    picture = backup_view.timeline(records, {"from": None, "to": None}, now=NOW)
    assert picture is not None and picture.window is None
    assert picture.window_title == "nothing restorable yet"


def test_descendants_are_found_through_every_generation() -> None:
    rows = listing()["backups"] + [
        {"id": "i2", "kind": "incremental", "state": "done", "started": NOW - 1000,
         "parent": "i1"}]
    records = backup_view.backups({"backups": rows})
    assert backup_view.descendants("f1", records) == ["i1", "i2"]
    assert backup_view.descendants("i2", records) == []


def render_part(**context: Any) -> str:
    gui = Gui(GuiConfig(manager_host="127.0.0.1", manager_port=1),
              Guard(login=False, tls=False, bind="127.0.0.1", sessions=Sessions(idle=60)))
    return gui.templates.env.get_template("_backups.html").render(**context)


def test_the_part_draws_the_svg_and_the_table_with_unknown_fields() -> None:
    records = backup_view.backups(listing())
    info = {"backup": {"archiving": True, "archived_to": NOW - 4, "archive_lag_seconds": 2.4,
                       "gap": {"archived_to": "0-1-9", "binlogs_from": "0-1-12"},
                       "schedule": {"full_every_hours": 24}, "next_full": None}}
    html = render_part(
        backups=list(reversed(records)),
        dependents={b.id: backup_view.descendants(b.id, records) for b in records},
        picture=backup_view.timeline(records, listing()["restorable"], now=NOW),
        window_from=backup_view.utc(NOW - 3400), window_to=backup_view.utc(NOW - 4),
        archive=backup_view.archive(info), restores=[])
    assert '<svg class="backups"' in html
    assert 'class="bk kind-incremental bk-done" data-backup="i1"' in html
    assert 'class="bk kind-full bk-running" data-backup="f2"' in html
    assert 'class="parent-link"' in html and 'data-testid="window-band"' in html
    assert "2027-01-15 07:03:20 UTC" in html and "caught up 2 s ago" in html
    assert "archived to 0-1-9, the binlogs start after 0-1-12" in html
    assert "full every hours 24" in html and "next full" not in html
    assert "comment: by a newer manager" in html
    # each row's verification; a Verify button on each done backup not being verified
    assert 'data-verified="ok"' in html and "ok: 12 tables sound, verified 2027-01-15 " \
        "07:10:00 UTC on node 2 in 14 s" in html
    assert html.count('data-verified="none"') == 3 and "not verified" in html
    assert 'data-action="/act/verify_backup" data-p-id="f1"' in html
    assert 'data-action="/act/verify_backup" data-p-id="i1"' in html
    assert html.count("/act/verify_backup") == 2  # not the failed nor the running one
    # f1 has an incremental: deleting it alone or with it; a running one has no delete
    assert html.count('data-action="/act/delete_backup" data-p-id="f1"') == 2
    assert 'data-p-with_incrementals="true"' in html
    assert 'data-p-id="f2"' not in html
    assert 'data-p-backup="f1"' in html and 'data-p-backup="x1"' not in html


def test_an_empty_service_says_so() -> None:
    html = render_part(backups=[], dependents={}, picture=None, window_from="",
                       window_to="", archive=None, restores=[])
    assert "No backups yet" in html and "nothing restorable yet" in html
    assert "No restored node" in html and "<svg" not in html


@pytest.mark.parametrize(("verified", "state", "text"), [
    (None, "none", "not verified"),
    ("garbage", "none", "not verified"),
    ({"state": "running", "node": "3", "at": NOW - 5}, "running",
     "verifying on node 3 since 2027-01-15 07:59:55 UTC"),
    ({"ok": True, "tables": 1, "at": NOW, "seconds": 75, "node": "2"}, "ok",
     "ok: 1 table sound, verified 2027-01-15 08:00:00 UTC on node 2 in 1 min 15 s"),
    ({"ok": True, "tables": 0, "at": NOW}, "ok",
     "ok: 0 tables sound, verified 2027-01-15 08:00:00 UTC"),
    ({"ok": False, "tables": 0, "at": NOW, "node": "2",
      "error": "Corrupt backup object: backups/f1.xbstream\n  checksum differs"}, "failed",
     "failed 2027-01-15 08:00:00 UTC on node 2: Corrupt backup object: "
     "backups/f1.xbstream checksum differs"),
    ({"ok": False}, "failed", "failed: no reason given"),
])
def test_a_verification_in_words(verified: object, state: str, text: str) -> None:
    shown = backup_view.verification(verified)
    assert (shown.state, shown.text) == (state, text)
    assert shown.settled is (state != "running")
    [record] = backup_view.backups({"backups": [{"id": "f1", "state": "done",
                                                 "verified": verified}]})
    assert record.verified == shown and "verified" not in record.extra


def test_a_running_verification_has_no_verify_button() -> None:
    entry = {**listing()["backups"][0], "verified": {"state": "running", "node": "2",
                                                      "at": NOW}}
    records = backup_view.backups({"backups": [entry]})
    html = render_part(backups=records, dependents={"f1": []}, picture=None,
                       window_from="", window_to="", archive=None, restores=[])
    assert 'data-verified="running"' in html and "verifying on node 2" in html
    assert "/act/verify_backup" not in html and 'data-p-backup="f1"' in html


@pytest.mark.parametrize(("node", "expected"), [
    ({"id": 4, "state": "BOOTING", "restore": {"backup": "f1", "state": "waiting"}},
     (False, False, "node 4 BOOTING: waiting for the node to run")),
    ({"id": 4, "state": "RUNNING", "restore": {"backup": "f1", "state": "running",
                                               "time": NOW - 60, "phase": "replaying"}},
     (False, False, "node 4 RUNNING: restoring (replaying)")),
    ({"id": 4, "state": "RUNNING", "restore": {"backup": "f1", "state": "done"}},
     (True, True, "node 4 holds backup f1: read-only, apart from replication")),
    ({"id": 4, "state": "RUNNING", "restore": {"backup": "f1", "state": "failed",
                                               "time": NOW - 60, "error": "no space"}},
     (True, False, "restoring node 4 to 2027-01-15 07:59:00 UTC (from backup f1) "
                   "failed: no space")),
    ({"id": 4, "state": "FAILED", "restore": {"backup": "f1", "state": "running"}},
     (False, False, "node 4 FAILED: restoring")),  # its server is down meanwhile
    ({"id": 4, "state": "FAILED", "restore": {"backup": "f1", "state": "running", "progress": {
        "phase": "fetch", "bytes": 2_500_000, "expected": 10_000_000}}},
     (False, False, "node 4 FAILED: restoring (fetch, 2.5 MB of 10.0 MB (25%))")),
    ({"id": 4, "state": "TERMINATED", "restore": {"backup": "f1", "state": "waiting"}},
     (True, False, "node 4 is TERMINATED: its restore of backup f1 ended")),
])
def test_a_restores_progress_in_words(node: dict[str, Any],
                                      expected: tuple[bool, bool, str]) -> None:
    assert backup_view.restore_text(node) == expected


def test_the_pickers_time_is_utc() -> None:
    assert restore_time("2026-12-07T10:00:05") == "2026-12-07T10:00:05+00:00"
    assert restore_time(" 2026-12-07T10:00 ") == "2026-12-07T10:00:00+00:00"
    assert backup_view.picker(NOW) == "2027-01-15T08:00:00"
    for wrong in ("", "yesterday", "2026-12-07 10:00:05+01:00", "1700000000"):
        with pytest.raises(InputError):
            restore_time(wrong)


def test_a_running_backups_progress_on_the_page() -> None:
    entries = listing()
    entries["backups"][3]["progress"] = {"phase": "copy", "bytes": 3_000_000,
                                         "expected": 4_000_000}
    records = backup_view.backups(entries)
    running = records[-1]
    assert running.progress is not None and running.progress.percent == 75
    assert running.extra == {}  # not shown twice, as an unknown field
    html = render_part(backups=list(reversed(records)),
                       dependents={b.id: backup_view.descendants(b.id, records)
                                   for b in records},
                       picture=None, window_from="", window_to="", archive=None, restores=[])
    assert 'data-testid="backup-progress">copy, 3.0 MB of 4.0 MB (75%)</span>' in html
    unknown = backup_view.progress_of({"phase": "copy", "bytes": 7_000, "expected": None})
    assert unknown is not None and (unknown.percent, unknown.text()) == (None, "copy, 7.0 kB")
    passed = backup_view.progress_of({"phase": "copy", "bytes": 5_000_000,
                                      "expected": 4_000_000})
    assert passed is not None and passed.percent == 100
    assert passed.text() == "copy, 5.0 MB of 5.0 MB (100%)"
    assert backup_view.progress_of(None) is None


def test_a_restore_to_a_whole_minute_is_told_to_the_second() -> None:
    """A picker leaves ``:00`` seconds out; the message says them, as the restore does."""

    class Manager:
        async def post(self, method: str, **params: Any) -> dict[str, Any]:
            assert (method, params) == ("restore_node", {"time": "2026-12-07T17:35:00+00:00"})
            return {"serviceNode": {"id": 2}, "backup": "b1"}

    answer = asyncio.run(restore_node(Manager(), {"time": "2026-12-07T17:35"}))  # type: ignore[arg-type]
    assert answer["message"] == "node 2 added to hold 2026-12-07 17:35:00 UTC (from backup b1)"
    assert answer["follow"]["busy"] == "Restoring node 2 to 2026-12-07 17:35:00 UTC"
