"""The node's short-lived dump accounts (``mysql.dump_logins``), watched to their end.

Each account is watched by a task in two steps: until its one connection is seen
(then it is locked), and until that connection has ended (then it is dropped). It
is dropped unused after ``CONNECT_WINDOW`` seconds, at once when its client says it
is done and has no session, and with its session killed after ``MAX_LIFETIME``.
Accounts nobody watches (left by an earlier agent, or copied in with another
node's data) are dropped once the server answers, every few minutes after, when
the next one is opened, and when the agent stops. One lock keeps the sweep from
taking an account that is being made.
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
from conpaassql.mysql.dump_logins import DumpAccount

log = logging.getLogger(__name__)

#: Seconds a client has to connect with its account.
CONNECT_WINDOW = 60.0
#: Seconds a dump may last: its session is killed after that.
MAX_LIFETIME = 86400.0
#: Seconds between looks at the account's connection: before it is seen (so that the
#: lock comes soon after the login), and while it lasts.
WAITING_POLL = 0.25
DUMPING_POLL = 1.0
#: Dump accounts open at once on one node.
MAX_LOGINS = 4
#: Seconds between two looks for dump accounts nobody watches (the first look comes
#: once the server answers).
SWEEP_INTERVAL = 300.0


class _Watched:
    """One account's watch: when it was made, and whether its client is done."""

    def __init__(self) -> None:
        self.made = time.monotonic()
        self.released = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class DumpLogins:
    """The dump accounts this agent made, each watched by a task."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self._watched: dict[str, _Watched] = {}
        self._lock = asyncio.Lock()
        self._swept_at: float | None = None

    @property
    def session(self) -> Session:
        return self.supervisor.session

    async def open(self, databases: Sequence[str]) -> DumpAccount:
        """A new account for one dump of ``databases``, watched from now on."""
        async with self._lock:
            if len(self._watched) >= MAX_LOGINS:
                raise BusyError(detail=f"busy: {len(self._watched)} dumps are being made "
                                "from this node; try again when one is done")
            await self._sweep()
            account = await dump_logins.create(self.session, databases)
            watched = self._watched[account.user] = _Watched()
            watched.task = asyncio.create_task(self._watch(account.user, watched),
                                               name=f"dump login {account.user}")
        log.info("dump account %s opened for %d database(s)", account.user, len(databases))
        return account

    def release(self, user: str) -> None:
        """Its client is done with ``user``: drop it once it has no session (a dump too
        short for the watcher to have seen its session would otherwise keep its
        unusable account for the rest of ``CONNECT_WINDOW``)."""
        watched = self._watched.get(user)
        if watched is not None:
            watched.released.set()

    async def _watch(self, user: str, watched: _Watched) -> None:
        try:
            if await self._until_connected(user, watched):
                await self._until_ended(user, watched)
            await self._drop(user)
        finally:
            self._watched.pop(user, None)

    async def _connected(self, user: str) -> int | None:
        """How many sessions ``user`` has; None when the server cannot tell."""
        try:
            return await dump_logins.sessions(self.session, user)
        except ConpaasSQLError as exc:
            log.debug("dump account %s: %s", user, exc)
            return None

    async def _until_connected(self, user: str, watched: _Watched) -> bool:
        """Wait for the account's session and lock the account; False if none came (in
        ``CONNECT_WINDOW``, or before its client said it was done)."""
        while time.monotonic() - watched.made < CONNECT_WINDOW:
            connected = await self._connected(user)
            if connected:
                try:
                    await dump_logins.lock(self.session, user)
                except ConpaasSQLError as exc:
                    log.warning("dump account %s not locked: %s", user, exc)
                else:
                    log.info("dump account %s connected: locked", user)
                return True
            if connected == 0 and watched.released.is_set():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watched.released.wait(), WAITING_POLL)
        log.info("dump account %s unused for %.0f s", user, CONNECT_WINDOW)
        return False

    async def _until_ended(self, user: str, watched: _Watched) -> None:
        """Wait for the account's session to end (killed after ``MAX_LIFETIME``)."""
        while True:
            if time.monotonic() - watched.made > MAX_LIFETIME:
                log.warning("dump account %s: its dump passed %.0f s; ended", user,
                            MAX_LIFETIME)
                with contextlib.suppress(ConpaasSQLError):
                    await dump_logins.end_sessions(self.session, user)
                return
            if await self._connected(user) == 0:
                return
            await asyncio.sleep(WAITING_POLL if watched.released.is_set() else DUMPING_POLL)

    async def _drop(self, user: str) -> None:
        try:
            await dump_logins.drop(self.session, user)
        except ConpaasSQLError as exc:
            log.warning("dump account %s not dropped (the next sweep will): %s", user, exc)
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
            async with self._lock:
                await self._sweep()
        except ConpaasSQLError as exc:
            log.debug("dump accounts not swept: %s", exc)
            return
        self._swept_at = now

    async def _sweep(self) -> None:
        """Drop the dump accounts this agent does not watch and nobody uses (under
        ``_lock``, so that none is being made meanwhile)."""
        for user in await dump_logins.existing(self.session):
            if user not in self._watched and not await dump_logins.sessions(self.session,
                                                                            user):
                await self._drop(user)

    async def close(self) -> None:
        """Stop watching; drop every account not in use (the next agent drops the rest)."""
        tasks = [w.task for w in self._watched.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(ConpaasSQLError):
            async with self._lock:
                await self._sweep()
