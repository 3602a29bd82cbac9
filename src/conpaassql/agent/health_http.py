"""The agent's plain-HTTP health port: ``GET /primary``, ``/replica``, ``/health``,
``/source``.

A minimal HTTP/1.x listener (one request per connection, then closed), as
HAProxy's ``option httpchk`` speaks to it. It tells only the node's role and lag;
it takes no credentials and holds none. Anything that is not a request it
understands is answered 400 (404 for an unknown path, 405 for a method other
than GET or HEAD), and the listener goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from conpaassql.agent.health import BadQueryError, HealthProbe, Query, parse_query

log = logging.getLogger(__name__)

#: Bytes of a request's head (request line and headers) at most.
MAX_HEAD = 4096
#: Seconds a client has to send its request's head.
READ_TIMEOUT = 5.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}
_REQUEST_LINE = re.compile(r"([A-Z]{1,16}) (/[!-~]*) HTTP/1\.[01]")


class BadRequestError(ValueError):
    """Not a request this listener understands (answered 400)."""


async def _read_head(reader: asyncio.StreamReader) -> list[bytes]:
    """The request line and header lines, up to the empty line."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            raise BadRequestError("request head too long") from None
        size += len(line)
        if size > MAX_HEAD:
            raise BadRequestError("request head too long")
        if not line.endswith(b"\n"):
            raise BadRequestError("request ended early")
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line)


def parse_request_line(line: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, path, query pairs) of an HTTP/1.x request line; ``BadRequestError`` if it
    is not one."""
    match = _REQUEST_LINE.fullmatch(line.decode("latin-1").rstrip("\r\n"))
    if match is None:
        raise BadRequestError("not an HTTP/1.x request line")
    method, target = match.groups()
    try:
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                          errors="strict")
    except ValueError:
        raise BadRequestError("bad query string") from None
    return method, parts.path, query


class HealthListener:
    """Serves the health endpoints on ``bind:port`` from ``probe``'s view."""

    def __init__(self, probe: HealthProbe, bind: str, port: int, default_max_lag: float) -> None:
        self.probe = probe
        self.bind = bind
        self.port = port
        self.default_max_lag = default_max_lag
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, self.bind, self.port,
                                                 limit=MAX_HEAD, reuse_address=True)
        log.info("health endpoints on http://%s:%d/", self.bind, self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, head_only = await self._respond(reader)
            await _write(writer, status, body, head_only)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any], bool]:
        try:
            lines = await asyncio.wait_for(_read_head(reader), READ_TIMEOUT)
            if not lines:
                raise BadRequestError("no request line")
            method, path, pairs = parse_request_line(lines[0])
            query = parse_query(path, pairs)
        except (BadRequestError, BadQueryError) as exc:
            return 400, {"error": str(exc)}, False
        if query is None:
            return 404, {"error": "no such endpoint: /primary, /replica, /health, /source"}, False
        if method not in ("GET", "HEAD"):
            return 405, {"error": "only GET and HEAD"}, False
        return await self._verdict(query) + (method == "HEAD",)

    async def _verdict(self, query: Query) -> tuple[int, dict[str, Any]]:
        try:
            verdict = await self.probe.answer(query, self.default_max_lag)
        except Exception:  # any failure is an answer, not a dead listener
            log.exception("health check %s failed", query.path)
            return 500, {"error": "the check failed"}
        return verdict.status, verdict.body


async def _write(writer: asyncio.StreamWriter, status: int, body: dict[str, Any],
                 head_only: bool) -> None:
    data = (json.dumps(body, separators=(",", ":")) + "\n").encode("utf-8")
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
    writer.write(head if head_only else head + data)
    await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
