"""A long action's watch ends when a node it waits for fails, saying why.

A manager of its own, whose nodes must boot within 3 s: the test stops the new
node's agent (SIGSTOP) as soon as it starts, so that the node times out booting
and stays FAILED.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conpaassql.cloud.local import read_pid
from conpaassql.layout import AGENT_PID_FILE
from tests.browser.harness import BrowserManager, Gui, run_manager
from tests.integration.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLOW = 90_000  # ms


@pytest.fixture(scope="module")
def manager(template_cache: Path) -> Iterator[BrowserManager]:
    yield from run_manager(template_cache, "require_token = true\nboot_timeout = 3\n")


def failed_because(manager: BrowserManager, node_id: int) -> str | None:
    """The reason the manager gave for the node's move to FAILED, once it has."""
    history = manager.get("get_service_history", serviceNodeId=node_id)["history"]
    return next((entry["message"] for entry in reversed(history)
                 if entry["to"] == "FAILED"), None)


def test_a_node_that_stays_failed_ends_the_watch_with_its_reason(
        manager: BrowserManager, gui: Gui, page: Page) -> None:
    page.goto(gui.url + "/nodes")
    page.get_by_test_id("add-count").fill("1")
    page.get_by_test_id("add-nodes").click()
    busy = page.locator("#busy")
    expect(busy).to_be_visible()
    expect(page.locator("[data-testid=flash-ok] span").first).to_have_text(
        "Node 1 requested")
    agent = wait_until(lambda: read_pid(manager.node_dir(1) / AGENT_PID_FILE),
                       timeout=60, interval=0.02, what="node 1's agent started")
    os.kill(agent, signal.SIGSTOP)
    try:
        reason = wait_until(lambda: failed_because(manager, 1), timeout=60,
                            what="node 1 FAILED")
        expect(page.locator('tr[data-node="1"]')).to_have_attribute("data-state", "FAILED",
                                                                    timeout=SLOW)
        expect(page.locator("[data-testid=flash-error] span").first).to_have_text(
            f"Node 1 failed: {reason}", timeout=SLOW)
        expect(busy).to_be_hidden()
        assert manager.nodes()[0]["state"] == "FAILED"
    finally:
        os.kill(agent, signal.SIGCONT)
