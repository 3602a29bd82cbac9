"""Runs the node's mariadbd and keeps it running.

On first boot the datadir is copied from a template (or initialised); then the
server is started as the agent's child. If it dies without being asked to, the
supervisor reports it and starts it again, backing off while it keeps failing.
A server left running by a previous agent is adopted instead of started twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from conpaassql.agent.role import MasterIntent
from conpaassql.agent.settings import AgentSettings
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, MySQLError, WrongStateError
from conpaassql.mysql.config import render_my_cnf
from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import initialise_datadir, is_initialised, prepare_template
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.process import MariaDBProcess

log = logging.getLogger(__name__)

EventSink = Callable[[str], None]
MAX_BACKOFF = 30.0
ADOPTED_POLL = 0.2


class Supervisor:
    def __init__(self, settings: AgentSettings, on_event: EventSink) -> None:
        self.settings = settings
        self.paths: ServerPaths = settings.paths
        self.info = settings.connect_info()
        self.process = MariaDBProcess(self.paths, self.info)
        self.session = Session(self.info)  # the agent's own statements go through it
        self.on_event = on_event
        self.intent = MasterIntent.in_dir(settings.data_dir)  # the role the manager gave
        self.state = AgentState.INIT
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.last_error: str | None = None
        self.started_at: float | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._wanted = False  # the server should be running
        self._lock = asyncio.Lock()

    # -- boot -------------------------------------------------------------

    async def boot(self) -> None:
        """First thing the agent does: datadir ready, server running."""
        self.paths.ensure_dirs()
        self.write_config()
        if not is_initialised(self.paths):
            template = self.settings.template_dir
            if template is not None:
                template = await prepare_template(template)
            await initialise_datadir(self.paths, self.info.password, template)
            log.info("datadir initialised%s", " from template" if template else "")
        adopted = self.process.running_pid()
        self._wanted = True
        if adopted is not None:
            await self._adopt(adopted)
        else:
            await self.start()

    def write_config(self) -> None:
        text = render_my_cnf(self.paths, self.settings.server_settings())
        self.paths.cnf.write_text(text, encoding="utf-8")

    async def _adopt(self, pid: int) -> None:
        log.info("adopting mariadbd %d left running by a previous agent", pid)
        self.pid = pid
        self.state = AgentState.STARTING
        deadline = time.monotonic() + 60
        while not await self.session.ping():
            if time.monotonic() > deadline or not _alive(pid):
                raise MySQLError("the mariadbd left running does not answer")
            await asyncio.sleep(0.05)
        self.state = AgentState.RUNNING
        self.started_at = time.time()
        self._watch = asyncio.create_task(self._watch_adopted(pid), name="watch mariadbd")

    # -- start / stop -----------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            await self._start_locked()

    async def _start_locked(self) -> None:
        if self.state is AgentState.RUNNING:
            return
        self._wanted = True
        self.state = AgentState.STARTING
        use_init = self.paths.init_file.exists()
        try:
            child = await self.process.start(use_init_file=use_init)
            self._child = child
            self.pid = child.pid
            await self.process.wait_ready(child, timeout=120)
        except ConpaasSQLError as exc:
            self.last_error = str(exc)
            self.state = AgentState.STOPPED
            raise
        self.state = AgentState.RUNNING
        self.started_at = time.time()
        self.last_error = None
        self._watch = asyncio.create_task(self._watch_child(child), name="watch mariadbd")

    async def stop(self) -> None:
        async with self._lock:
            await self._stop_locked()

    async def _stop_locked(self) -> None:
        self._wanted = False
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.state is AgentState.STOPPED:
            return
        self.state = AgentState.STOPPING
        target: Any = self._child if self._child is not None else self.pid
        if target is not None:
            await self.process.stop(target)
        self._child = None
        self.pid = None
        self.started_at = None
        self.state = AgentState.STOPPED

    def leaving(self) -> None:
        """The agent is stopping: a mariadbd that ends now is not started again (the
        agent stops it, if it still runs, on its way out)."""
        self._wanted = False

    async def fence(self) -> None:
        """Take no more writes, now: no more restarts, and the server (even one that is
        still starting) killed at once rather than shut down. InnoDB recovers at the
        next start, which is read-only like every start."""
        self._wanted = False
        self.intent.set(False)
        with contextlib.suppress(ProcessLookupError):
            if self._child is not None and self._child.returncode is None:
                self._child.kill()
            elif self.pid is not None and self.pid == self.process.running_pid():
                os.kill(self.pid, signal.SIGKILL)
        await self.stop()

    async def restart(self) -> None:
        async with self._lock:
            await self._stop_locked()
            await self._start_locked()

    async def reconfigure(self, apply: Callable[[], None], revert: Callable[[], None]) -> None:
        """Apply a configuration change and restart; undo it if mysqld won't start."""
        async with self._lock:
            if self.state is not AgentState.RUNNING:
                raise WrongStateError(detail=f"mysqld is {self.state}")
            apply()
            self.write_config()
            await self._stop_locked()
            try:
                await self._start_locked()
            except ConpaasSQLError as exc:
                revert()
                self.write_config()
                await self._start_locked()
                raise MySQLError("mysqld did not start with the new setting; reverted",
                                 detail=exc.detail) from None

    async def replace_data(self, install: Callable[[], None], undo: Callable[[], None]) -> None:
        """Stop mysqld, swap its datadir with ``install``, start it on the new data.

        It stays stopped in between: the lock is held, so neither the watcher nor
        a start request can bring it up on a half-swapped datadir. If ``install``
        fails (leaving the old datadir in place) the old server is started again;
        if mysqld does not start on the new data, ``undo`` puts the old datadir
        back and that is started. Either way the error is raised.
        """
        async with self._lock:
            await self._stop_locked()
            await asyncio.to_thread(self.session.close)  # reconnect to the new server
            try:
                install()
            except BaseException:
                await self._start_locked()
                raise
            try:
                await self._start_locked()
            except ConpaasSQLError as exc:
                if self._child is not None:  # it may still be starting
                    await self.process.stop(self._child)
                self._child = None
                self.pid = None
                undo()
                await self._start_locked()
                why = exc.args_[0] if exc.args_ else exc.template
                raise MySQLError("mysqld did not start on the new data; the old data is back",
                                 detail="; ".join(str(part) for part in (why, exc.detail)
                                                  if part)) from None

    # -- watching ---------------------------------------------------------

    async def _watch_child(self, child: asyncio.subprocess.Process) -> None:
        code = await child.wait()
        self._died(_describe_exit(code))
        await self._revive()

    async def _watch_adopted(self, pid: int) -> None:
        while _alive(pid):
            await asyncio.sleep(ADOPTED_POLL)
        self._died("exited (adopted process)")
        await self._revive()

    def _died(self, how: str) -> None:
        self.last_exit = f"mysqld {how} at {time.strftime('%H:%M:%S')}"
        self.state = AgentState.STARTING
        self._child = None
        self.pid = None
        log.warning("%s", self.last_exit)
        self.on_event(f"{self.last_exit}; restarting it")

    async def _revive(self) -> None:
        backoff = 0.2
        while self._wanted:
            try:
                async with self._lock:
                    self.state = AgentState.STOPPED
                    await self._start_locked()
            except ConpaasSQLError as exc:
                log.warning("restarting mysqld failed: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            self.restarts += 1
            self.on_event(f"mysqld restarted by the agent (restart {self.restarts})")
            return

    # -- reports ----------------------------------------------------------

    async def answering(self) -> bool:
        if self.state is not AgentState.RUNNING:
            return False
        return await self.session.ping()

    def report(self, answering: bool) -> dict[str, Any]:
        return {
            "answering": answering,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
            "uptime": round(time.time() - self.started_at, 3) if self.started_at else None,
        }


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
