"""A streamed result taken with one plain HTTP/1.1 GET on asyncio's own TLS streams.

httpx hands a body on one TLS record (16 KiB) at a time, each through several
layers of Python: some 13 000 turns for a 200 MB dump, which cost a client more
CPU than the dump's own making. asyncio's TLS transport hands on all that one
read of the socket decrypted (up to 256 KiB), and this reader takes the body in
blocks of up to ``BLOCK``: a few hundred turns.

It speaks only what a ConPaaS server answers a GET with: a JSON reply (an error,
raised as ``RemoteError`` like ``RpcClient`` does) or the stream, chunked or of a
given length, ending with the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc.client import ByteStream, result_of

BLOCK = 1 << 20
HEAD_LIMIT = 64 * 1024
READ_LIMIT = 2 * BLOCK


class BulkStream(ByteStream):
    """The body of a streamed result read from an asyncio TLS stream."""

    def __init__(self, reader: asyncio.StreamReader, headers: httpx.Headers, url: str,
                 timeout: float | None) -> None:
        self.headers = headers
        self._reader = reader
        self._url = url
        self._timeout = timeout

    async def _read(self, size: int) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readexactly(size)

    async def _line(self) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._reader.readuntil(b"\r\n")

    async def _sized(self, size: int) -> AsyncIterator[bytes]:
        while size > 0:
            block = await self._read(min(size, BLOCK))
            size -= len(block)
            yield block

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            line = await self._line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise RemoteError(f"the stream from {self._url} is not well chunked") from None
            if size == 0:
                return
            async for block in self._sized(size):
                yield block
            if await self._read(2) != b"\r\n":
                raise RemoteError(f"the stream from {self._url} is not well chunked")

    async def chunks(self) -> AsyncIterator[bytes]:
        length = self.length
        try:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                body = self._chunked()
            elif length is not None:
                body = self._sized(length)
            else:
                body = self._until_closed()
            async for block in body:
                yield block
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError,
                ssl.SSLError, TimeoutError) as exc:
            raise RemoteError(f"the stream from {self._url} was cut short: "
                              f"{type(exc).__name__}") from None

    async def _until_closed(self) -> AsyncIterator[bytes]:
        while True:
            async with asyncio.timeout(self._timeout):
                block = await self._reader.read(BLOCK)
            if not block:
                return
            yield block


def _request(url: str, method: str, params: Mapping[str, Any] | None,
             token: str | None, host: str) -> bytes:
    query = {"method": method, "id": "1"}
    if params:
        query["params"] = json.dumps(dict(params))
    path = (urlsplit(url).path or "/") + "?" + urlencode(query)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close",
             "Accept-Encoding: identity"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _head(raw: bytes) -> tuple[int, httpx.Headers]:
    """The status and headers of a reply's head."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise RemoteError(f"not an HTTP reply: {lines[0][:100]!r}")
    fields = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            fields.append((name.strip(), value.strip()))
    return int(parts[1]), httpx.Headers(fields)


@contextlib.asynccontextmanager
async def get_stream(url: str, method: str, params: Mapping[str, Any] | None = None, *,
                     token: str | None = None, verify: ssl.SSLContext,
                     server_name: str, connect_timeout: float = 10.0,
                     timeout: float | None = None) -> AsyncIterator[BulkStream]:
    """GET ``method`` of the server at ``url`` (``https://host:port/``), whose
    certificate must name ``server_name``; its streamed result.

    ``UnreachableError`` if the server cannot be reached or its certificate is not
    the one expected, ``RemoteError`` for an error reply.
    """
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None:
        raise UnreachableError(url, detail="not an https URL")
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port or 443, ssl=verify, server_hostname=server_name,
                limit=READ_LIMIT)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise UnreachableError(url, detail=str(exc) or type(exc).__name__) from None
    try:
        try:
            writer.write(_request(url, method, params, token, server_name))
            async with asyncio.timeout(timeout or connect_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            raise UnreachableError(url, detail=str(exc) or type(exc).__name__) from None
        if len(raw) > HEAD_LIMIT:
            raise RemoteError(f"{url} answered with a head of {len(raw)} bytes")
        status, headers = _head(raw)
        stream = BulkStream(reader, headers, url, timeout)
        if headers.get("content-type", "").startswith("application/json"):
            body = b"".join([chunk async for chunk in stream.chunks()])
            result_of(httpx.Response(status, headers=headers, content=body))
            raise RemoteError("the peer answered with a result, not a stream",
                              http_status=status)
        if status != 200:
            raise RemoteError(f"HTTP {status}", http_status=status)
        yield stream
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
