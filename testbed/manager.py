"""A real manager process (and through it real agents and mariadbd), as the tests
and the benchmarks start it: its own state directory, ports and 127.0.N.0/24 of
node addresses, its RPC calls, the paths of its nodes, and its cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from conpaassql.client import native_dump
from conpaassql.cloud.local import port_free, read_pid, stop_node_processes
from conpaassql.files import write_private
from conpaassql.layout import AGENT_PID_FILE, MYSQLD_PID_FILE, MYSQLD_SOCKET_FILE
from conpaassql.rpc import transfer
from conpaassql.rpc.client import RpcClient, call_blocking, read_chunks

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
SUBNET_LOCKS = Path("/tmp/cq-subnets")
SUBNETS = range(101, 250)
_claims: list[SubnetClaim] = []


class HarnessError(AssertionError):
    """What the harness waited for did not happen (a timeout, a process that exited)."""


def wait_until(check: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1,
               what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy. Its exceptions mean 'not yet',
    but for ``HarnessError``, which ends the wait; ``HarnessError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except HarnessError:
            raise
        except Exception as exc:  # what is polled may not be up yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:g}s waiting for {what}; last seen: {last!r}")


#: Where ``free_port`` picks: below the kernel's ephemeral ports (32768-60999 here).
PICKED_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port free on 127.0.0.1 now, below the ephemeral range: a port the kernel hands
    out (``bind(0)``) may be taken by any outgoing connection's source before the
    manager binds it."""
    for _ in range(1000):
        port = random.choice(PICKED_PORTS)
        if port_free("127.0.0.1", port):
            return port
    raise HarnessError(f"no free port in {PICKED_PORTS}")


