"""HAProxy as the router's child: its configuration, its process (master-worker
mode) and its runtime API (the admin socket).

Each backend has ``slots`` server lines, all in maintenance at start: the
writer's ``w<N>`` checked on ``/primary``, the readers' ``r<N>`` on
``/replica?max_lag=S`` (``&max_lag_tx=N`` if given) and, as the readers'
fallback, ``m<N>``, a backup server that tracks ``writer/w<N>``. Slot N of each
holds the same node.

More nodes than slots: ``grow`` writes the configuration again with more slots
and reloads HAProxy seamlessly (master-worker mode): the new worker takes the
listeners and, from a server-state file, every slot's address and state; the old
one serves its connections for ``OLD_WORKER_GRACE`` seconds at most, as it no
longer checks the nodes (a node losing its role would not have them cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from conpaassql.errors import ConpaasSQLError
from conpaassql.router.settings import Address, RouterSettings

log = logging.getLogger(__name__)
#: A slot's address while it holds no node (it is in maintenance then).
PLACEHOLDER = "127.0.0.1:1"
PR_SET_PDEATHSIG = 1
#: Seconds a worker replaced by a reload keeps its connections.
OLD_WORKER_GRACE = 30


class HAProxyError(ConpaasSQLError):
    """HAProxy refused its configuration, did not start, or refused a command."""

    template = "HAProxy: %s"


def _bind(address: Address) -> str:
    return f"bind {address}"


def config_text(settings: RouterSettings, admin_socket: Path, slots: int | None = None,
                state_file: Path | None = None, held: Collection[int] = ()) -> str:
    """The whole configuration, every slot empty and in maintenance, but for those
    ``held`` on a reload: their address and state come from ``state_file`` (a server
    leaving maintenance would count as up before its checks). ``slots``:
    ``settings.slots`` unless given."""
    numbers = range(1, (slots or settings.slots) + 1)

    def state(n: int) -> str:
        return "enabled" if n in held else "disabled"

    checks = settings.checks
    timing = f"inter {checks.inter_ms}ms fall {checks.fall} rise {checks.rise}"
    lines = [
        "# Written by conpaassql router; rewritten at each start.",
        "global",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        f"    hard-stop-after {OLD_WORKER_GRACE}s",
        *([f"    nbthread {settings.threads}"] if settings.threads else []),
        *([f"    server-state-file {state_file}"] if state_file else []),
        "defaults",
        *(["    load-server-state-from-file global"] if state_file else []),
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 8h",
        "    timeout server 8h",
        f"    timeout check {max(checks.inter_ms, 200)}ms",
        "frontend writer",
        f"    {_bind(settings.writer)}",
        "    default_backend writer",
        "frontend readers",
        f"    {_bind(settings.readers)}",
        "    default_backend readers",
        "backend writer",
        "    balance first",
        "    option httpchk GET /primary",
        "    http-check expect status 200",
        f"    default-server {timing} on-marked-down shutdown-sessions",
        *(f"    server w{n} {PLACEHOLDER} check port 1 {state(n)}" for n in numbers),
        "backend readers",
        "    balance leastconn",
        f"    option httpchk GET {checks.replica_path}",
        "    http-check expect status 200",
        f"    default-server {timing} on-marked-down shutdown-sessions",
    ]
    for n in numbers:
        lines.append(f"    server r{n} {PLACEHOLDER} check port 1"
                     f" on-marked-up shutdown-backup-sessions {state(n)}")
        if settings.reader_fallback:
            lines.append(f"    server m{n} {PLACEHOLDER} backup track writer/w{n} {state(n)}")
    return "\n".join(lines) + "\n"


def _die_with_parent() -> None:
    """In the child before exec: HAProxy gets SIGTERM if the router dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Paths:
    config: Path
    admin_socket: Path
    master_socket: Path
    log: Path
    state: Path

    @classmethod
    def under(cls, state_dir: Path) -> Paths:
        return cls(state_dir / "haproxy.cfg", state_dir / "haproxy.sock",
                   state_dir / "haproxy-master.sock", state_dir / "haproxy.log",
                   state_dir / "haproxy.state")


