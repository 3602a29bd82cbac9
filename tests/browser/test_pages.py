"""The front-end in Chromium against a real manager with real nodes.

One manager serves the module: it starts with one node (the master); the first
test adds two more through the page, and the later ones use the three of them
(the tests run in this file's order, so that the overview shows what the earlier
ones did; the last one removes a node).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pymysql
import pytest
from playwright.sync_api import Browser, Page, expect

from conpaassql.layout import MYSQLD_SOCKET_FILE
from tests.browser.harness import BrowserManager, Gui, mariadb_login, screenshot
from tests.integration.harness import rpc_error

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLOW = 90_000  # ms: nodes booting, copies, loads


@pytest.fixture(scope="module", autouse=True)
def first_node(manager: BrowserManager) -> None:
    manager.post("add_nodes", count=1)
    manager.wait_topology(1)


def topology(manager: BrowserManager, count: int = 3) -> tuple[int, list[int]]:
    """At least ``count`` nodes, one master and slaves replicating from it."""
    live = len(manager.nodes())
    if live < count:
        manager.post("add_nodes", count=count - live)
    return manager.wait_topology(count)


def flash_ok(page: Page) -> object:
    return page.locator("[data-testid=flash-ok] span").first


def flash_error(page: Page) -> object:
    return page.locator("[data-testid=flash-error] span").first


def writer_ip(manager: BrowserManager) -> str:
    return str(manager.get("get_service_info")["writer"]["ip"])


class Load:
    """Queries on every running node (root on its unix socket) and writes on the
    master, so that the charts have something to draw."""

    def __init__(self, manager: BrowserManager) -> None:
        self.manager = manager
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        master = self.manager.get("get_service_info")["master"]["id"]
        self._query(master, "CREATE DATABASE IF NOT EXISTS load_gen; CREATE TABLE IF NOT "
                    "EXISTS load_gen.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        for node in self.manager.nodes():
            writes = node["id"] == master
            thread = threading.Thread(target=self._run, args=(node["id"], writes), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _connect(self, node_id: int) -> pymysql.connections.Connection:
        socket = self.manager.node_dir(node_id) / MYSQLD_SOCKET_FILE
        return pymysql.connect(unix_socket=str(socket), user="root",
                               password=self.manager.root_password, autocommit=True)

    def _query(self, node_id: int, statements: str) -> None:
        with self._connect(node_id) as connection, connection.cursor() as cursor:
            for statement in statements.split(";"):
                cursor.execute(statement)

    def _run(self, node_id: int, writes: bool) -> None:
        rate = random.Random(node_id)
        with self._connect(node_id) as connection, connection.cursor() as cursor:
            while not self.stop.is_set():
                for _ in range(rate.randint(5, 40)):
                    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST")
                if writes:
                    cursor.execute("INSERT INTO load_gen.t (v) VALUES (%s)", (rate.randint(0, 9),))
                time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def make_dump(path: Path, tables: int = 3, rows: int = 12_000) -> int:
    """A plain-SQL dump of ``tables`` tables, a few MB, so that the upload takes a while."""
    with open(path, "w", encoding="utf-8") as out:
        for table in range(1, tables + 1):
            out.write(f"DROP TABLE IF EXISTS t{table};\nCREATE TABLE t{table} (id INT PRIMARY "
                      "KEY, name VARCHAR(64), note TEXT) ENGINE=InnoDB;\n")
            for start in range(0, rows, 500):
                values = ",".join(
                    f"({i},'name-{i}','{f'note-{i} ' * 8}')"
                    for i in range(start + 1, min(start + 500, rows) + 1))
                out.write(f"INSERT INTO t{table} VALUES {values};\n")
    return path.stat().st_size


def test_add_nodes_and_watch_them_reach_running(manager: BrowserManager, gui: Gui,
                                                 page: Page) -> None:
    page.goto(gui.url + "/nodes")
    expect(page.locator('tr[data-node="1"]')).to_have_attribute("data-state", "RUNNING")
    page.evaluate("window.notReloaded = true")
    page.get_by_test_id("add-count").fill("2")
    page.get_by_test_id("add-nodes").click()
    busy = page.locator("#busy")
    expect(busy).to_be_visible()
    expect(flash_ok(page)).to_have_text("Nodes 2, 3 requested")
    for node in (2, 3):
        row = page.locator(f'tr[data-node="{node}"]')
        expect(row).to_have_attribute("data-state", "RUNNING", timeout=SLOW)
        expect(row.get_by_test_id("role")).to_have_text("slave", timeout=SLOW)
        expect(row.get_by_test_id("mysql")).to_have_text("yes")
    expect(busy).to_be_hidden(timeout=SLOW)
    expect(flash_ok(page)).to_have_text("Nodes 2, 3 running")
    expect(page.locator('tr[data-node="1"] [data-testid=role]')).to_have_text("master")
    assert page.evaluate("window.notReloaded") is True  # the table changed on its own
    screenshot(page, "nodes")


def test_create_users_and_log_in_with_them(manager: BrowserManager, gui: Gui,
                                          page: Page) -> None:
    topology(manager)
    ip = writer_ip(manager)
    page.goto(gui.url + "/users")
    page.get_by_test_id("new-database-name").fill("shop")
    page.get_by_test_id("create-database-submit").click()
    expect(flash_ok(page)).to_contain_text("Database shop created")
    expect(page.locator('tr[data-database="shop"]')).to_be_visible()

    form = page.get_by_test_id("create-user")
    form.get_by_test_id("new-username").fill("alice")
    form.get_by_test_id("new-user-database").fill("shop")
    form.get_by_test_id("password").fill("Alice-pw-1")
    form.get_by_test_id("password2").fill("Alice-pw-1")
    form.get_by_test_id("create-user-submit").click()
    expect(flash_ok(page)).to_have_text("User alice@% created on shop")
    expect(page.locator('tr[data-user="alice@%"]')).to_be_visible()
    logged = mariadb_login(manager, ip, "alice", "Alice-pw-1")
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.strip() == "alice@%"

    form.get_by_test_id("new-username").fill("bob")
    form.locator("[data-generate]").check()
    expect(form.get_by_test_id("password")).to_be_disabled()
    form.get_by_test_id("create-user-submit").click()
    expect(flash_ok(page)).to_have_text("User bob@% created")
    secret = page.get_by_test_id("secret-value")
    expect(secret).to_be_visible()
    generated = secret.inner_text()
    assert len(generated) >= 20
    logged = mariadb_login(manager, ip, "bob", generated)
    assert logged.returncode == 0, logged.stderr
    page.locator("#secret [data-dismiss]").click()
    expect(secret).to_be_hidden()
    assert generated not in page.content()  # shown once

    page.locator('tr[data-user="alice@%"] [data-open-dialog]').click()
    dialog = page.locator("#password-dialog")
    expect(dialog).to_contain_text("New password for alice@%")
    dialog.get_by_test_id("password").fill("Alice-pw-2")
    dialog.get_by_test_id("password2").fill("Alice-pw-2")
    dialog.get_by_test_id("set-password-submit").click()
    expect(flash_ok(page)).to_have_text("New password set for alice@%")
    expect(dialog).to_be_hidden()
    assert mariadb_login(manager, ip, "alice", "Alice-pw-2").returncode == 0
    refused = mariadb_login(manager, ip, "alice", "Alice-pw-1")
    assert refused.returncode != 0 and "Access denied" in refused.stderr
    screenshot(page, "users")
    for secret_text in ("Alice-pw-1", "Alice-pw-2", generated):
        assert secret_text not in gui.log


def test_upload_a_dump_with_progress_then_export_it(manager: BrowserManager, gui: Gui,
                                                     page: Page, tmp_path: Path) -> None:
    topology(manager)
    if not any(d["database"] == "shop" for d in
               manager.get("list_databases")["nodes"][0]["databases"]):
        manager.post("create_database", database="shop")
    dump = tmp_path / "shop.sql"
    size = make_dump(dump)
    assert size > 3_000_000
    page.goto(gui.url + "/data")
    page.get_by_test_id("upload-file").set_input_files(str(dump))
    page.get_by_test_id("upload-database").fill("shop")
    page.get_by_test_id("upload-submit").click()
    bar = page.get_by_test_id("upload-progress")
    expect(page.get_by_test_id("upload-text")).to_contain_text("MB/s", timeout=SLOW)
    expect(flash_ok(page)).to_contain_text("Loaded", timeout=SLOW)
    assert bar.evaluate("bar => bar.value === bar.max && bar.max > 0")
    expect(page.get_by_test_id("upload-text")).to_contain_text(
        f"{size / 1e6:.1f} MB of {size / 1e6:.1f} MB")
    expect(page.get_by_test_id("upload-text")).to_contain_text("100%")
    expect(page.locator('tr[data-database="shop"] [data-testid=tables]')).to_have_text("3")
    screenshot(page, "data")

    with page.expect_download() as started:
        page.locator('tr[data-database="shop"] a', has_text="Export").click()
    download = started.value
    assert download.suggested_filename.endswith(".sql")
    text = Path(download.path()).read_text(encoding="utf-8")
    assert "CREATE TABLE `t3`" in text and "'name-12000'" in text
    assert "THE DUMP FAILED" not in text


def test_promote_a_slave_and_see_the_roles_swap(manager: BrowserManager, gui: Gui,
                                                page: Page) -> None:
    master, slaves = topology(manager)
    target = slaves[0]
    page.goto(gui.url + "/nodes")
    page.locator(f'tr[data-node="{target}"]').get_by_test_id("promote").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Make node {target} the master?")
    page.locator("#confirm-ok").click()
    expect(flash_ok(page)).to_contain_text(f"Node {target} is the master (was node {master})",
                                           timeout=SLOW)
    expect(page.locator(f'tr[data-node="{target}"] [data-testid=role]')).to_have_text("master")
    expect(page.locator(f'tr[data-node="{master}"] [data-testid=role]')).to_have_text(
        "slave", timeout=SLOW)
    page.goto(gui.url + "/")
    expect(page.get_by_test_id("timeline").locator(".ev.k-switchover").first).to_contain_text(
        f"node {target} is the master")


def test_overview_shows_endpoints_charts_and_history(manager: BrowserManager, gui: Gui,
                                                      page: Page) -> None:
    _, slaves = topology(manager)
    ip = writer_ip(manager)
    with Load(manager):
        page.goto(gui.url + "/")
        command = page.get_by_test_id("writer-command")
        expect(command).to_have_text(f"mariadb --ssl -h {ip} -P 3306 -u USER -p")
        page.locator("#cmd-user").fill("alice")
        expect(command).to_have_text(f"mariadb --ssl -h {ip} -P 3306 -u alice -p")
        expect(page.get_by_test_id("reader-command")).to_have_count(len(slaves), timeout=SLOW)
        # A router registered: its two addresses come first, each with its line to copy.
        manager.post("register_router", name="app-host",
                     writer={"host": "127.0.0.2", "port": 3306},
                     readers={"host": "127.0.0.2", "port": 3307})
        page.goto(gui.url + "/")
        expect(page.get_by_test_id("endpoint-command")).to_have_text(
            [f"mariadb --ssl --ssl-ca=ca.crt -h 127.0.0.2 -P {port} -u USER -p"
             for port in (3306, 3307)])
        expect(page.get_by_test_id("service-state")).to_have_text("RUNNING")
        timeline = page.get_by_test_id("timeline")
        expect(timeline.locator(".ev.k-added")).to_have_count(3)
        expect(timeline.locator(".ev.k-master")).not_to_have_count(0)
        expect(timeline.locator(".ev.k-switchover")).not_to_have_count(0)
        expect(timeline.locator(".ev.k-data")).not_to_have_count(0)
        expect(page.get_by_test_id("topology").locator("g.node-box")).to_have_count(3)
        # a line per node once a few samples are in (the charts poll every 2 s)
        for chart, lines in (("qps", 3), ("connections", 3), ("lag", 2)):
            expect(page.locator(f'svg[data-chart="{chart}"] path.series')).to_have_count(
                lines, timeout=30_000)
        page.wait_for_function(
            "() => document.querySelector('svg[data-chart=qps] path.series')"
            ".getAttribute('d').split('L').length > 12", timeout=60_000)
        screenshot(page, "overview")


def test_manager_errors_are_shown_as_the_manager_words_them(manager: BrowserManager,
                                                           gui: Gui, page: Page,
                                                           tmp_path: Path) -> None:
    topology(manager)
    reserved = rpc_error(lambda: manager.post("configure_user", serviceNodeId="all",
                                              username="root", password="Root-pw-1"))
    system = rpc_error(lambda: manager.post("create_database", database="mysql"))
    page.goto(gui.url + "/users")
    form = page.get_by_test_id("create-user")
    form.get_by_test_id("new-username").fill("root")
    form.get_by_test_id("password").fill("Root-pw-1")
    form.get_by_test_id("password2").fill("Root-pw-1")
    form.get_by_test_id("create-user-submit").click()
    expect(flash_error(page)).to_have_text(reserved)
    page.get_by_test_id("new-database-name").fill("mysql")
    page.get_by_test_id("create-database-submit").click()
    expect(flash_error(page)).to_have_text(system)
    assert reserved.startswith("Invalid argument: username") and system.startswith(
        "Invalid argument: database")
    screenshot(page, "error")

    dump = tmp_path / "nowhere.sql"
    make_dump(dump, tables=1)
    nowhere = rpc_error(lambda: manager.upload("load_dump", "mysqldump_file", dump,
                                               database="nowhere"))
    page.goto(gui.url + "/data")
    page.get_by_test_id("upload-file").set_input_files(str(dump))
    page.get_by_test_id("upload-database").fill("nowhere")
    page.get_by_test_id("upload-submit").click()
    expect(flash_error(page)).to_have_text(nowhere, timeout=SLOW)
    assert nowhere.startswith("Invalid argument: database")


def test_a_phone_sized_screen_stays_usable(manager: BrowserManager, gui: Gui,
                                          browser: Browser) -> None:
    topology(manager)
    context = browser.new_context(viewport={"width": 375, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        for path, name in (("/", "overview"), ("/nodes", "nodes"), ("/users", "users"),
                           ("/data", "data"), ("/logs?node=1", "logs")):
            page.goto(gui.url + path)
            expect(page.locator("header nav a").first).to_be_visible()
            # nothing wider than the screen: tables become a card per row
            assert page.evaluate("document.documentElement.scrollWidth") <= 375, path
            screenshot(page, f"phone-{name}")
        page.goto(gui.url + "/nodes")
        rows = page.locator("tr[data-node]")
        expect(rows).to_have_count(3)
        for row in rows.all():
            for part in (row.get_by_test_id("state"), row.get_by_test_id("remove")):
                box = part.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.goto(gui.url + "/users")
        page.get_by_test_id("new-database-name").fill("from_a_phone")
        button = page.get_by_test_id("create-database-submit")
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        button.tap()
        expect(page.locator('tr[data-database="from_a_phone"]')).to_be_visible()
    finally:
        context.close()


def test_node_logs(manager: BrowserManager, gui: Gui, page: Page) -> None:
    topology(manager)
    page.goto(gui.url + "/nodes")
    page.locator('tr[data-node="1"] a', has_text="Logs").click()
    expect(page).to_have_url(f"{gui.url}/logs?node=1")
    expect(page.get_by_test_id("log")).not_to_be_empty()
    page.locator("select[name=which]").select_option("error")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("h1")).to_have_text("Node 1: error log")
    expect(page.get_by_test_id("log")).to_contain_text("mariadbd")
    screenshot(page, "logs")
    page.get_by_test_id("log-node").select_option("manager")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("log")).to_contain_text("manager of service")


def test_a_post_without_the_csrf_token_is_refused(manager: BrowserManager, gui: Gui) -> None:
    topology(manager)
    url = gui.url + "/act/create_database"
    with httpx.Client(timeout=30) as client:
        refused = client.post(url, data={"database": "csrf_less"})
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
        wrong = client.post(url, data={"database": "csrf_less"},
                            headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        token = gui.csrf(client)
        elsewhere = client.post(url, data={"database": "csrf_less"},
                                headers={"X-CSRF-Token": token,
                                         "Origin": "http://elsewhere.example"})
        assert elsewhere.status_code == 403
        assert client.post(gui.url + "/data/upload", content=b"DROP DATABASE shop;"
                           ).status_code == 403
        assert client.get(url).status_code == 405
        rebound = client.get(gui.url + "/", headers={"Host": "elsewhere.example"})
        assert rebound.status_code == 400
        proxied = client.get(gui.url + "/", headers={"X-Forwarded-For": "192.0.2.7"})
        assert proxied.status_code == 403 and "proxy" in proxied.json()["error"]
        names = [d["database"] for d in manager.get("list_databases")["nodes"][0]["databases"]]
        assert "csrf_less" not in names
        accepted = client.post(url, data={"database": "csrf_ok"},
                               headers={"X-CSRF-Token": token})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["message"].startswith("database csrf_ok created")


def test_remove_a_node(manager: BrowserManager, gui: Gui, page: Page) -> None:
    _, slaves = topology(manager)
    gone = slaves[-1]
    page.goto(gui.url + "/nodes")
    page.locator(f'tr[data-node="{gone}"]').get_by_test_id("remove").click()
    expect(page.locator("#confirm")).to_contain_text(f"Remove node {gone}?")
    page.locator("#confirm-ok").click()
    expect(page.locator("#busy")).to_be_visible()
    expect(page.locator(f'tr[data-node="{gone}"]')).to_have_count(0, timeout=SLOW)
    expect(flash_ok(page)).to_have_text(f"Node {gone} removed", timeout=SLOW)
    expect(page.locator("tr[data-node]")).to_have_count(len(slaves))

