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
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc.client import ByteStream, result_of
from conpaassql.rpc.multipart import form_parts

BLOCK = 1 << 20
HEAD_LIMIT = 64 * 1024
READ_LIMIT = 2 * BLOCK
#: What an upload gathers into one write, and what the transport may hold before
#: a write waits for the peer.
SEND_BLOCK = BLOCK
WRITE_HIGH = 4 * BLOCK
#: The most of a reply to an upload that is read (a JSON object).
REPLY_LIMIT = 1 << 20


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


async def _connect(url: str, verify: ssl.SSLContext, server_name: str,
                   connect_timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname is None:
        raise UnreachableError(url, detail="not an https URL")
    try:
        async with asyncio.timeout(connect_timeout):
            return await asyncio.open_connection(
                parts.hostname, parts.port or 443, ssl=verify, server_hostname=server_name,
                limit=READ_LIMIT)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise UnreachableError(url, detail=str(exc) or type(exc).__name__) from None


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
    reader, writer = await _connect(url, verify, server_name, connect_timeout)
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


# -- uploads ------------------------------------------------------------------


def _post_head(url: str, host: str, content_type: str, length: int | None,
               token: str | None) -> bytes:
    lines = [f"POST {urlsplit(url).path or '/'} HTTP/1.1", f"Host: {host}",
             "Connection: close", "Accept-Encoding: identity",
             f"Content-Type: {content_type}",
             "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


async def _reply(reader: asyncio.StreamReader, url: str) -> httpx.Response:
    """The peer's reply, read whole (a JSON object), as httpx would have it."""
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > HEAD_LIMIT:
        raise RemoteError(f"{url} answered with a head of {len(raw)} bytes")
    status, headers = _head(raw)
    body = bytearray()
    async for block in BulkStream(reader, headers, url, None).chunks():
        body += block
        if len(body) > REPLY_LIMIT:
            raise RemoteError(f"{url} answered with more than {REPLY_LIMIT} bytes")
    return httpx.Response(status, headers=headers, content=bytes(body))


class _Sender:
    """Writes a request in large blocks while its reply is awaited: a peer that
    answers early (an error) or hangs up stops the sending."""

    def __init__(self, writer: asyncio.StreamWriter, reply: asyncio.Task[httpx.Response],
                 prefix: bytes, chunked: bool, timeout: float | None) -> None:
        self._writer = writer
        self._reply = reply
        self._prefix = prefix  # the request's head, sent with the first block
        self._chunked = chunked
        self._timeout = timeout

    async def write(self, blocks: list[bytes], last: bool = False) -> bool:
        """Send ``blocks`` (of the body); False if the peer answered or hung up first."""
        pieces = blocks
        if self._chunked:
            size = sum(len(block) for block in blocks)
            pieces = [b"%x\r\n" % size, *blocks, b"\r\n"] if size else []
            if last:
                pieces.append(b"0\r\n\r\n")
        if self._prefix:
            pieces = [self._prefix, *pieces]
            self._prefix = b""
        if self._reply.done() or self._writer.transport.is_closing():
            return False
        self._writer.writelines(pieces)
        drain = asyncio.ensure_future(self._writer.drain())
        try:
            done, _ = await asyncio.wait({drain, self._reply}, timeout=self._timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
        if not done:
            raise TimeoutError
        if drain not in done or drain.cancelled():
            return False
        return drain.exception() is None


async def _send_form(sender: _Sender, head: bytes, chunks: AsyncIterable[bytes],
                     tail: bytes, size: int | None) -> None:
    """Send the form: ``head``, the file from ``chunks`` gathered into blocks of at
    least ``SEND_BLOCK``, ``tail``; ``size`` bytes of file when it is given."""
    blocks, gathered, sent = [head], len(head), 0
    async for chunk in chunks:
        if not chunk:
            continue
        blocks.append(chunk)
        gathered += len(chunk)
        sent += len(chunk)
        if size is not None and sent > size:
            raise RemoteError(f"the file grew past its {size} bytes while it was sent")
        if gathered >= SEND_BLOCK:
            if not await sender.write(blocks):
                return
            blocks, gathered = [], 0
    if size is not None and sent != size:
        raise RemoteError(f"the file ended after {sent} of its {size} bytes")
    await sender.write([*blocks, tail], last=True)


async def post_form(url: str, fields: Mapping[str, str], file_field: str, filename: str,
                    chunks: AsyncIterable[bytes], *, size: int | None = None,
                    token: str | None = None, verify: ssl.SSLContext, server_name: str,
                    connect_timeout: float = 10.0, timeout: float | None = None) -> Any:
    """``RpcClient.upload`` on asyncio's TLS streams: POST a form of ``fields`` and
    the file ``file_field`` read from ``chunks`` (``size`` bytes when known: else
    chunked) to the server at ``url``; the result of its reply.

    Errors as ``RpcClient.upload`` has them: ``UnreachableError`` when the server
    cannot be reached (then nothing was taken from ``chunks``) or hangs up without a
    reply, ``RemoteError`` for its error reply, sent even before the whole file.
    """
    reader, writer = await _connect(url, verify, server_name, connect_timeout)
    writer.transport.set_write_buffer_limits(high=WRITE_HIGH)
    content_type, head, tail = form_parts(fields, file_field, filename)
    length = None if size is None else len(head) + size + len(tail)
    reply = asyncio.ensure_future(_reply(reader, url))
    sender = _Sender(writer, reply, _post_head(url, server_name, content_type, length, token),
                     length is None, timeout)
    try:
        try:
            await _send_form(sender, head, chunks, tail, size)
            async with asyncio.timeout(timeout):
                response = await reply
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as exc:
            raise UnreachableError(url, detail=str(exc) or type(exc).__name__) from None
        return result_of(response)
    finally:
        if reply.done() and not reply.cancelled():
            reply.exception()  # taken: a reply after our own failure is not news
        reply.cancel()
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