class HAProxy:
    """One HAProxy master process (and its worker) with its admin socket."""

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.paths = Paths.under(settings.state_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self.slots = settings.slots

    def write_config(self, held: Collection[int] | None = None) -> None:
        """Write and check the configuration; ``held``, on a reload: the slots whose
        state is taken from the server-state file."""
        state = None if held is None else self.paths.state
        self.paths.config.write_text(config_text(self.settings, self.paths.admin_socket,
                                                 self.slots, state, held or ()),
                                     encoding="utf-8")
        checked = subprocess.run([self.settings.haproxy, "-c", "-q", "-f",
                                  str(self.paths.config)],
                                 capture_output=True, text=True, timeout=30, check=False)
        if checked.returncode != 0:
            raise HAProxyError(_last_line(checked.stdout + checked.stderr))

    def start(self, timeout: float = 10.0) -> None:
        """Start HAProxy (every slot empty) and wait for its admin socket;
        ``HAProxyError`` if it exits."""
        self.write_config()
        for stale in (self.paths.admin_socket, self.paths.master_socket, self.paths.state):
            stale.unlink(missing_ok=True)
        with open(self.paths.log, "ab") as output:
            self.process = subprocess.Popen(
                [self.settings.haproxy, "-W", "-S", str(self.paths.master_socket),
                 "-f", str(self.paths.config)],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HAProxyError(f"exited with {self.process.returncode}: "
                                   f"{_last_line(self._log_tail())}")
            if self.paths.admin_socket.exists():
                return
            time.sleep(0.05)
        self.stop()
        raise HAProxyError(f"no admin socket after {timeout:g}s")

    @property
    def pids(self) -> list[int]:
        """The master's and its children's process ids (for the benchmark's figures)."""
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [self.process.pid, *map(int, children.read_text().split())]
        except OSError:
            return [self.process.pid]

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    async def grow(self, slots: int, held: Collection[int], timeout: float = 10.0) -> None:
        """Reload with ``slots`` slots, the slots ``held`` keeping their node and state;
        ``HAProxyError`` if the new worker does not take over in ``timeout`` s."""
        old_worker = await self.worker_pid()
        state = await self.command("show servers state")
        await asyncio.to_thread(self.paths.state.write_text, state + "\n", encoding="utf-8")
        before = self.slots
        self.slots = slots
        try:
            await asyncio.to_thread(self.write_config, held)  # it runs haproxy -c
            await self._master_command("reload")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(HAProxyError, OSError):
                    if await self.worker_pid() != old_worker:
                        return
                await asyncio.sleep(0.05)
        except BaseException:
            self.slots = before
            raise
        finally:
            self.paths.state.unlink(missing_ok=True)
        self.slots = before
        raise HAProxyError(f"no new worker {timeout:g}s after a reload")

    async def worker_pid(self) -> int:
        """The process id of the worker that holds the admin socket."""
        for line in (await self.command("show info")).splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "Pid":
                return int(value)
        raise HAProxyError("show info gave no Pid")

    async def _master_command(self, line: str) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self.paths.master_socket))
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def command(self, line: str) -> str:
        """One runtime API command; its answer (``HAProxyError`` if it is refused)."""
        reader, writer = await asyncio.open_unix_connection(str(self.paths.admin_socket))
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = (await asyncio.wait_for(reader.read(), 10)).decode(errors="replace")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        text = answer.strip()
        if _refused(text):
            raise HAProxyError(f"{line!r}: {_last_line(text)}")
        return text

    def _log_tail(self) -> str:
        try:
            return self.paths.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def _refused(answer: str) -> bool:
    lowered = answer.lower()
    return any(word in lowered for word in ("unknown command", "no such", "invalid",
                                            "require", "not found", "permission denied"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"

