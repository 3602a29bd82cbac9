"""The agent's seeding methods: a physical copy of one node streamed into another.

``backup_stream`` streams this node's server as mariabackup's xbstream while it
keeps serving. ``seed_from`` makes this node's server a copy of another node's:
it reads that node's ``backup_stream`` (agents of one service share the
credential), extracts and prepares it next to the datadir while the server
still runs on its old data, then stops the server just for the swap and starts
it on the copy. The copy has the source's accounts, root's password included
(every node of a service shares it), so this agent's own session keeps working.

A node streams one copy at a time and takes part in one seed at a time: a
second ``seed_from`` on a node being seeded (or streaming) is refused as busy,
while a seed whose source is busy streaming to another node waits its turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import (
    BusyError,
    ConpaasSQLError,
    InvalidArgumentError,
    RemoteError,
    UnreachableError,
    WrongStateError,
)
from conpaassql.mysql.backup import (
    Backup,
    RestoreResult,
    adopt_gtid_position,
    ensure_replaceable,
    restore,
)
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.streams import ByteStreamResponse
from conpaassql.rpc.types import Params, Text

log = logging.getLogger(__name__)

BACKUP_MEDIA_TYPE = "application/octet-stream"
#: Longest wait for the source to start its copy (its reply's first byte), waiting
#: out the other copies it streams.
OPEN_TIMEOUT = 120.0
#: Longest silence of the source's stream before the seed gives up.
STALL_TIMEOUT = 300.0
#: Seconds between two attempts while the source streams another copy.
BUSY_RETRY = 0.5


def agent_url(value: str) -> str:
    """``value`` as ``scheme://host:port/`` if it is an agent's http(s) URL."""
    if any(char.isspace() for char in value):
        raise ValueError("must be an http(s) URL without spaces")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("must be an http(s) URL with a valid port") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if port is None:
        raise ValueError("must give the agent's port")
    if parts.username is not None or parts.password is not None:
        raise ValueError("may not hold credentials")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be the agent's root URL (no path, query or fragment)")
    return f"{parts.scheme}://{parts.netloc}/"


AgentUrl = Annotated[Text, AfterValidator(agent_url)]


class SeedParams(Params):
    source: AgentUrl


async def _watched(chunks: AsyncIterator[bytes], source: str,
                   timeout: float) -> AsyncIterator[bytes]:
    """``chunks``, failing with ``RemoteError`` when the source goes silent too long."""
    iterator = aiter(chunks)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(iterator), timeout)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RemoteError(f"the copy from {source} stalled for {timeout:g} s") from None
        yield chunk


class SeedApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.open_timeout = OPEN_TIMEOUT
        self.stall_timeout = STALL_TIMEOUT
        self._busy: str | None = None  # one backup or seed at a time

    def register(self, registry: Registry) -> None:
        registry.add("backup_stream", "GET", self.backup_stream, access="manager")
        registry.add("seed_from", "POST", self.seed_from, SeedParams, access="manager")

    def _claim(self, what: str) -> None:
        if self._busy is not None:
            raise BusyError(detail=f"busy: {self._busy} in progress on node "
                            f"{self.settings.node_id}")
        self._busy = what

    def _is_self(self, url: str) -> bool:
        parts = urlsplit(url)
        own_hosts = {self.settings.bind, "localhost"} if self.settings.bind else set()
        return parts.port == self.settings.agent_port and parts.hostname in own_hosts

    async def backup_stream(self, params: Params, ctx: CallContext) -> ByteStreamResponse:
        """A physical copy of this node's server (mariabackup xbstream), streamed as made."""
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")
        self._claim("a backup")
        try:
            backup = await Backup.start(self.settings.paths, self.settings.context.root_password)
        except BaseException:
            self._busy = None
            raise
        log.info("node %d: backup stream started", self.settings.node_id)

        def release() -> None:
            if self._busy is not None:
                self._busy = None
                log.info("node %d: backup stream %s: %d bytes in %.2f s",
                         self.settings.node_id, "complete" if backup.finished else "broken off",
                         backup.sent, time.monotonic() - backup.started)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in backup.chunks():
                    yield chunk
            finally:
                # Before any await: a reader that went away cancels this task.
                release()
                await backup.close()

        async def never_started() -> None:  # the stream was not even begun
            release()
            await backup.close()

        return ByteStreamResponse(chunks(), media_type=BACKUP_MEDIA_TYPE,
                                  cleanup=never_started)

    async def seed_from(self, params: SeedParams, ctx: CallContext) -> dict[str, Any]:
        """Replace this node's data by a copy of the node whose agent is ``source``."""
        source = params.source
        if self._is_self(source):
            raise InvalidArgumentError("source", detail="that is this node's own agent")
        self._claim(f"seeding from {source}")
        node = self.settings.node_id
        started = time.monotonic()
        log.info("node %d: seeding from %s", node, source)
        try:
            result = await self._seed(source)
        except ConpaasSQLError as exc:
            log.error("node %d: seeding from %s failed after %.2f s: %s", node, source,
                      time.monotonic() - started, exc)
            self.supervisor.on_event(f"seeding from {source} failed: {exc}")
            raise
        finally:
            self._busy = None
        log.info("node %d: seeded from %s at GTID position %r: %d bytes in %.2f s", node,
                 source, result["gtid_position"], result["bytes"], result["seconds"])
        self.supervisor.on_event(f"data replaced by a copy from {source} "
                                 f"(GTID position {result['gtid_position'] or 'empty'})")
        return {"return": "OK", **result}

    async def _seed(self, source: str) -> dict[str, Any]:
        started = time.monotonic()
        if self.supervisor.state is AgentState.RUNNING:
            await ensure_replaceable(self.supervisor.session)
        deadline = started + self.open_timeout
        async with RpcClient(source, token=self.settings.context.secret) as client:
            waited = False
            while True:
                try:
                    restored = await self._copy(client, source, deadline)
                    break
                except RemoteError as exc:
                    # The source streams another copy (a slave seeded at the same
                    # time): its copy starts when that one is done.
                    if not _source_busy(exc) or time.monotonic() >= deadline:
                        raise
                    if not waited:
                        log.info("node %d: %s is busy with another copy; waiting",
                                 self.settings.node_id, source)
                        waited = True
                    await asyncio.sleep(BUSY_RETRY)
        await adopt_gtid_position(self.supervisor.session, restored.gtid_position)
        return {**restored.as_dict(), "seconds": round(time.monotonic() - started, 3)}

    async def _copy(self, client: RpcClient, source: str, deadline: float) -> RestoreResult:
        """One attempt: open the source's stream (by ``deadline``) and restore it."""
        opening = asyncio.timeout(max(0.0, deadline - time.monotonic()))
        try:
            async with opening, client.stream("backup_stream") as stream:
                opening.reschedule(None)  # from here on, only silences count
                return await restore(
                    self.settings.paths, _watched(stream.chunks(), source, self.stall_timeout),
                    run_as=self.settings.server_settings().run_as,
                    swap=self.supervisor.replace_data)
        except TimeoutError:
            if not opening.expired():
                raise
            raise UnreachableError(source, detail=f"no copy started within "
                                   f"{self.open_timeout:g} s") from None


def _source_busy(exc: RemoteError) -> bool:
    """True when the source answered ``backup_stream`` with its BusyError."""
    text = str(exc)
    return text.startswith(WrongStateError.template) and "DETAIL:busy: a backup" in text
