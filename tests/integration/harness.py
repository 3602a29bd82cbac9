"""A real manager (and through it real agents and mariadbd) for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from conpaassql.cloud.local import stop_node_processes
from conpaassql.errors import RemoteError
from conpaassql.layout import MYSQLD_SOCKET_FILE
from conpaassql.rpc.client import RpcClient, call_blocking
from conpaassql.rpc.tls import TlsFiles, client_context, dns_name, node_name

T = TypeVar("T")
_files = itertools.count()
_held: list[int] = []
REPO = Path(__file__).resolve().parents[2]
SUBNET_LOCKS = Path("/tmp/cq-subnets")


def claim_subnet() -> int:
    """A /24 of 127.0.N.0 that no other test process on this machine uses.

    The claim is an flock held until this process ends, so that test runs
    side by side never give two nodes the same address.
    """
    SUBNET_LOCKS.mkdir(exist_ok=True)
    for subnet in range(101, 250):
        descriptor = os.open(SUBNET_LOCKS / f"{subnet}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        _held.append(descriptor)
        return subnet
    raise RuntimeError("no free 127.0.N.0/24 left for a test manager")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.1,
               what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the thing polled may not be up yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


class Manager:
    """One manager process with its own state directory and address range."""

    def __init__(self, template_cache: Path, extra_config: str = "",
                 iaas: str | None = None, sections: str = "") -> None:
        """``iaas``: another ``[iaas]`` section (the local cloud by default);
        ``sections``: more sections after ``[manager]``."""
        self.state_dir = Path(tempfile.mkdtemp(prefix="cq-", dir="/tmp"))
        self.port = free_port()
        self.agents_port = free_port()
        self.subnet = claim_subnet()
        self.config_file = self.state_dir / "manager.cnf"
        local = ("[iaas]\nDRIVER = LOCAL\n"
                 f"LOCAL_ADDRESS_RANGE = 127.0.{self.subnet}.10-127.0.{self.subnet}.60\n"
                 f"LOCAL_TEMPLATE_CACHE = {template_cache}\n"
                 "LOCAL_MYSQL_OPTIONS = innodb_buffer_pool_size=32M\n")
        self.config_file.write_text(
            (iaas or local) +
            "[manager]\nprobe_interval = 0.5\ncloud_list_interval = 1\n"
            "heartbeat_interval = 2\nboot_timeout = 120\n"
            f"agents_port = {self.agents_port}\n" + extra_config + sections,
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/"
        self._service_id: str | None = None
        self._agent_urls: dict[int, str] = {}

    # -- process ------------------------------------------------------------

    def start(self) -> Manager:
        log = open(self.state_dir / "manager.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conpaassql", "manager", "-c", str(self.config_file),
             "-p", str(self.port), "--state-dir", str(self.state_dir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO,
        )
        log.close()
        info = wait_until(lambda: self.get("get_service_info"), timeout=30, what="manager up")
        self._service_id = str(info["service_id"])
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.process = None

    def close(self) -> None:
        """Stop everything this manager started, whatever state it is in."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
        nodes = self.state_dir / "nodes"
        if nodes.exists():
            for directory in nodes.iterdir():
                stop_node_processes(directory, grace=5)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- RPC ----------------------------------------------------------------

    @property
    def api_token(self) -> str | None:
        """The owner's API token (sent always; needed only with ``require_token``)."""
        path = self.state_dir / "secrets" / "api_token"
        return path.read_text().strip() if path.exists() else None

    def call(self, method: str, verb: str = "POST", **params: Any) -> Any:
        return call_blocking(self.url, method, params, verb=verb,  # type: ignore[arg-type]
                             token=self.api_token)

    def upload(self, method: str, field: str, path: Path, **params: Any) -> Any:
        """An UPLOAD of the file at ``path`` (streamed) as the form field ``field``."""

        async def send() -> Any:
            async with RpcClient(self.url, token=self.api_token) as client:
                with open(path, "rb") as handle:
                    return await client.upload_file(method, params, field, handle, path.name)

        return asyncio.run(send())

    def download(self, method: str, path: Path, **params: Any) -> int:
        """A streamed result written to ``path``; the number of bytes."""

        async def fetch() -> int:
            async with RpcClient(self.url, token=self.api_token) as client:
                with open(path, "wb") as handle:
                    return await client.download(method, params, handle)

        return asyncio.run(fetch())

    def get(self, method: str, **params: Any) -> Any:
        return self.call(method, "GET", **params)

    def post(self, method: str, **params: Any) -> Any:
        return self.call(method, "POST", **params)

    # -- views --------------------------------------------------------------

    def node(self, node_id: int) -> dict[str, Any]:
        return self.get("get_node_info", serviceNodeId=node_id)["serviceNode"]

    def nodes(self) -> list[dict[str, Any]]:
        return self.get("list_nodes")["nodes"]

    def wait_running(self, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            nodes = self.nodes()
            running = [n for n in nodes if n["state"] == "RUNNING"]
            return running if len(running) == count and len(nodes) == count else None

        return wait_until(check, timeout, 0.2, f"{count} nodes RUNNING")

    def wait_service(self, state: str, timeout: float = 60.0) -> dict[str, Any]:
        return wait_until(lambda: (info := self.get("get_service_info"))["state"] == state
                          and info, timeout, 0.2, f"service {state}")

    def wait_topology(self, count: int, timeout: float = 180.0) -> tuple[int, list[int]]:
        """Wait for one master and ``count - 1`` slaves replicating from it."""

        def check() -> tuple[int, list[int]] | None:
            listed = self.get("list_nodes")
            if len(listed["masters"]) != 1 or len(listed["slaves"]) != count - 1:
                return None
            if sum(1 for n in listed["nodes"] if n["state"] == "RUNNING") != count:
                return None
            for slave in listed["slaves"]:
                seen = self.node(slave)["replication"]
                if seen["io_running"] != "Yes" or seen["sql_running"] != "Yes" \
                        or seen["copying"]:
                    return None
            return listed["masters"][0], sorted(listed["slaves"])

        return wait_until(check, timeout, 0.3, f"1 master and {count - 1} slaves")

    def sync_slaves(self, master: int, slaves: list[int], timeout: int = 120) -> str:
        """Wait until every slave has applied all the master has; the position."""
        answer = self.sql(master, "SELECT @@global.gtid_binlog_pos")
        assert answer.returncode == 0, answer.stderr
        position = answer.stdout.strip()
        for slave in slaves:
            done = self.sql(slave, f"SELECT MASTER_GTID_WAIT('{position}', {timeout})")
            assert done.stdout.strip() == "0", (slave, position, done.stderr)
        return position

    @property
    def root_password(self) -> str:
        return (self.state_dir / "secrets" / "root_password").read_text().strip()

    @property
    def service_id(self) -> str:
        if self._service_id is None:
            self._service_id = str(self.get("get_service_info")["service_id"])
        return self._service_id

    @property
    def ca_file(self) -> Path:
        """The service's CA: the servers' certificates come from it."""
        return self.state_dir / "pki" / "ca.crt"

    @property
    def manager_tls(self) -> TlsFiles:
        pki = self.state_dir / "pki"
        return TlsFiles(pki / "manager.crt", pki / "manager.key", pki / "ca.crt")

    def agent_url(self, node_id: int) -> str:
        """The node's agent (remembered: a node keeps its address)."""
        if node_id not in self._agent_urls:
            node = self.node(node_id)
            self._agent_urls[node_id] = f"https://{node['ip']}:{node['agent_port']}/"
        return self._agent_urls[node_id]

    def agent_client(self, node_id: int, **options: Any) -> RpcClient:
        """An RPC client to the node's agent, as the manager calls it (mutual TLS)."""
        return RpcClient(self.agent_url(node_id), token=self.agent_secret,
                         verify=client_context(self.manager_tls),
                         server_name=dns_name(self.service_id, node_name(node_id)), **options)

    def agent_call(self, node_id: int, method: str, params: dict[str, Any] | None = None,
                   verb: str = "POST", timeout: float = 120) -> Any:
        return call_blocking(self.agent_url(node_id), method, params,
                             verb=verb,  # type: ignore[arg-type]
                             token=self.agent_secret, timeout=timeout,
                             verify=client_context(self.manager_tls),
                             server_name=dns_name(self.service_id, node_name(node_id)))

    @property
    def agent_secret(self) -> str:
        return (self.state_dir / "secrets" / "agent_secret").read_text().strip()

    def node_dir(self, node_id: int) -> Path:
        return self.state_dir / "nodes" / f"n{node_id}"

    def sql(self, node_id: int, statement: str, user: str = "root", password: str | None = None,
            tcp: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``statement`` with the real mariadb client, on the node's socket by default
        (root may log in only from the node itself), over TCP when ``tcp`` is given."""
        socket_path = self.node_dir(node_id) / MYSQLD_SOCKET_FILE
        # Over TCP the servers speak only TLS, their certificates from the service's CA.
        where = ["-h", tcp[0], "-P", str(tcp[1]), "--ssl", f"--ssl-ca={self.ca_file}"] \
            if tcp else ["-S", str(socket_path)]
        defaults = self.defaults_file(user, password)
        try:
            return subprocess.run(
                ["mariadb", f"--defaults-extra-file={defaults}", *where,
                 "--batch", "--skip-column-names", "-e", statement],
                capture_output=True, text=True, timeout=30, check=False,
            )
        finally:
            with contextlib.suppress(OSError):
                defaults.unlink()

    def defaults_file(self, user: str = "root", password: str | None = None) -> Path:
        """A client option file (mode 0600) so that no password is on a command line."""
        defaults = self.state_dir / f"client-{os.getpid()}-{next(_files)}.cnf"
        secret = self.root_password if password is None else password
        escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
        descriptor = os.open(defaults, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f'[client]\nuser={user}\npassword="{escaped}"\n')
        return defaults


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def rpc_error(call: Callable[[], Any]) -> str:
    """The error text of a call that must fail with an error reply."""
    try:
        result = call()
    except RemoteError as exc:
        return str(exc)
    raise AssertionError(f"expected an error reply, got {result!r:.300}")


class Partition:
    """Cuts a node's address off the network with nftables: every packet from or to
    it is dropped (its unix sockets and its processes stay as they are)."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.table = f"cq_partition_{os.getpid()}_{ip.replace('.', '_')}"
        nft = shutil.which("nft")
        if nft is None:
            raise AssertionError("the partition tests need nft (nftables): "
                                 "scripts/bootstrap.sh installs it when run as root")
        self.nft = nft
        self.cut = False

    def _run(self, *args: str) -> None:
        subprocess.run([self.nft, *args], check=True, capture_output=True, timeout=10)

    def __enter__(self) -> Partition:
        self._run("add", "table", "ip", self.table)
        try:
            for hook in ("input", "output"):
                self._run("add", "chain", "ip", self.table, hook,
                          f"{{ type filter hook {hook} priority 0 ; }}")
                for where in ("saddr", "daddr"):
                    self._run("add", "rule", "ip", self.table, hook, "ip", where, self.ip,
                              "drop")
        except BaseException:
            self.heal()
            raise
        self.cut = True
        return self

    def heal(self) -> None:
        subprocess.run([self.nft, "delete", "table", "ip", self.table], check=False,
                       capture_output=True, timeout=10)
        self.cut = False

    def __exit__(self, *exc: object) -> None:
        self.heal()
