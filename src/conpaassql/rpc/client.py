"""The one async client of the ConPaaS dialect: manager to agents, CLI, tests.

``call`` sends a method the way its verb wants (GET query or POST JSON),
``upload`` sends a multipart form, and an error reply raises ``RemoteError``
carrying the peer's own text. A peer that cannot be reached raises
``UnreachableError``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, BinaryIO, Literal

import httpx

from conpaassql.errors import RemoteError, UnreachableError

ClientVerb = Literal["GET", "POST"]


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
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
        request_id = self._new_id()
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        try:
            if verb == "GET":
                query: dict[str, str] = {"method": method, "id": str(request_id)}
                if params:
                    query["params"] = json.dumps(dict(params))
                response = await self._http.get(self.url, params=query, **extra)
            else:
                body = {"method": method, "params": dict(params or {}), "id": request_id}
                response = await self._http.post(self.url, json=body, **extra)
        except httpx.HTTPError as exc:
            raise UnreachableError(self.url, detail=_describe(exc)) from None
        return _result_of(response)

    async def get(self, method: str, **params: Any) -> Any:
        return await self.call(method, params, verb="GET")

    async def post(self, method: str, **params: Any) -> Any:
        return await self.call(method, params, verb="POST")

    async def upload(
        self,
        method: str,
        params: Mapping[str, Any],
        files: Mapping[str, tuple[str, BinaryIO]],
        *,
        timeout: float | None = None,
    ) -> Any:
        """Send ``method`` as a multipart form with ``files`` (name -> (filename, file))."""
        data = {"method": method, "id": str(self._new_id())}
        for key, value in params.items():
            data[key] = value if isinstance(value, str) else json.dumps(value)
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        try:
            response = await self._http.post(
                self.url, data=data, files={k: v for k, v in files.items()}, **extra
            )
        except httpx.HTTPError as exc:
            raise UnreachableError(self.url, detail=_describe(exc)) from None
        return _result_of(response)


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return text


def _result_of(response: httpx.Response) -> Any:
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
                  timeout: float = 30.0) -> Any:
    """One call from synchronous code (scripts, tests), on an event loop of its own."""

    async def once() -> Any:
        async with RpcClient(url, token=token, timeout=timeout) as client:
            return await client.call(method, params, verb=verb)

    return asyncio.run(once())
