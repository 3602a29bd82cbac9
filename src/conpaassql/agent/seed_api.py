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
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import (
    BusyError,
    ConfigError,
    ConpaasSQLError,
    ForbiddenError,
    InvalidArgumentError,
    MySQLError,
    RemoteError,
    UnreachableError,
    WrongStateError,
)
from conpaassql.mysql.backup import (
    BACKUP,
    MBSTREAM,
    Backup,
    Receive,
    RestoreResult,
    adopt_gtid_position,
    ensure_replaceable,
    from_chunks,
    restore,
)
from conpaassql.mysql.binaries import find_binary
from conpaassql.mysql.dump import SQL_MEDIA_TYPE, Export
from conpaassql.mysql.logical_copy import LogicalCopy, copy_dump_command, load_copy
from conpaassql.mysql.socket_copy import Receiver, send_backup
from conpaassql.net import is_loopback
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    BackupPushed,
    CopyMethod,
    GrantRequest,
    PushRequest,
    Seeded,
    SeedRequest,
    Transport,
)
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.grants import Grant, check_grant, load_public_key
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.streams import ByteStreamResponse, sql_failure_line
from conpaassql.rpc.tls import MANAGER_NAME, node_of_name, peer_context

log = logging.getLogger(__name__)

BACKUP_MEDIA_TYPE = "application/octet-stream"
#: Longest wait for the source to start its copy (its reply's first byte), waiting
#: out the other copies it streams.
OPEN_TIMEOUT = 120.0
#: Longest silence of the source's stream before the seed gives up.
STALL_TIMEOUT = 300.0
#: Longest wait for the source's reply to ``backup_push``, which comes when its copy is
#: sent (each side kills its tool sooner if the copy stalls).
PUSH_TIMEOUT = 24 * 3600.0
#: Seconds between two attempts while the source streams another copy.
BUSY_RETRY = 0.5


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
        self._grant: dict[str, str] = {}  # the seed's grant, shown to its source
        self._public_key: Any = None  # verifies the manager's grants

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.BACKUP_STREAM, self.backup_stream)
        protocol.register(registry, protocol.BACKUP_PUSH, self.backup_push)
        protocol.register(registry, protocol.COPY_DUMP, self.copy_dump)
        protocol.register(registry, protocol.SEED_FROM, self.seed_from)

    def _claim(self, what: str) -> None:
        if self._busy is not None:
            raise BusyError(detail=f"busy: {self._busy} in progress on node "
                            f"{self.settings.node_id}")
        self._busy = what

    def _is_self(self, url: str) -> bool:
        parts = urlsplit(url)
        own_hosts = {self.settings.bind, "localhost"} if self.settings.bind else set()
        return parts.port == self.settings.agent_port and parts.hostname in own_hosts

    def _check_grant(self, params: GrantRequest, ctx: CallContext) -> Grant | None:
        """The manager may take a copy; another node only with the manager's grant
        (None for the manager, else the grant)."""
        if ctx.principal == MANAGER_NAME:
            return None
        receiver = node_of_name(ctx.principal)
        grant = None if receiver is None else check_grant(
            self._grant_key(), params.grant, self.settings.node_id, receiver)
        if grant is None:
            raise ForbiddenError(detail=f"no valid grant from the manager for node "
                                 f"{receiver} to copy node {self.settings.node_id}")
        return grant

    def _grant_key(self) -> Any:
        if self._public_key is None and self.settings.context.grant_key:
            try:
                self._public_key = load_public_key(self.settings.context.grant_key)
            except ValueError:
                log.error("the context's grant key is unreadable: no node may copy this one")
        return self._public_key

    async def backup_stream(self, params: GrantRequest,
                            ctx: CallContext) -> ByteStreamResponse:
        """A physical copy of this node's server (mariabackup xbstream), streamed as made."""
        self._check_grant(params, ctx)
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

    async def copy_dump(self, params: GrantRequest, ctx: CallContext) -> ByteStreamResponse:
        """A logical copy of this node's server (every user database, the accounts and
        the GTID position: ``logical_copy``), streamed as ``mariadb-dump`` makes it."""
        self._check_grant(params, ctx)
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")
        self._claim("a backup")
        try:
            export = await Export.start(self.settings.paths, None,
                                        command=copy_dump_command(self.settings.paths))
        except BaseException:
            self._busy = None
            raise
        log.info("node %d: logical copy stream started", self.settings.node_id)

        def release() -> None:
            self._busy = None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for chunk in export.chunks():
                    yield chunk
            finally:
                release()
                await export.close()
                log.info("node %d: logical copy stream ended after %d bytes",
                         self.settings.node_id, export.sent)

        async def never_started() -> None:
            release()
            await export.close()

        return ByteStreamResponse(chunks(), media_type=SQL_MEDIA_TYPE, cleanup=never_started,
                                  failure_line=sql_failure_line)

    async def backup_push(self, params: PushRequest, ctx: CallContext) -> dict[str, Any]:
        """Send a physical copy of this node's server to a node waiting for it on
        ``host:port`` (its ``seed_from``), presenting ``ticket`` first."""
        grant = self._check_grant(params, ctx)
        if grant is not None and params.host != grant.address:
            raise ForbiddenError(detail=f"the grant is for a copy to {grant.address}, "
                                 f"not {params.host}")
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}")
        self._claim("a backup")
        node = self.settings.node_id
        log.info("node %d: sending a copy to %s:%d", node, params.host, params.port)
        try:
            sent = await send_backup(self.settings.paths, self.settings.context.root_password,
                                     params.host, params.port, params.ticket,
                                     self.stall_timeout)
        except ConpaasSQLError as exc:
            log.error("node %d: the copy to %s:%d failed: %s", node, params.host,
                      params.port, exc)
            raise
        finally:
            self._busy = None
        log.info("node %d: copy sent to %s:%d in %.2f s", node, params.host, params.port,
                 sent.seconds)
        return BackupPushed(seconds=round(sent.seconds, 3)).wire()

    async def seed_from(self, params: SeedRequest, ctx: CallContext) -> dict[str, Any]:
        """Replace this node's data by a copy of the node whose agent is ``source``."""
        source = params.source
        if self._is_self(source):
            raise InvalidArgumentError("source", detail="that is this node's own agent")
        self._claim(f"seeding from {source}")
        node = self.settings.node_id
        started = time.monotonic()
        log.info("node %d: seeding from %s", node, source)
        try:
            self._grant = {"grant": params.grant} if params.grant else {}
            result = await self._seed(source, params.transport, params.method)
        except ConpaasSQLError as exc:
            log.error("node %d: seeding from %s failed after %.2f s: %s", node, source,
                      time.monotonic() - started, exc)
            self.supervisor.on_event(f"seeding from {source} failed: {exc}")
            raise
        finally:
            self._busy = None
        log.info("node %d: seeded from %s at GTID position %r: %d bytes in %.2f s over %s",
                 node, source, result["gtid_position"], result["bytes"], result["seconds"],
                 "a socket" if result["transport"] == "socket" else "the RPC stream")
        self.supervisor.on_event(f"data replaced by a copy from {source} "
                                 f"(GTID position {result['gtid_position'] or 'empty'})")
        return Seeded.model_validate(result).wire()

    async def _seed(self, source: str, transport: Transport, method: CopyMethod) -> dict[str, Any]:
        started = time.monotonic()
        if self.supervisor.state is AgentState.RUNNING:
            await ensure_replaceable(self.supervisor.session)
        deadline = started + self.open_timeout
        async with RpcClient(source, token=self.settings.context.secret,
                             verify=peer_context(self.settings.tls_files)) as client:
            waited = False
            while True:
                try:
                    result = await self._copy_by(method, client, source, deadline, transport)
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
        return {**result, "seconds": round(time.monotonic() - started, 3)}

    async def _copy_by(self, method: CopyMethod, client: RpcClient, source: str, deadline: float,
                       transport: Transport) -> dict[str, Any]:
        """The physical copy, or the logical one where ``method`` asks for it or
        (``auto``) where the physical copy cannot run on one of the two nodes."""
        if method != "logical":
            missing = _missing_tools()
            if missing is None:
                try:
                    restored, used = await self._copy(client, source, deadline, transport)
                except ConpaasSQLError as exc:
                    if method == "physical" or not _physical_impossible(exc):
                        raise
                    why = str(exc)
                else:
                    await adopt_gtid_position(self.supervisor.session, restored.gtid_position)
                    return {**restored.as_dict(), "method": "physical", "transport": used}
            elif method == "physical":
                raise ConfigError(f"program not found: {missing}")
            else:
                why = f"program not found here: {missing}"
            log.warning("node %d: no physical copy from %s (%s); copying it logically",
                        self.settings.node_id, source, why)
        copied = await self._copy_logically(client, source, deadline)
        return {**copied.as_dict(), "method": "logical", "transport": "http"}

    async def _copy_logically(self, client: RpcClient, source: str,
                              deadline: float) -> LogicalCopy:
        """The source's ``copy_dump`` loaded into this node's server."""
        if self.supervisor.state is not AgentState.RUNNING:
            raise WrongStateError(detail=f"mysqld is {self.supervisor.state}: a logical copy "
                                  "is loaded into a running server")
        opening = asyncio.timeout(max(0.0, deadline - time.monotonic()))
        try:
            async with opening, client.stream(protocol.COPY_DUMP.name, self._grant) as stream:
                opening.reschedule(None)
                return await load_copy(self.settings.paths, self.supervisor.session,
                                       _watched(stream.chunks(), source, self.stall_timeout))
        except TimeoutError:
            if not opening.expired():
                raise
            raise UnreachableError(source, detail=f"no copy started within "
                                   f"{self.open_timeout:g} s") from None

    async def _copy(self, client: RpcClient, source: str, deadline: float,
                    transport: Transport) -> tuple[RestoreResult, str]:
        """One attempt, over the socket or the RPC stream as ``transport`` says;
        the copy and the way it came."""
        if transport == "auto" and not is_loopback(self._advertised_host()):
            transport = "http"  # the socket copy is not encrypted: loopback only unless asked
        if transport != "http":
            try:
                return await self._copy_over_socket(client, source, deadline), "socket"
            except NoConnectionError as exc:
                if transport == "socket":
                    raise exc.error from None
                log.info("node %d: %s could not send its copy over a socket (%s); "
                         "using the RPC stream", self.settings.node_id, source, exc.error)
        return await self._copy_over_http(client, source, deadline), "http"

    async def _copy_over_socket(self, client: RpcClient, source: str,
                                deadline: float) -> RestoreResult:
        """The source's mariabackup writes into a socket this node's mbstream reads.

        ``NoConnectionError`` if the source failed before it connected (the copy can
        then go another way); any other failure is the copy's own.
        """
        receiver = Receiver(self.settings.bind)
        host = self._advertised_host()
        request = PushRequest(host=host, port=receiver.port, ticket=receiver.ticket,
                              grant=self._grant.get("grant"))
        push = asyncio.create_task(client.call(
            protocol.BACKUP_PUSH.name, request.wire(), timeout=PUSH_TIMEOUT))
        try:
            accepting = asyncio.create_task(receiver.accept())
            await asyncio.wait({push, accepting}, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
            if not accepting.done():
                accepting.cancel()
                if not push.done():
                    raise UnreachableError(source, detail=f"no copy started within "
                                           f"{self.open_timeout:g} s")
                error = push.exception()
                if isinstance(error, RemoteError) and _source_busy(error):
                    raise error
                raise NoConnectionError(error or MySQLError("the source sent no copy"))
            connection = accepting.result()
            receiver.close()

            async def receive(directory: Path) -> int:
                received = await receiver.receive(directory, connection, self.stall_timeout)
                await push  # mariabackup's verdict: "completed OK!", or its error
                return received

            try:
                return await restore(self.settings.paths, receive,
                                     run_as=self.settings.server_settings().run_as,
                                     swap=self.supervisor.replace_data)
            except MySQLError as exc:
                # A cut copy: the source's own error (from mariabackup) says why.
                if push.done() and not push.cancelled() and push.exception() is not None:
                    raise push.exception() from None  # type: ignore[misc]
                raise exc
        finally:
            receiver.close()
            if not push.done():
                push.cancel()
            with contextlib.suppress(BaseException):
                await push

    def _advertised_host(self) -> str:
        """Where this node takes a copy over a socket."""
        return self.settings.context.ip or self.settings.bind

    async def _copy_over_http(self, client: RpcClient, source: str,
                              deadline: float) -> RestoreResult:
        """The source's agent streams its copy in its reply; this agent feeds mbstream."""
        opening = asyncio.timeout(max(0.0, deadline - time.monotonic()))
        try:
            async with opening, client.stream(protocol.BACKUP_STREAM.name, self._grant) as stream:
                opening.reschedule(None)  # from here on, only silences count
                receive: Receive = from_chunks(
                    _watched(stream.chunks(), source, self.stall_timeout))
                return await restore(
                    self.settings.paths, receive,
                    run_as=self.settings.server_settings().run_as,
                    swap=self.supervisor.replace_data)
        except TimeoutError:
            if not opening.expired():
                raise
            raise UnreachableError(source, detail=f"no copy started within "
                                   f"{self.open_timeout:g} s") from None


class NoConnectionError(Exception):
    """The source did not connect to this node's copy socket: ``error`` says why."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _missing_tools() -> str | None:
    """The physical copy's programs this node lacks (None when it has them)."""
    missing = []
    for names in (BACKUP, MBSTREAM):
        try:
            find_binary(*names)
        except ConfigError:
            missing.append(" or ".join(names))
    return ", ".join(missing) or None


def _physical_impossible(exc: ConpaasSQLError) -> bool:
    """True when the source cannot make a physical copy at all (no mariabackup)."""
    return "program not found" in str(exc)


def _source_busy(exc: RemoteError) -> bool:
    """True when the source answered ``backup_stream`` with its BusyError."""
    text = str(exc)
    return text.startswith(WrongStateError.template) and "DETAIL:busy: a backup" in text
