"""The front-end bound beyond loopback: TLS, and a login with an API token of the
manager, whose answers (a read-only token's refusals included) the user sees."""

from __future__ import annotations

import datetime
import ipaddress
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Browser, expect

from conpaassql.rpc.client import call_blocking
from tests.browser.harness import BrowserManager, Gui, config_for, off_loop, screenshot
from tests.integration.harness import REPO, rpc_error

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the front-end's own, for the test)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conpaassql gui test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "gui.crt", directory / "gui.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


@pytest.fixture(scope="module")
def tls_gui(manager: BrowserManager, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gui]:
    """The front-end on every address, over TLS; the manager's token file is of no
    use to it there: each user logs in with a token of their own."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    running = Gui(config_for(manager) + f"GUI_CERT = {cert}\nGUI_KEY = {key}\n",
                  bind="0.0.0.0", tls=True)
    try:
        yield running.start()
    finally:
        running.close()


def replay(gui: Gui, cookie: str) -> httpx.Response:
    """A page asked for with nothing but ``cookie`` (not by the browser)."""
    return httpx.get(gui.url + "/nodes", headers={"accept": "text/html", "cookie": cookie},
                     verify=False, follow_redirects=False, timeout=30)


def read_only_token(manager: BrowserManager) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "conpaassql", "token", "new", "--read-only", "--label",
         "browser test", "--state-dir", str(manager.state_dir)],
        capture_output=True, text=True, check=True, cwd=REPO, timeout=30)
    return made.stdout.strip()


def test_log_in_with_a_token_and_see_the_managers_refusals(manager: BrowserManager,
                                                          tls_gui: Gui,
                                                          browser: Browser) -> None:
    unknown = rpc_error(lambda: off_loop(call_blocking, manager.url, "get_service_info",
                                         verb="GET", token="not-a-token"))
    reader = read_only_token(manager)
    forbidden = rpc_error(lambda: off_loop(call_blocking, manager.url, "create_database",
                                           {"database": "ro_db"}, token=reader))
    assert unknown.startswith("Not authorized") and forbidden.startswith("Forbidden")

    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280,
                                                                      "height": 900})
    try:
        page = context.new_page()
        page.goto(tls_gui.url + "/nodes")
        expect(page).to_have_url(tls_gui.url + "/login")
        screenshot(page, "login")
        page.locator("input[name=token]").fill("not-a-token")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_test_id("page-error")).to_have_text(unknown)
        assert not context.cookies()

        page.locator("input[name=token]").fill(reader)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(tls_gui.url + "/")
        expect(page.get_by_test_id("service-state")).not_to_have_text("unreachable")
        [cookie] = context.cookies()
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        # the cookie holds a session id; the token stays in the front-end
        assert cookie["name"] == "conpaassql_session"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie["value"])
        assert reader not in cookie["value"] and reader not in page.content()
        session = f"{cookie['name']}={cookie['value']}"
        assert replay(tls_gui, session).status_code == 200

        page.goto(tls_gui.url + "/users")
        page.get_by_test_id("new-database-name").fill("ro_db")
        page.get_by_test_id("create-database-submit").click()
        expect(page.locator("[data-testid=flash-error] span").first).to_have_text(forbidden)

        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(tls_gui.url + "/login")
        assert not context.cookies()
        # the session ended in the front-end too: its id alone is worth nothing now
        ended = replay(tls_gui, session)
        assert ended.status_code == 303 and ended.headers["location"] == "/login?ended=1"
        page.goto(tls_gui.url + "/users")
        expect(page).to_have_url(tls_gui.url + "/login")
    finally:
        context.close()
    assert reader not in tls_gui.log and "not-a-token" not in tls_gui.log


def test_the_owner_token_may_act_up_to_a_shutdown(manager: BrowserManager, tls_gui: Gui,
                                 browser: Browser) -> None:
    owner = manager.api_token
    assert owner is not None
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(tls_gui.url + "/login")
        page.locator("input[name=token]").fill(owner)
        page.get_by_role("button", name="Log in").click()
        page.goto(tls_gui.url + "/nodes")
        page.get_by_test_id("add-nodes").click()
        expect(page.locator('tr[data-node="1"]')).to_have_attribute("data-state", "RUNNING",
                                                                     timeout=90_000)
        page.goto(tls_gui.url + "/")
        page.get_by_role("button", name="Shut down…").click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#busy")).to_contain_text("waiting for STOPPED")
        expect(page.get_by_test_id("service-state")).to_have_text("STOPPED", timeout=90_000)
        expect(page.locator("[data-testid=flash-ok] span").first).to_have_text(
            "The service is STOPPED", timeout=90_000)
    finally:
        context.close()
    assert owner not in tls_gui.log
