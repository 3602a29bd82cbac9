"""The Backups page in Chromium against a real manager with a real node: a backup
taken from the page and seen on the timeline, a restore to a second through the
form reaching a restored node that holds exactly the rows of that second, a
verification started from the page, then deletions (refused while an incremental
needs the backup, then with it)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.harness import BrowserManager, Gui, screenshot
from tests.integration.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLOW = 180_000  # ms: backups, a node booting and restoring


@pytest.fixture(scope="module", autouse=True)
def master(manager: BrowserManager) -> int:
    manager.post("add_nodes", count=1)
    node, _ = manager.wait_topology(1)
    rows(manager, node, "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)")
    rows(manager, node, "INSERT INTO app.t VALUES (1), (2), (3)")
    return node


def rows(manager: BrowserManager, node: int, statement: str) -> str:
    done = manager.sql(node, statement)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def flash_ok(page: Page) -> Locator:
    return page.locator("[data-testid=flash-ok] span").first


def flash_error(page: Page) -> Locator:
    return page.locator("[data-testid=flash-error] span").first


def picker_value(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_back_up_from_the_page_and_see_it_on_the_timeline(manager: BrowserManager,
                                                          gui: Gui, page: Page,
                                                          master: int) -> None:
    page.goto(gui.url + "/backups")
    expect(page.locator('nav a[aria-current="page"]')).to_have_text("Backups")
    expect(page.get_by_test_id("window-from")).to_contain_text("nothing restorable yet")
    page.get_by_test_id("backup-full").click()
    expect(flash_ok(page)).to_contain_text(f"started on node {master}")
    expect(page.locator("#busy")).to_be_visible()
    expect(flash_ok(page)).to_contain_text(f"from node {master} in", timeout=SLOW)
    expect(page.locator("#busy")).to_be_hidden()
    [backup] = manager.get("list_backups")["backups"]
    assert backup["state"] == "done" and backup["kind"] == "full"
    expect(flash_ok(page)).to_contain_text(f"Full backup {backup['id']} done: ")
    bar = page.locator(f'svg[data-testid=backup-timeline] rect[data-backup="{backup["id"]}"]')
    expect(bar).to_have_attribute("data-state", "done")
    expect(bar).to_have_class("bk kind-full bk-done")
    row = page.locator(f'tr[data-backup="{backup["id"]}"]')
    expect(row.get_by_test_id("backup-state")).to_have_text("done")
    expect(row.locator("td[data-label=node]")).to_have_text(str(master))
    expect(page.get_by_test_id("window-band")).to_be_visible()
    expect(page.get_by_test_id("window-to")).to_contain_text("UTC")


def test_verify_a_backup_from_the_page(manager: BrowserManager, gui: Gui, page: Page,
                                      master: int) -> None:
    [backup] = manager.get("list_backups")["backups"]
    page.goto(gui.url + "/backups")
    row = page.locator(f'tr[data-backup="{backup["id"]}"]')
    expect(row.get_by_test_id("backup-verified")).to_have_text("not verified")
    row.get_by_test_id("verify-backup").click()
    expect(flash_ok(page)).to_contain_text(f"started on node {master}")
    expect(flash_ok(page)).to_contain_text(f"Backup {backup['id']}: ok: 1 table sound",
                                           timeout=SLOW)
    expect(row.get_by_test_id("backup-verified")).to_have_attribute("data-verified", "ok")
    expect(row.get_by_test_id("backup-verified")).to_contain_text(f"on node {master}")
    [verified] = manager.get("list_backups")["backups"]
    assert verified["verified"]["ok"] is True and verified["verified"]["tables"] == 1


def test_restore_to_a_second_through_the_form(manager: BrowserManager, gui: Gui,
                                              page: Page, master: int) -> None:
    """Rows 4-6 are committed before the second chosen, rows 7-9 after it: the
    restored node holds 1-6."""
    rows(manager, master, "INSERT INTO app.t VALUES (4), (5), (6)")
    target = math.ceil(time.time()) + 1
    wait_until(lambda: time.time() > target + 1.5, 10, 0.1, "past the target second")
    rows(manager, master, "INSERT INTO app.t VALUES (7), (8), (9)")
    wait_until(lambda: (manager.get("list_backups")["restorable"]["to"] or 0) >= target + 1,
               60, 0.5, "the archive past the target second")

    page.goto(gui.url + "/backups")
    picker = page.get_by_test_id("restore-time")
    expect(picker).to_have_attribute("type", "datetime-local")
    before = manager.get("list_backups")["restorable"]["from"] - 3600
    page.evaluate("document.getElementById('restore-time').removeAttribute('min')")
    picker.fill(picker_value(before))
    page.get_by_test_id("restore-time-submit").click()  # the manager's words shown
    expect(flash_error(page)).to_contain_text("restorable from")
    assert not any(n["role"] == "restored" for n in manager.nodes())
    picker.fill(picker_value(target))
    page.get_by_test_id("restore-time-submit").click()
    shown = picker_value(target).replace("T", " ")
    expect(flash_ok(page)).to_contain_text(f"added to hold {shown} UTC")
    expect(page.locator("#busy")).to_be_visible()
    restored = next(n for n in manager.nodes() if n["role"] == "restored")
    node = restored["id"]
    expect(flash_ok(page)).to_contain_text(f"Node {node} holds {shown} UTC", timeout=SLOW)
    row = page.locator(f'tr[data-restore-node="{node}"]')
    expect(row).to_have_attribute("data-ok", "true")
    expect(row.get_by_test_id("restore-text")).to_contain_text("read-only")
    info = manager.get("get_node_info", serviceNodeId=node)["serviceNode"]
    assert info["state"] == "RUNNING" and info["restore"]["state"] == "done"
    assert rows(manager, node, "SELECT GROUP_CONCAT(id ORDER BY id) FROM app.t") == \
        "1,2,3,4,5,6"
    screenshot(page, "backups")


def test_the_page_fits_a_phone(manager: BrowserManager, gui: Gui, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(gui.url + "/backups")
        expect(page.get_by_test_id("backup-timeline")).to_be_visible()
        # nothing wider than the screen: the timeline scales, tables become cards
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        screenshot(page, "phone-backups")
    finally:
        context.close()


def test_delete_refused_while_an_incremental_needs_it_then_with_it(
        manager: BrowserManager, gui: Gui, page: Page, master: int) -> None:
    [full] = manager.get("list_backups")["backups"]
    page.goto(gui.url + "/backups")
    page.get_by_test_id("backup-incremental").click()
    expect(flash_ok(page)).to_contain_text("Incremental backup", timeout=SLOW)
    expect(flash_ok(page)).to_contain_text(" done: ", timeout=SLOW)
    incremental = next(b for b in manager.get("list_backups")["backups"]
                       if b["kind"] == "incremental")
    assert incremental["parent"] == full["id"]
    expect(page.locator(f'rect[data-backup="{incremental["id"]}"]')).to_have_class(
        "bk kind-incremental bk-done")
    expect(page.locator("svg[data-testid=backup-timeline] line.parent-link")).to_have_count(1)

    row = page.locator(f'tr[data-backup="{full["id"]}"]')
    row.get_by_test_id("delete-backup").click()
    expect(page.locator("#confirm")).to_contain_text(f"Delete backup {full['id']}")
    page.locator("#confirm-ok").click()
    expect(flash_error(page)).to_contain_text(f"needed by incremental(s) {incremental['id']}")
    assert len(manager.get("list_backups")["backups"]) == 2

    row.get_by_test_id("delete-with-incrementals").click()
    expect(page.locator("#confirm")).to_contain_text(incremental["id"])
    page.locator("#confirm-ok").click()
    expect(flash_ok(page)).to_have_text(f"Backups {incremental['id']}, {full['id']} deleted")
    expect(page.get_by_test_id("backups-table")).to_contain_text("No backups yet")
    assert manager.get("list_backups")["backups"] == []
