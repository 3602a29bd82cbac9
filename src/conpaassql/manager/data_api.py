"""The manager's data methods: dumps streamed in to the nodes and out of them.

An uploaded dump goes from the caller's request straight into the master's
agent (one load at a time per service), and an export from the agent's reply
straight into the caller's; the manager holds a few chunks at most.

A client may instead ask for a transfer grant (``grant_load``, ``grant_sqldump``):
the node's agent, where to reach it and how to know it, and the manager's signed
leave to call its method once. The bytes then go from the client to the agent
and back through no other process (``rpc.transfer``). A client that has
``mariadb-dump`` may ask for more (``grant_sqldump_login``): a short-lived account
on the node, made for one dump, to run the export itself over TLS; the bytes then
go through no process of ours at all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Literal

from pydantic import Field

from conpaassql.domain.node import Node
from conpaassql.errors import (
    BusyError,
    ConpaasSQLError,
    InvalidArgumentError,
    UnexpectedArgumentsError,
    UnreachableError,
)
from conpaassql.manager import targets
from conpaassql.manager.outcomes import nodes_failed
from conpaassql.manager.service import NodeService
from conpaassql.names import check_user_database
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import AgentMethod, DumpLoaded, DumpLoginRequest, DumpRequest
from conpaassql.rpc.grants import make_transfer_grant
from conpaassql.rpc.multipart import UploadStream
from conpaassql.rpc.protocol import ProtocolError
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.streams import ByteStreamResponse, sql_failure_line
from conpaassql.rpc.tls import dns_name, node_name
from conpaassql.rpc.types import NodeId, NodeIdOrAll, Params, Text

log = logging.getLogger(__name__)

#: sqldump streams at once per service (each holds a mariadb-dump on a node).
MAX_EXPORTS = 4
#: Seconds a dump account given out may still be released here (its node drops it
#: on its own anyway).
LOGIN_MEMORY = 86400.0



class SendDumpParams(Params):
    serviceNodeId: NodeIdOrAll = Field(default="all", validation_alias=targets.NODE_ID_ALIASES)
    database: Text | None = None


class LoadDumpParams(Params):
    database: Text | None = None


class ExportParams(Params):
    database: Text | None = None
    serviceNodeId: NodeId | None = Field(default=None, validation_alias=targets.NODE_ID_ALIASES)


class ReleaseLoginParams(Params):
    user: Text


class GrantLoadParams(SendDumpParams):
    method: Literal["load_dump", "send_mysqldump"] = "load_dump"


class DataApi:
    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self._loading: str | None = None
        self._exports = 0  # sqldump streams going on
        self._logins: dict[str, tuple[int, float]] = {}  # dump accounts given: node, when

    def register(self, registry: Registry) -> None:
        registry.add("send_mysqldump", "UPLOAD", self.send_mysqldump, SendDumpParams,
                     files=("mysqldump",))
        registry.add("load_dump", "UPLOAD", self.load_dump, LoadDumpParams,
                     files=("mysqldump_file",))
        registry.add("sqldump", "GET", self.sqldump, ExportParams)
        registry.add("grant_load", "POST", self.grant_load, GrantLoadParams)
        registry.add("grant_sqldump", "GET", self.grant_sqldump, ExportParams)
        registry.add("grant_sqldump_login", "GET", self.grant_sqldump_login, ExportParams)
        registry.add("release_sqldump_login", "GET", self.release_sqldump_login,
                     ReleaseLoginParams)

    # -- in ---------------------------------------------------------------

    async def send_mysqldump(self, params: SendDumpParams, ctx: CallContext) -> dict[str, Any]:
        """Load a plain-SQL (or gzip) dump into node ``serviceNodeId`` or ``'all'``."""
        await self.nodes.await_master()
        chosen = targets.resolve(self.nodes.live_nodes(), params.serviceNodeId)
        return await self._load(chosen, protocol.SEND_MYSQLDUMP, params.database,
                                ctx.files["mysqldump"])

    async def load_dump(self, params: LoadDumpParams, ctx: CallContext) -> dict[str, Any]:
        """Load a dump into the service (every node that takes writes: the master)."""
        await self.nodes.await_master()
        chosen = targets.resolve(self.nodes.live_nodes(), None)
        return await self._load(chosen, protocol.LOAD_DUMP, params.database,
                                ctx.files["mysqldump_file"])

    async def _load(self, chosen: list[Node], method: AgentMethod[DumpRequest, DumpLoaded],
                    database: str | None, upload: UploadStream) -> dict[str, Any]:
        """Stream the upload into the node that takes writes (there is only one: the
        master; the slaves get the data through replication)."""
        if database is not None:
            check_user_database(database)
        node = chosen[0]
        if self._loading is not None:
            raise BusyError(detail=f"busy: {self._loading} in progress")
        self._loading = f"{method.name} into node {node.id}"
        started = time.monotonic()
        load = self.rt.agents.load_dump if method is protocol.LOAD_DUMP \
            else self.rt.agents.send_mysqldump
        try:
            answer = await load(node, DumpRequest(database=database),
                                upload.filename or "dump.sql", upload.chunks())
        except ProtocolError:
            raise  # the caller's upload itself was bad or broke off
        except ConpaasSQLError as exc:
            self.rt.store.record_event(f"{method.name} into node {node.id} failed: "
                                       f"{str(exc)[:300]}", node.id)
            raise nodes_failed([(node, exc)], []) from None
        finally:
            self._loading = None
        self.rt.store.record_event(f"dump of {answer.bytes} bytes loaded into "
                                   f"node {node.id}", node.id)
        return {"nodes": [node.id], "bytes": answer.bytes,
                "sql_bytes": answer.sql_bytes, "gzip": answer.gzip,
                "seconds": round(time.monotonic() - started, 3)}

    # -- out --------------------------------------------------------------

    async def sqldump(self, params: ExportParams, ctx: CallContext) -> ByteStreamResponse:
        """A consistent dump of the service (or of one database), streamed from a node."""
        node = targets.source(self.nodes.live_nodes(), params.serviceNodeId)
        database = None if params.database is None else check_user_database(params.database)
        if self._exports >= MAX_EXPORTS:
            raise BusyError(detail=f"busy: {self._exports} dumps are being exported; "
                            "try again when one is done")
        self._exports += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._exports -= 1

        stack = contextlib.AsyncExitStack()
        try:
            stream = await stack.enter_async_context(
                self.rt.agents.sqldump(node, DumpRequest(database=database)))
        except BaseException:
            release()
            await stack.aclose()
            raise
        return ByteStreamResponse(stream.chunks(), media_type="application/sql",
                                  headers=self._export_headers(node, database),
                                  cleanup=stack.aclose, failure_line=sql_failure_line,
                                  ended=release)

    def _export_headers(self, node: Node, database: str | None) -> dict[str, str]:
        name = f"conpaassql-{self.rt.store.service_id}-{database or 'all'}-" \
               f"{time.strftime('%Y%m%d-%H%M%S')}.sql"
        return {"Content-Disposition": f'attachment; filename="{_safe(name)}"',
                "X-Conpaassql-Node": str(node.id)}

    # -- straight to the node ----------------------------------------------

    async def grant_load(self, params: GrantLoadParams, ctx: CallContext) -> dict[str, Any]:
        """Leave to send one dump straight to the node ``load_dump`` (or
        ``send_mysqldump``) would load it into: its agent, and a grant for ``method``."""
        if params.method == "load_dump" and "serviceNodeId" in params.model_fields_set:
            raise UnexpectedArgumentsError(["serviceNodeId"])  # as load_dump itself says
        await self.nodes.await_master()
        node = targets.resolve(self.nodes.live_nodes(), params.serviceNodeId)[0]
        if params.database is not None:
            check_user_database(params.database)
        if self._loading is not None:
            raise BusyError(detail=f"busy: {self._loading} in progress")
        return self._transfer(node, params.method)

    async def grant_sqldump(self, params: ExportParams, ctx: CallContext) -> dict[str, Any]:
        """Leave to take one ``sqldump`` straight from the node it would come from."""
        node = targets.source(self.nodes.live_nodes(), params.serviceNodeId)
        database = None if params.database is None else check_user_database(params.database)
        return {**self._transfer(node, "sqldump"),
                "headers": self._export_headers(node, database)}

    async def grant_sqldump_login(self, params: ExportParams,
                                  ctx: CallContext) -> dict[str, Any]:
        """An account for one ``mariadb-dump`` against the node ``sqldump`` would come
        from, over TLS verified with the service's CA: the node's address and port,
        the account (one login, dropped when its connection ends or after a minute
        unused), the CA, and the tool's arguments but the login."""
        node = targets.source(self.nodes.live_nodes(), params.serviceNodeId)
        database = None if params.database is None else check_user_database(params.database)
        if not node.ip:
            raise UnreachableError(f"node {node.id}", detail="its address is not known yet")
        try:
            login = await self.rt.agents.open_dump_login(node, DumpRequest(database=database))
        except ConpaasSQLError as exc:
            raise nodes_failed([(node, exc)], []) from None
        # Not its name: whoever reads the history could release it before its client
        # has connected.
        self.rt.store.record_event(f"dump account opened on node {node.id} for "
                                   f"{database or 'every database'}", node.id)
        now = time.monotonic()
        self._logins = {user: given for user, given in self._logins.items()
                        if now - given[1] < LOGIN_MEMORY}
        self._logins[login.user] = (node.id, now)
        return {"node": node.id, "host": node.ip, "port": login.port, "user": login.user,
                "password": login.password, "ca": self.rt.authority.ca_pem,
                "args": login.args, "headers": self._export_headers(node, database)}

    async def release_sqldump_login(self, params: ReleaseLoginParams,
                                    ctx: CallContext) -> dict[str, Any]:
        """The client is done with its dump account: the node drops it as soon as it
        has no session (else it goes when its session ends, or a minute unused)."""
        node_id = self._logins.pop(params.user, (None, 0.0))[0]
        node = next((n for n in self.nodes.live_nodes() if n.id == node_id), None)
        if node is None:
            raise InvalidArgumentError("user", detail=f"no dump account {params.user[:80]!r} "
                                       "given out by this manager is left")
        try:
            await self.rt.agents.close_dump_login(node, DumpLoginRequest(user=params.user))
        except ConpaasSQLError as exc:
            raise nodes_failed([(node, exc)], []) from None
        return {"user": params.user, "node": node.id, "released": True}

    def _transfer(self, node: Node, method: str) -> dict[str, Any]:
        """Where node ``node``'s agent is, the name and CA its certificate shows, and
        a grant to call ``method`` there once (within a minute)."""
        if node.agent_url is None:
            raise UnreachableError(f"node {node.id}", detail="its address is not known yet")
        authority = self.rt.authority
        return {"node": node.id, "url": node.agent_url, "method": method,
                "server_name": dns_name(authority.service_id, node_name(node.id)),
                "ca": authority.ca_pem,
                "grant": make_transfer_grant(authority.grant_key, node.id, method)}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
