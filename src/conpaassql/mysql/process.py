"""Starting, watching, adopting and stopping one mariadbd."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from conpaassql.errors import MySQLError
from conpaassql.logs import tail_lines
from conpaassql.mysql.binaries import SERVER, find_binary
from conpaassql.mysql.connection import ConnectInfo, execute, probe_info
from conpaassql.mysql.datadir import remove_init_file
from conpaassql.mysql.paths import ServerPaths

log = logging.getLogger(__name__)

SERVER_NAMES = frozenset({"mariadbd", "mysqld"})

#: Server error codes that mean "it is up, but will never let us in".
_FATAL_LOGIN_ERRORS = frozenset({1045, 1698})

_TAIL_BYTES = 64 * 1024


class MariaDBProcess:
    """One mariadbd configured by ``paths.cnf``, reached as root through ``info``."""

    def __init__(self, paths: ServerPaths, info: ConnectInfo) -> None:
        self.paths = paths
        self.info = info
        self._init_file_pending = False

    def command(self, *, use_init_file: bool = False) -> list[str]:
        """The server's command line: paths only, never a secret."""
        args = [find_binary(*SERVER), f"--defaults-file={self.paths.cnf}"]
        if use_init_file:
            args.append(f"--init-file={self.paths.init_file}")
        return args

    async def start(self, *, use_init_file: bool = False) -> asyncio.subprocess.Process:
        """Spawn mariadbd as our child (same session), its output appended to the error log.

        ``use_init_file`` runs ``paths.init_file`` once at startup (first boot);
        ``wait_ready`` deletes it when the server is up.
        """
        running = self.running_pid()
        if running is not None:
            raise MySQLError(
                f"a server is already running on {self.paths.datadir}", detail=f"pid {running}"
            )
        if use_init_file and not self.paths.init_file.is_file():
            raise MySQLError(f"no init file at {self.paths.init_file}")
        args = self.command(use_init_file=use_init_file)
        log_fd = os.open(self.paths.error_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            _give_to_dir_owner(log_fd, self.paths.error_log.parent)
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                cwd=self.paths.base,
                # Files it makes are its own alone: master.info holds the replication
                # password (mariadbd's default would be 0660 and 0700).
                env={**os.environ, "UMASK": "0600", "UMASK_DIR": "0700"},
            )
        finally:
            os.close(log_fd)
        self._init_file_pending = use_init_file
        log.info("started mariadbd pid %d for %s", process.pid, self.paths.base)
        return process

    async def wait_ready(self, process: asyncio.subprocess.Process, timeout: float = 60.0) -> None:
        """Wait until the server answers ``SELECT 1``; ``MySQLError`` if it dies or times out."""
        deadline = time.monotonic() + timeout
        info = probe_info(self.info)
        last: MySQLError | None = None
        while True:
            if process.returncode is not None:
                raise MySQLError(
                    f"mariadbd exited with status {process.returncode} during startup",
                    detail=self.error_log_tail(),
                )
            if self.paths.socket.exists() or self.info.host:
                try:
                    await execute(info, "SELECT 1")
                    break
                except MySQLError as exc:
                    last = exc
                    if exc.errno in _FATAL_LOGIN_ERRORS:
                        raise
            if time.monotonic() >= deadline:
                why = f" (last error: {last})" if last else ""
                raise MySQLError(
                    f"mariadbd did not answer within {timeout:g}s{why}",
                    detail=self.error_log_tail(),
                )
            await asyncio.sleep(0.02)  # the child watcher sets process.returncode
        if self._init_file_pending:
            remove_init_file(self.paths)
            self._init_file_pending = False
        log.info("mariadbd pid %d is ready", process.pid)

    def _is_ours(self, pid: int) -> bool:
        """True when ``pid`` is a live mariadbd started with our ``--defaults-file``."""
        proc = Path(f"/proc/{pid}")
        try:
            comm = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        wanted = os.fsencode(f"--defaults-file={self.paths.cnf}")
        named_right = comm in SERVER_NAMES or os.path.basename(argv[0]) in (b"mariadbd", b"mysqld")
        return named_right and wanted in argv

    def running_pid(self) -> int | None:
        """The pid in ``paths.pid_file`` if that process is alive and is our mariadbd."""
        try:
            pid = int(self.paths.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and self._is_ours(pid) else None

    async def stop(
        self, process_or_pid: asyncio.subprocess.Process | int | None, timeout: float = 30.0
    ) -> None:
        """SIGTERM the server (a child process or an adopted pid), SIGKILL after ``timeout``.

        Does nothing if it is already gone; an int pid that is no longer our
        mariadbd is left alone.
        """
        if process_or_pid is None:
            return
        if isinstance(process_or_pid, int):
            await self._stop_pid(process_or_pid, timeout)
            return
        process = process_or_pid
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                log.warning("mariadbd pid %d ignored SIGTERM; killing it", process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        log.info("mariadbd pid %d stopped (status %s)", process.pid, process.returncode)

    async def _stop_pid(self, pid: int, timeout: float) -> None:
        if not self._is_ours(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() >= deadline:
                log.warning("mariadbd pid %d ignored SIGTERM; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            await asyncio.sleep(0.02)
        log.info("mariadbd pid %d stopped", pid)

    def error_log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the error log ('' if there is none)."""
        try:
            return tail_lines(self.paths.error_log, lines, _TAIL_BYTES).rstrip("\n")
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaping it if it is our child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def _give_to_dir_owner(fd: int, directory: Path) -> None:
    """As root, hand a file to its directory's owner (a server running as another user)."""
    if os.geteuid() != 0:
        return
    info = os.stat(directory)
    if info.st_uid != 0:
        os.fchown(fd, info.st_uid, info.st_gid)
