"""The local cloud: a node is an agent process (and its mariadbd) on this machine.

Each node has a directory of its own under ``<state dir>/nodes`` and a loopback
address of its own from a configured range, so that, as on a VM, mysqld listens
on port 3306 and the agent on 60000 of the node's address. The agent is started
detached (its own session, re-parented to init): nodes outlive the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.config import LocalCloudConfig
from conpaassql.errors import CloudError, ConfigError
from conpaassql.files import write_private
from conpaassql.layout import AGENT_PID_FILE, MAX_SOCKET_PATH, MYSQLD_PID_FILE, MYSQLD_SOCKET_FILE

log = logging.getLogger(__name__)

NODE_FILE = "node.json"
CONTEXT_FILE = "context"
SPAWN_TIMEOUT = 30.0  # for setsid --fork to hand the agent over
KILL_WAIT = 5.0  # for SIGKILLed processes to be gone


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a zombie child is reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0:1]
    return state != ["Z"]


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class LocalDriver(CloudDriver):
    """Nodes as detached process groups on loopback addresses."""

    STATE_MAP = {"running": CloudNodeState.RUNNING, "stopped": CloudNodeState.STOPPED}

    def __init__(self, state_dir: Path, config: LocalCloudConfig,
                 cloud_name: str = "local", agent_command: list[str] | None = None) -> None:
        super().__init__(cloud_name)
        self.root = state_dir / "nodes"
        self.config = config
        self.template_dir = (config.template_cache or state_dir / "cache") / "datadir-template"
        self.agent_command = agent_command or [sys.executable, "-m", "conpaassql", "agent"]
        self._lock = asyncio.Lock()
        longest = self.root / "n999999" / MYSQLD_SOCKET_FILE
        if len(str(longest.absolute())) > MAX_SOCKET_PATH:
            raise ConfigError(str(state_dir), detail="state directory path too long for the "
                              "nodes' unix sockets; choose a shorter one")

    async def prepare(self) -> None:
        """Build the shared pre-initialised datadir in the background."""
        if not await asyncio.to_thread(self._make_dirs):
            return
        process = await asyncio.create_subprocess_exec(
            *self.agent_command, "--prepare-template", str(self.template_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            log.warning("could not prepare the datadir template: %s",
                        err.decode(errors="replace").strip()[-500:])

    def _make_dirs(self) -> bool:
        """Make the nodes' directory; whether the template is still to be built."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.template_dir.exists():
            return False
        self.template_dir.parent.mkdir(parents=True, exist_ok=True)
        return True

    def node_dir(self, ref: str) -> Path:
        if not (ref.startswith("n") and ref[1:].isdigit()):
            raise CloudError(f"no local node {ref!r}")
        return self.root / ref

    async def create_node(self, request: NodeRequest) -> CloudNode:
        async with self._lock:
            ref = f"n{request.node_id}"
            directory = self.node_dir(ref)
            ip = await asyncio.to_thread(self._make_node_dir, request, directory)
            await self._spawn_agent(directory, directory / CONTEXT_FILE)
        log.info("local node %s started on %s", ref, ip)
        return CloudNode(ref, request.node_id, request.name, ip, CloudNodeState.PENDING)

    def _make_node_dir(self, request: NodeRequest, directory: Path) -> str:
        """Pick the node's address and write its directory (blocking: in a thread)."""
        if directory.exists():
            raise CloudError(f"local node {directory.name} exists already")
        ip = self._free_address()
        directory.mkdir(parents=True, mode=0o700)
        context = replace(request.context, ip=ip, data_dir=str(directory),
                          template_dir=str(self.template_dir),
                          mysql_options={**self.config.mysql_options,
                                         **request.context.mysql_options})
        record = {"node_id": request.node_id, "name": request.name, "ip": ip,
                  "created_at": time.time()}
        (directory / NODE_FILE).write_text(json.dumps(record), encoding="utf-8")
        write_private(directory / CONTEXT_FILE, context.render())
        return ip

    async def _spawn_agent(self, directory: Path, context_path: Path) -> None:
        # setsid --fork: the agent leads its own session and is re-parented to
        # init at once, so it neither dies with the manager nor leaves a zombie.
        launcher = shutil.which("setsid") or "/usr/bin/setsid"
        output = await asyncio.to_thread(open, directory / "agent.out", "ab")
        try:
            process = await asyncio.create_subprocess_exec(
                launcher, "--fork", *self.agent_command, "--context", str(context_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                cwd=directory)
        finally:
            output.close()
        try:
            code = await asyncio.wait_for(process.wait(), SPAWN_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            code = None
        if code != 0:
            raise CloudError(f"could not start the agent of {directory.name}")

    def _free_address(self) -> str:
        used = {record.get("ip") for record in self._records().values()}
        address = self.config.first_address
        while address <= self.config.last_address:
            text = str(address)
            if text not in used and all(port_free(text, port) for port in (3306, 60000)):
                return text
            address = ipaddress.IPv4Address(int(address) + 1)
        raise CloudError("no free loopback address left in LOCAL_ADDRESS_RANGE")

    def _records(self) -> dict[str, dict[str, object]]:
        records: dict[str, dict[str, object]] = {}
        if not self.root.exists():
            return records
        for directory in self.root.iterdir():
            try:
                records[directory.name] = json.loads(
                    (directory / NODE_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                records[directory.name] = {}
        return records

    async def list_nodes(self) -> list[CloudNode]:
        return await asyncio.to_thread(self._list_nodes)

    def _list_nodes(self) -> list[CloudNode]:
        nodes = []
        for ref, record in self._records().items():
            pid = read_pid(self.root / ref / AGENT_PID_FILE)
            running = pid is not None and pid_alive(pid)
            node_id = record.get("node_id")
            nodes.append(CloudNode(
                ref=ref,
                node_id=node_id if isinstance(node_id, int) else None,
                name=str(record.get("name", ref)),
                ip=str(record["ip"]) if record.get("ip") else None,
                state=self.map_state("running" if running else "stopped"),
                extra={"agent_pid": pid},
            ))
        return nodes

    async def destroy_node(self, ref: str) -> None:
        directory = self.node_dir(ref)
        if not await asyncio.to_thread(directory.exists):
            return
        # Its data is thrown away: no graceful stop, the processes are killed.
        await asyncio.to_thread(kill_node_processes, directory)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        log.info("local node %s destroyed", ref)

    async def reboot_node(self, ref: str) -> None:
        directory = self.node_dir(ref)
        if not await asyncio.to_thread(directory.exists):
            raise CloudError(f"no local node {ref!r}")
        await asyncio.to_thread(stop_node_processes, directory, 0.0)
        async with self._lock:
            await self._spawn_agent(directory, directory / CONTEXT_FILE)
        log.info("local node %s powered off and booted again", ref)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "address_range":
                f"{self.config.first_address}-{self.config.last_address}"}


def port_free(ip: str, port: int) -> bool:
    """True if nothing listens on ``ip:port`` (so a node may use it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


def _node_processes(directory: Path) -> tuple[list[int], set[int]]:
    """The node's agent and mariadbd pids, and their process groups."""
    pids = [pid for pid in (read_pid(directory / AGENT_PID_FILE),
                            read_pid(directory / MYSQLD_PID_FILE)) if pid]
    groups = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(pid))
    return pids, groups


def _kill(pids: list[int], groups: set[int]) -> None:
    """SIGKILL the groups (never ours) and whatever of ``pids`` is left."""
    for group in groups:
        if group > 1 and group != os.getpgrp():
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], seconds: float, step: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in pids):
        time.sleep(step)


def stop_node_processes(directory: Path, grace: float = 15.0) -> None:
    """Stop a node's agent (its whole process group) and its mariadbd."""
    pids, groups = _node_processes(directory)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    _wait_gone(pids, grace, 0.05)
    _kill(pids, groups)


def kill_node_processes(directory: Path, wait: float = KILL_WAIT) -> None:
    """Kill a node's agent and mariadbd at once (SIGKILL, their process group too)
    and wait, ``wait`` seconds at most, until they are gone: for a node whose data
    is thrown away, which needs neither mariadbd's shutdown nor the agent's.
    """
    pids, groups = _node_processes(directory)
    _kill(pids, groups)
    _wait_gone(pids, wait, 0.01)
