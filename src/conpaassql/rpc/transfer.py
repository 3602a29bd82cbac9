"""Dumps streamed straight between a client and the node that loads or makes them.

The manager answers ``grant_load`` and ``grant_sqldump`` with the node's agent (its
URL, the name its certificate bears, the service's CA) and a grant to call the
agent's own method once, within a minute. The client then calls that agent over
TLS verified with that CA, showing the grant: the bytes go through no other
process, the manager's included (a dump is sent and an export read with
``rpc.bulk``, which costs the client far less than httpx). The call otherwise
goes through the manager as before: when the manager grants nothing (one that
predates grants, or a refusal, which the call itself then meets), or when the
agent cannot be reached from here (a private address) before the first byte.

What the caller sees is the same either way: the load's reply as the manager
gives it (``nodes``, ``bytes``, ``sql_bytes``, ``gzip``, ``seconds``), an agent's
error with its node (``... (node 2)``), the export's headers.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc import bulk
from conpaassql.rpc.client import ByteStream, ClientVerb, RpcClient, form_fields

log = logging.getLogger(__name__)

#: Seconds to reach the agent before going through the manager instead.
CONNECT_TIMEOUT = 5.0
#: The params the agent's own data methods take (the node is the grant's).
AGENT_PARAMS = ("database",)
#: The manager's methods whose bytes may go straight to or from a node.
DIRECT_UPLOADS = frozenset({"load_dump", "send_mysqldump"})
DIRECT_STREAMS = frozenset({"sqldump"})


class _Watched:
    """An async iterable that tells whether anything was taken from it."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self.chunks = chunks
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self.chunks:
            yield chunk


async def _grant(manager: RpcClient, method: str, params: Mapping[str, Any],
                 verb: ClientVerb) -> dict[str, Any] | None:
    """The manager's grant, or ``None`` if it gives none: an older manager, or a
    refusal, which the call itself then meets in its own words (a read-only token
    refused ``load_dump``, not ``grant_load``)."""
    try:
        link = await manager.call(method, params, verb=verb)
    except RemoteError as exc:
        log.debug("no %s (%s): through the manager", method, exc)
        return None
    if not isinstance(link, dict) or not all(
            isinstance(link.get(key), str) for key in ("url", "server_name", "ca", "grant")):
        raise RemoteError(f"{method} answered {link!r:.100}")
    return link


def _tls(link: Mapping[str, Any]) -> ssl.SSLContext:
    """TLS that takes only the service's CA (the name is checked by the caller)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=link["ca"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def agent_client(link: Mapping[str, Any]) -> RpcClient:
    """A client of the granted agent: TLS verified with the service's CA and the name
    the node's certificate bears; the grant as its credential."""
    return RpcClient(link["url"], token=link["grant"], verify=_tls(link),
                     server_name=link["server_name"], connect_timeout=CONNECT_TIMEOUT)


def _agent_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key in AGENT_PARAMS}


async def upload(manager: RpcClient, method: str, params: Mapping[str, Any], field: str,
                 filename: str, chunks: AsyncIterable[bytes], *,
                 timeout: float | None = None, direct: bool = True,
                 size: int | None = None) -> Any:
    """``manager.upload(...)``; a dump (``DIRECT_UPLOADS``) is sent straight to the
    node that loads it when the manager grants it (and ``direct``), with ``rpc.bulk``
    (announcing ``size`` bytes of file when it is given: ``chunks`` must hold as
    many)."""
    link = None
    if direct and method in DIRECT_UPLOADS:
        link = await _grant(manager, "grant_load", {**params, "method": method}, "POST")
    if link is None:
        return await manager.upload(method, params, field, filename, chunks, timeout=timeout)
    node = link.get("node")
    watched = _Watched(chunks)
    try:
        answer = await bulk.post_form(
            link["url"], form_fields(method, 1, _agent_params(params)), field, filename,
            watched, size=size, token=link["grant"], verify=_tls(link),
            server_name=link["server_name"], connect_timeout=CONNECT_TIMEOUT,
            timeout=timeout)
    except UnreachableError as exc:
        if watched.started:
            raise
        log.info("node %s not reachable from here (%s): through the manager", node, exc)
        return await manager.upload(method, params, field, filename, chunks, timeout=timeout)
    except RemoteError as exc:
        raise RemoteError(f"{exc} (node {node})", code=exc.code,
                          http_status=exc.http_status) from None
    if not isinstance(answer, dict):
        raise RemoteError(f"node {node} answered {answer!r:.100}")
    return {"nodes": [node], **{key: answer.get(key) for key in
                                ("bytes", "sql_bytes", "gzip", "seconds")}}


@contextlib.asynccontextmanager
async def stream(manager: RpcClient, method: str, params: Mapping[str, Any] | None = None,
                 *, verb: ClientVerb = "GET", timeout: float | None = None,
                 direct: bool = True) -> AsyncIterator[ByteStream]:
    """``manager.stream(...)``; an export (``DIRECT_STREAMS``) is taken straight from
    the node that makes it when the manager grants it (and ``direct``)."""
    params = dict(params or {})
    async with contextlib.AsyncExitStack() as stack:
        link = None
        if direct and method in DIRECT_STREAMS:
            link = await _grant(manager, f"grant_{method}", params, "GET")
        if link is not None:
            try:
                found: ByteStream = await stack.enter_async_context(bulk.get_stream(
                    link["url"], method, _agent_params(params), token=link["grant"],
                    verify=_tls(link), server_name=link["server_name"],
                    connect_timeout=CONNECT_TIMEOUT, timeout=timeout))
            except UnreachableError as exc:
                log.info("node %s not reachable from here (%s): through the manager",
                         link.get("node"), exc)
            else:
                found.headers.update(link.get("headers") or {})
                yield found
                return
        yield await stack.enter_async_context(manager.stream(method, params, verb=verb,
                                                             timeout=timeout))