class SubnetClaim:
    """A 127.0.N.0/24 nobody else on this machine uses, held (flock) until released,
    so that test runs and benchmarks side by side never hand out the same address."""

    def __init__(self, wanted: int | None = None) -> None:
        self.descriptor: int | None = None
        SUBNET_LOCKS.mkdir(exist_ok=True)
        for subnet in ([wanted] if wanted is not None else list(SUBNETS)):
            descriptor = os.open(SUBNET_LOCKS / f"{subnet}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(descriptor)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                continue
            if all(port_free(f"127.0.{subnet}.{host}", port)
                   for host in (10, 11) for port in (3306, 60000)):
                self.descriptor = descriptor
                self.subnet = subnet
                return
            os.close(descriptor)
        raise HarnessError(f"no free 127.0.N.0/24 (tried {wanted or 'the test range'})")

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> SubnetClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_subnet() -> int:
    """A subnet claimed until this process ends."""
    claim = SubnetClaim()
    _claims.append(claim)
    return claim.subnet


def local_cloud(subnet: int, template_cache: Path, mysql_options: str | None = None) -> str:
    """The ``[iaas]`` section of the local cloud on ``127.0.<subnet>.10-60``."""
    options = f"LOCAL_MYSQL_OPTIONS = {mysql_options}\n" if mysql_options else ""
    return ("[iaas]\nDRIVER = LOCAL\n"
            f"LOCAL_ADDRESS_RANGE = 127.0.{subnet}.10-127.0.{subnet}.60\n"
            f"LOCAL_TEMPLATE_CACHE = {template_cache}\n" + options)


def stop_child(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM ``process`` (the leader of its own session), SIGKILL its group if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(OSError):
            process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait(timeout=10)
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)


def write_defaults(path: Path, password: str, user: str = "root") -> Path:
    """A client option file (mode 0600), so that no password is on a command line."""
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    write_private(path, f'[client]\nuser={user}\npassword="{escaped}"\n')
    return path


async def _within(work: Any, deadline: float | None, what: str) -> Any:
    try:
        return await asyncio.wait_for(work, deadline)
    except TimeoutError:
        raise HarnessError(f"{what} took over {deadline:g}s") from None


class Manager:
    """One manager process: ``iaas`` is its cloud section, ``manager_options`` (and any
    sections after them) follow its ``[manager]`` section."""

    def __init__(self, state_dir: Path, iaas: str, manager_options: str = "") -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.agents_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config_file = state_dir / "manager.cnf"
        self.config_file.write_text(
            f"{iaas}[manager]\nagents_port = {self.agents_port}\n{manager_options}",
            encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None
        self._service_id: str | None = None

    # -- process ------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        with open(self.state_dir / "manager.out", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conpaassql", "manager", "-c", str(self.config_file),
                 "-p", str(self.port), "--state-dir", str(self.state_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                start_new_session=True,
            )

        def ready() -> dict[str, Any]:
            assert self.process is not None
            if self.process.poll() is not None:
                raise HarnessError(f"the manager exited with {self.process.returncode}; "
                                   f"see {self.state_dir / 'manager.out'}")
            return dict(self.get("get_service_info"))

        self._service_id = str(wait_until(ready, timeout, 0.1, "the manager")["service_id"])
        return self

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop the manager (SIGTERM, then SIGKILL); its nodes live on."""
        if self.process is not None:
            stop_child(self.process)
            self.process = None

    def close(self) -> None:
        """Stop the manager and every node it started, whatever state they are in."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None
        nodes = self.state_dir / "nodes"
        if nodes.exists():
            for directory in nodes.iterdir():
                stop_node_processes(directory, grace=5)

    # -- RPC ----------------------------------------------------------------

    @property
    def api_token(self) -> str | None:
        """The owner's API token (sent always; needed only with ``require_token``)."""
        path = self.state_dir / "secrets" / "api_token"
        return path.read_text().strip() if path.exists() else None

    def call(self, method: str, verb: str = "POST", **params: Any) -> Any:
        return call_blocking(self.url, method, params, verb=verb,  # type: ignore[arg-type]
                             token=self.api_token)

    def get(self, method: str, **params: Any) -> Any:
        return self.call(method, "GET", **params)

    def post(self, method: str, **params: Any) -> Any:
        return self.call(method, "POST", **params)

    def upload(self, method: str, field: str, path: Path, **params: Any) -> Any:
        """An UPLOAD of the file at ``path`` (streamed) as the form field ``field``."""
        return self.timed_upload(method, field, path, **params)[0]

    def download(self, method: str, path: Path, **params: Any) -> int:
        """A streamed result written to ``path``; the number of bytes."""
        return self.timed_download(method, path, **params)[0]

    def timed_upload(self, method: str, field: str, path: Path, *,
                     deadline: float | None = None, direct: bool = False,
                     **params: Any) -> tuple[Any, float]:
        """``upload``, and its seconds (``HarnessError`` past ``deadline`` seconds).

        ``direct``: as conpaassql-client sends it, a dump straight to its node when
        the manager grants it; otherwise through the manager."""

        async def send() -> tuple[Any, float]:
            async with RpcClient(self.url, token=self.api_token) as client:
                with open(path, "rb") as handle:
                    started = time.perf_counter()
                    reply = await transfer.upload(client, method, params, field, path.name,
                                                  read_chunks(handle), direct=direct,
                                                  size=path.stat().st_size)
                    return reply, time.perf_counter() - started

        result: tuple[Any, float] = asyncio.run(
            _within(send(), deadline, f"{method} of {path.name}"))
        return result

    def timed_download(self, method: str, path: Path, *, deadline: float | None = None,
                       direct: bool = False, native: bool = False,
                       **params: Any) -> tuple[int, float]:
        """``download``, and its seconds (``HarnessError`` past ``deadline`` seconds);
        ``direct`` as in ``timed_upload``; ``native``: an ``sqldump`` made by this
        host's ``mariadb-dump`` as ``conpaassql-client`` makes it."""

        async def fetch() -> tuple[int, float]:
            async with RpcClient(self.url, token=self.api_token) as client:
                with open(path, "wb") as handle:
                    started = time.perf_counter()
                    if native:
                        made = await native_dump.dump_into(client, params, handle,
                                                           lambda _: None)
                        if made is None:
                            raise HarnessError("no dump made by mariadb-dump here")
                        return made, time.perf_counter() - started
                    size = 0
                    async with transfer.stream(client, method, params,
                                               direct=direct) as stream:
                        async for chunk in stream.chunks():
                            handle.write(chunk)
                            size += len(chunk)
                    return size, time.perf_counter() - started

        result: tuple[int, float] = asyncio.run(
            _within(fetch(), deadline, f"{method} into {path.name}"))
        return result

    # -- what it keeps --------------------------------------------------------

    @property
    def service_id(self) -> str:
        if self._service_id is None:
            self._service_id = str(self.get("get_service_info")["service_id"])
        return self._service_id

    def node(self, node_id: int) -> dict[str, Any]:
        return dict(self.get("get_node_info", serviceNodeId=node_id)["serviceNode"])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.get("list_nodes")["nodes"])

    def secret(self, name: str) -> str:
        """One of the service's generated secrets (``root_password``, ``agent_secret``...)."""
        return (self.state_dir / "secrets" / name).read_text().strip()

    @property
    def root_password(self) -> str:
        return self.secret("root_password")

    @property
    def agent_secret(self) -> str:
        return self.secret("agent_secret")

    @property
    def ca_file(self) -> Path:
        """The service's CA: the servers' certificates come from it."""
        return self.state_dir / "pki" / "ca.crt"

    def node_dir(self, node_id: int) -> Path:
        """The node's directory (the local cloud's ``<state dir>/nodes/n<id>``)."""
        return self.state_dir / "nodes" / f"n{node_id}"

    def socket_of(self, node_id: int) -> Path:
        return self.node_dir(node_id) / MYSQLD_SOCKET_FILE

    def agent_pid(self, node_id: int) -> int | None:
        return read_pid(self.node_dir(node_id) / AGENT_PID_FILE)

    def mysqld_pid(self, node_id: int) -> int | None:
        return read_pid(self.node_dir(node_id) / MYSQLD_PID_FILE)
