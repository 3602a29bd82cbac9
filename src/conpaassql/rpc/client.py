"""The one async client of the ConPaaS dialect: manager to agents, CLI, tests.

``call`` sends a method the way its verb wants (GET query or POST JSON),
``upload`` sends a multipart form, and an error reply raises ``RemoteError``
carrying the peer's own text. A peer that cannot be reached raises
``UnreachableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, BinaryIO, Literal

import httpx

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc.multipart import encode_form

ClientVerb = Literal["GET", "POST"]
CHUNK = 1 << 20
#: Bytes of a streamed result handed on at a time (fewer trips for big dumps).
STREAM_CHUNK = 512 * 1024


class RpcClient:
    """Talks to one manager or agent at ``url`` (``http(s)://host:port/``)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        verify: Any = True,
        cert: Any = None,
        server_name: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        """``server_name``: the name the peer's certificate must hold (and the SNI
        sent), where it is not the host of ``url`` (a node reached by its address).
        ``connect_timeout``: the limit of connecting for uploads and streams (else
        their timeout, else 10 s)."""
        self.url = url if url.endswith("/") else url + "/"
        self._connect_timeout = connect_timeout
        self._extensions = {"sni_hostname": server_name} if server_name else {}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self.url.startswith("http://"):
            verify = False  # no TLS to verify: spare loading the CA bundle
        self._http = httpx.AsyncClient(
            headers=headers, timeout=timeout, verify=verify, cert=cert, transport=transport
        )
        self._next_id = 0

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        verb: ClientVerb = "POST",
        timeout: float | None = None,
    ) -> Any:
        """Call ``method``; return its result or raise the peer's error."""
        request = self._request(method, params, verb)
        if timeout is not None:
            request["timeout"] = timeout
        try:
            response = await self._http.request(**request)
        except httpx.HTTPError as exc:
            raise UnreachableError(self.url, detail=_describe(exc)) from None
        return result_of(response)

    async def get(self, method: str, **params: Any) -> Any:
        return await self.call(method, params, verb="GET")

    async def post(self, method: str, **params: Any) -> Any:
        return await self.call(method, params, verb="POST")

    async def upload(
        self,
        method: str,
        params: Mapping[str, Any],
        field: str,
        filename: str,
        chunks: AsyncIterable[bytes],
        *,
        timeout: float | None = None,
    ) -> Any:
        """Send ``method`` as a multipart form: ``params`` as fields, then the file ``field``
        read from ``chunks`` as it is sent (never whole in memory).

        Without ``timeout`` the call waits as long as the peer keeps reading and
        then answering: loading a dump takes the time it takes.
        """
        fields = form_fields(method, self._new_id(), params)
        content_type, body = encode_form(fields, field, filename, chunks)
        try:
            response = await self._http.post(
                self.url, content=body, headers={"Content-Type": content_type},
                timeout=_long(timeout, self._connect_timeout), extensions=self._extensions)
        except httpx.HTTPError as exc:
            raise UnreachableError(self.url, detail=_describe(exc)) from None
        return result_of(response)

    async def upload_file(
        self,
        method: str,
        params: Mapping[str, Any],
        field: str,
        file: BinaryIO,
        filename: str,
        *,
        progress: Callable[[int], None] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """``upload`` of an open binary file; ``progress(n)`` after each ``n`` bytes sent."""
        return await self.upload(method, params, field, filename,
                                 read_chunks(file, progress), timeout=timeout)

    @contextlib.asynccontextmanager
    async def stream(self, method: str, params: Mapping[str, Any] | None = None, *,
                     verb: ClientVerb = "GET",
                     timeout: float | None = None) -> AsyncIterator[ByteStream]:
        """Call a method whose result is a byte stream (a dump) and read it as it comes.

        An error reply raises ``RemoteError`` before anything is yielded; a stream
        cut short raises ``RemoteError`` from ``ByteStream.chunks``.
        """
        request = self._request(method, params, verb)
        try:
            response = await self._http.send(
                self._http.build_request(**request, timeout=_long(timeout, self._connect_timeout)),
                stream=True)
        except httpx.HTTPError as exc:
            raise UnreachableError(self.url, detail=_describe(exc)) from None
        try:
            if _is_json(response):
                await response.aread()
                result_of(response)
                raise RemoteError("the peer answered with a result, not a stream",
                                  http_status=response.status_code)
            if response.status_code != 200:
                raise RemoteError(f"HTTP {response.status_code}",
                                  http_status=response.status_code)
            yield ByteStream(response, self.url)
        finally:
            await response.aclose()

    async def download(self, method: str, params: Mapping[str, Any] | None, out: BinaryIO,
                       *, verb: ClientVerb = "GET",
                       progress: Callable[[int], None] | None = None,
                       timeout: float | None = None) -> int:
        """Write a streamed result into ``out``; the number of bytes written."""
        written = 0
        async with self.stream(method, params, verb=verb, timeout=timeout) as stream:
            async for chunk in stream.chunks():
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        return written

    def _request(self, method: str, params: Mapping[str, Any] | None,
                 verb: ClientVerb) -> dict[str, Any]:
        request_id = self._new_id()
        if verb == "GET":
            query: dict[str, str] = {"method": method, "id": str(request_id)}
            if params:
                query["params"] = json.dumps(dict(params))
            return {"method": "GET", "url": self.url, "params": query,
                    "extensions": self._extensions}
        body = {"method": method, "params": dict(params or {}), "id": request_id}
        return {"method": "POST", "url": self.url, "json": body,
                "extensions": self._extensions}


class ByteStream:
    """The body of a streamed result, with what its headers tell."""

    def __init__(self, response: httpx.Response, url: str) -> None:
        self.response = response
        self.headers = response.headers
        self._url = url

    @property
    def length(self) -> int | None:
        """The announced size in bytes, when the peer knew it."""
        text = self.headers.get("content-length", "")
        return int(text) if text.isdigit() else None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw(STREAM_CHUNK):
                yield chunk
        except httpx.HTTPError as exc:
            raise RemoteError(f"the stream from {self._url} was cut short: "
                              f"{_describe(exc)}") from None


def form_fields(method: str, request_id: int, params: Mapping[str, Any]) -> dict[str, str]:
    """The plain fields of an upload's form: the method, the id, the params (JSON
    unless text)."""
    fields = {"method": method, "id": str(request_id)}
    for key, value in params.items():
        fields[key] = value if isinstance(value, str) else json.dumps(value)
    return fields


async def read_chunks(file: BinaryIO, progress: Callable[[int], None] | None = None,
                      size: int = CHUNK) -> AsyncIterator[bytes]:
    """The contents of ``file`` in chunks of ``size`` bytes, reported to ``progress``."""
    while True:
        chunk = await asyncio.to_thread(file.read, size)
        if not chunk:
            return
        if progress is not None:
            progress(len(chunk))
        yield chunk


def _long(timeout: float | None, connect: float | None = None) -> httpx.Timeout:
    """A timeout for long transfers: connecting is bounded, the transfer is not."""
    connect = connect or timeout or 10.0
    return httpx.Timeout(timeout, connect=connect, pool=connect)


def _is_json(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).startswith("application/json")


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text


def result_of(response: httpx.Response) -> Any:
    """The result of a JSON reply; ``RemoteError`` carrying an error reply's text."""
    try:
        body = response.json()
    except ValueError:
        raise RemoteError(
            f"HTTP {response.status_code}: not a JSON reply", http_status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise RemoteError("reply is not a JSON object", http_status=response.status_code)
    error = body.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise RemoteError(str(error.get("message")), code=error.get("code"),
                              http_status=response.status_code)
        raise RemoteError(str(error), http_status=response.status_code)
    if response.status_code != 200:
        raise RemoteError(f"HTTP {response.status_code}", http_status=response.status_code)
    return body.get("result")


def call_blocking(url: str, method: str, params: Mapping[str, Any] | None = None, *,
                  verb: ClientVerb = "POST", token: str | None = None,
                  timeout: float = 30.0, verify: Any = True,
                  server_name: str | None = None) -> Any:
    """One call from synchronous code (scripts, tests), on an event loop of its own."""

    async def once() -> Any:
        async with RpcClient(url, token=token, timeout=timeout, verify=verify,
                             server_name=server_name) as client:
            return await client.call(method, params, verb=verb)

    return asyncio.run(once())
