"""The front-end as a real process, a real manager beside it, and a headless Chromium."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.integration.harness import REPO, Manager, free_port, wait_until

T = TypeVar("T")
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
_worker = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="rpc")


def off_loop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``call`` in a worker thread: Playwright's sync API holds an event loop in
    this one, so ``asyncio.run`` (the harness's RPC calls) must run elsewhere."""
    return _worker.submit(call, *args, **kwargs).result()


class BrowserManager(Manager):
    """The harness's manager, its calls made off Playwright's event loop."""

    def call(self, method: str, verb: str = "POST", **params: Any) -> Any:
        return off_loop(super().call, method, verb, **params)

    def upload(self, method: str, field: str, path: Path, **params: Any) -> Any:
        return off_loop(super().upload, method, field, path, **params)

    def download(self, method: str, path: Path, **params: Any) -> int:
        return off_loop(super().download, method, path, **params)


def run_manager(template_cache: Path, extra_config: str) -> Iterator[BrowserManager]:
    """A started manager, for a fixture to yield from; closed after."""
    running = BrowserManager(template_cache, extra_config)
    try:
        running.start()
        yield running
    finally:
        running.close()


class Gui:
    """``python -m conpaassql gui`` for a manager, on a free port (reached on 127.0.0.1)."""

    def __init__(self, config: str, *, bind: str = "127.0.0.1", tls: bool = False,
                 extra: tuple[str, ...] = ()):
        self.directory = Path(tempfile.mkdtemp(prefix="cq-gui-", dir="/tmp"))
        self.config_file = self.directory / "manager-gui.conf"
        self.config_file.write_text(config, encoding="utf-8")
        self.port = free_port()
        self.bind = bind
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log_file = self.directory / "gui.log"
        self.args = [sys.executable, "-m", "conpaassql", "gui", "-c", str(self.config_file),
                     "-b", bind, "-p", str(self.port), *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Gui:
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, cwd=REPO)
        wait_until(lambda: httpx.get(self.url + "/login", timeout=5, verify=False).status_code
                   < 500,
                   timeout=30, what="the front-end up")
        return self

    @property
    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def csrf(self, client: httpx.Client, path: str = "/") -> str:
        """The CSRF token a page of ``client``'s session carries."""
        page = client.get(self.url + path, headers={"accept": "text/html"}).text
        found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
        assert found, page[:500]
        return found.group(1)


def config_for(manager: Manager) -> str:
    """A front-end configuration for the harness's manager, with its owner's token."""
    return (f"# the test manager\n[gui]\nMANAGER_HOST = '127.0.0.1'\n"
            f"MANAGER_PORT = {manager.port}\n"
            f"TOKEN_FILE = \"{manager.state_dir / 'secrets' / 'api_token'}\"\n")


def screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot in tests/browser/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def mariadb_login(manager: Manager, host: str, user: str, password: str,
                  statement: str = "SELECT CURRENT_USER()") -> subprocess.CompletedProcess[str]:
    """The real mariadb client over TLS (the server checked against the service's CA),
    the password in a defaults file, never on the command line."""
    defaults = manager.defaults_file(user, password)
    try:
        return subprocess.run(
            ["mariadb", f"--defaults-extra-file={defaults}", "--ssl",
             f"--ssl-ca={manager.ca_file}", "-h", host, "-P", "3306",
             "--batch", "--skip-column-names", "-e", statement],
            capture_output=True, text=True, timeout=30, check=False)
    finally:
        os.unlink(defaults)
