"""The node's short-lived dump accounts (``mysql.dump_logins``), watched to their end.

Each account is watched by a task: locked once its one connection is seen, dropped
once that connection has ended or its client says it is done, or dropped unused
after ``CONNECT_WINDOW`` seconds.
Accounts left by an earlier agent, or copied in with another node's data, are
dropped once the server answers, every few minutes after, when the next one is
opened, and when the agent stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import BusyError, ConpaasSQLError
from conpaassql.mysql import dump_logins
from conpaassql.mysql.connection import Session
from conpaassql.mysql.dump_logins import DumpLogin

log = logging.getLogger(__name__)

#: Seconds a client has to connect with its account.
CONNECT_WINDOW = 60.0
#: Seconds between looks at the account's connection: before it is seen (so that the
#: lock comes soon after the login), and while it lasts.
WAITING_POLL = 0.25
DUMPING_POLL = 1.0
#: Dump accounts open at once on one node.
MAX_LOGINS = 4
#: Seconds between two looks for dump accounts nobody watches (the first look comes
#: once the server answers).
SWEEP_INTERVAL = 300.0


class DumpLogins:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._released: dict[str, asyncio.Event] = {}
        self._swept_at: float | None = None

    @property
    def session(self) -> Session:
        return self.supervisor.session

    @property
    def active(self) -> list[str]:
        return sorted(self._watchers)

    async def open(self, databases: Sequence[str]) -> DumpLogin:
        """A new account for one dump of ``databases``, watched from now on."""
        if len(self._watchers) >= MAX_LOGINS:
            raise BusyError(detail=f"busy: {len(self._watchers)} dumps are being made "
                            "from this node; try again when one is done")
        await self._sweep()
        login = await dump_logins.create(self.session, databases)
        self._released[login.user] = asyncio.Event()
        self._watchers[login.user] = asyncio.create_task(
            self._watch(login.user), name=f"dump login {login.user}")
        log.info("dump account %s opened for %s", login.user, ", ".join(databases) or
                 "no database")
        return login

    def release(self, user: str) -> None:
        """Its client is done with ``user``: drop it once it has no session (a dump too
        short for the watcher to have seen its session would otherwise keep its
        unusable account for the rest of ``CONNECT_WINDOW``)."""
        released = self._released.get(user)
        if released is not None:
            released.set()

    async def _watch(self, user: str) -> None:
        try:
            await self._follow(user)
        finally:
            self._watchers.pop(user, None)
            self._released.pop(user, None)

    async def _follow(self, user: str) -> None:
        deadline = time.monotonic() + CONNECT_WINDOW
        released = self._released[user]
        locked = False
        while True:
            try:
                connected = await dump_logins.sessions(self.session, user)
                if connected and not locked:
                    await dump_logins.lock(self.session, user)
                    locked = True
                    log.info("dump account %s connected: locked", user)
                elif (locked or released.is_set()) and not connected:
                    break
                elif not locked and time.monotonic() > deadline:
                    log.info("dump account %s unused for %.0f s", user, CONNECT_WINDOW)
                    break
            except ConpaasSQLError as exc:
                log.warning("dump account %s: %s", user, exc)
            if released.is_set():  # its session is ending: look again soon
                await asyncio.sleep(WAITING_POLL)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(),
                                       DUMPING_POLL if locked else WAITING_POLL)
        await self._drop(user)

    async def _drop(self, user: str) -> None:
        try:
            await dump_logins.drop(self.session, user)
        except ConpaasSQLError as exc:
            log.warning("dump account %s not dropped: %s", user, exc)
        else:
            log.info("dump account %s dropped", user)

    async def sweep_now_and_then(self) -> None:
        """``_sweep`` if the last was ``SWEEP_INTERVAL`` ago (or never): the agent's
        sampler calls this while the server runs, so that an account that came with a
        copy of another node's data does not wait for the next dump."""
        now = time.monotonic()
        if self._swept_at is not None and now - self._swept_at < SWEEP_INTERVAL:
            return
        try:
            await self._sweep()
        except ConpaasSQLError as exc:
            log.debug("dump accounts not swept: %s", exc)
            return
        self._swept_at = now

    async def _sweep(self) -> None:
        """Drop the dump accounts this agent does not watch and nobody uses."""
        for user in await dump_logins.existing(self.session):
            if user not in self._watchers and not await dump_logins.sessions(self.session,
                                                                             user):
                await self._drop(user)

    async def close(self) -> None:
        """Stop watching; drop every account not in use (the next agent drops the rest)."""
        watchers = list(self._watchers.values())
        for task in watchers:
            task.cancel()
        for task in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(ConpaasSQLError):
            await self._sweep()
