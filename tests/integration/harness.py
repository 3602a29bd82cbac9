"""A real manager (and through it real agents and mariadbd) for the tests: the shared
harness (``testbed.manager``) with the views and tools the tests use."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conpaassql.errors import RemoteError
from conpaassql.rpc.client import RpcClient, call_blocking
from conpaassql.rpc.tls import TlsFiles, client_context, dns_name, node_name
from testbed.manager import (
    REPO,
    claim_subnet,
    free_port,
    local_cloud,
    wait_until,
    write_defaults,
)
from testbed.manager import Manager as BaseManager

__all__ = ["REPO", "Manager", "Partition", "claim_subnet", "free_port", "health_get",
           "process_alive", "rpc_error", "wait_until"]

_files = itertools.count()
#: Quick probes and heartbeats, so that the tests see changes soon.
TEST_OPTIONS = ("probe_interval = 0.5\ncloud_list_interval = 1\nheartbeat_interval = 2\n"
                "boot_timeout = 120\n")


class Manager(BaseManager):
    """One manager process with its own state directory and address range."""

    def __init__(self, template_cache: Path, extra_config: str = "",
                 iaas: str | None = None, sections: str = "") -> None:
        """``iaas``: another ``[iaas]`` section (the local cloud by default);
        ``sections``: more sections after ``[manager]``."""
        self.subnet = claim_subnet()
        local = local_cloud(self.subnet, template_cache, "innodb_buffer_pool_size=32M")
        super().__init__(Path(tempfile.mkdtemp(prefix="cq-", dir="/tmp")), iaas or local,
                         TEST_OPTIONS + extra_config + sections)
        self._agent_urls: dict[int, str] = {}

    def close(self) -> None:
        """Stop everything this manager started, whatever state it is in."""
        super().close()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- views --------------------------------------------------------------

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

    def sql(self, node_id: int, statement: str, user: str = "root", password: str | None = None,
            tcp: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``statement`` with the real mariadb client, on the node's socket by default
        (root may log in only from the node itself), over TCP when ``tcp`` is given."""
        socket_path = self.socket_of(node_id)
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
        return write_defaults(self.state_dir / f"client-{os.getpid()}-{next(_files)}.cnf",
                                     self.root_password if password is None else password, user)


def health_get(node: dict[str, Any], path: str,
               timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """``GET path`` on the node's plain-HTTP health port: (status, body)."""
    connection = http.client.HTTPConnection(node["ip"], node["health_port"], timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


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
    it is dropped (its unix sockets and its processes stay as they are), but for TCP to
    and from its port ``open_port`` if given (a health port its clients still reach)."""

    def __init__(self, ip: str, open_port: int | None = None) -> None:
        self.ip = ip
        self.open_port = open_port
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
                for where, port in (("daddr", "dport"), ("saddr", "sport")):
                    if self.open_port is not None:
                        self._run("add", "rule", "ip", self.table, hook, "ip", where, self.ip,
                                  "tcp", port, str(self.open_port), "accept")
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
