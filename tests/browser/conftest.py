"""The browser tier: one real manager with real nodes and one front-end process per
module, one headless Chromium (the OS's) for the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BrowserManager,
    Gui,
    config_for,
    run_manager,
)

DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def manager(template_cache: Path) -> Iterator[BrowserManager]:
    """A manager that wants a token even on loopback (the front-end sends its own)."""
    yield from run_manager(template_cache, "require_token = true\n")


@pytest.fixture(scope="module")
def gui(manager: BrowserManager) -> Iterator[Gui]:
    running = Gui(config_for(manager))
    try:
        yield running.start()
    finally:
        running.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        f"the browser tests drive the OS's Chromium ({CHROMIUM}): scripts/bootstrap.sh "
        "installs it when run as root (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) with a desktop-sized window."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(30_000)
    opened = context.new_page()
    errors: list[Any] = []
    # a lambda: Playwright cannot take a builtin method as a handler
    opened.on("pageerror", lambda error: errors.append(error))  # noqa: PLW0108
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"script errors in the page: {errors}"
