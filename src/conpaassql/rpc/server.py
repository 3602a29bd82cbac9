"""The ASGI application serving one registry in the ConPaaS dialect.

Everything is answered with a JSON body: success, error replies (HTTP 200),
protocol errors (400, 404, 405, 413) and refusals (401, 403). A handler that
raises anything at all still produces an error reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from conpaassql.errors import (
    AuthError,
    BadRequestError,
    ConpaasSQLError,
    InvalidArgumentError,
    MissingArgumentError,
    UnexpectedArgumentsError,
)
from conpaassql.rpc.multipart import FormReader, UploadStream
from conpaassql.rpc.protocol import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    ProtocolError,
    RpcRequest,
    error_reply,
    failure,
    parse_json_body,
    parse_params_text,
    success,
)
from conpaassql.rpc.registry import CallContext, Method, Registry

log = logging.getLogger(__name__)

Authorizer = Callable[[Request, Method], Awaitable[str | None]]
"""Decides whether a request may call a method; returns a principal name or
raises ``AuthError`` (``status`` attribute 401 or 403)."""

Gate = Callable[[Request], Awaitable[None]]
"""Checks a request's credential before its body is read (raises ``AuthError``):
nobody without one holds the server reading a slow or endless body."""

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_MAX_UPLOAD = 1 << 40
#: Requests handled at once; one more is answered 503 at once rather than queued.
DEFAULT_MAX_ACTIVE = 256
#: Longest wait for a JSON body (a client that sends it slowly holds a request).
DEFAULT_BODY_TIMEOUT = 30.0
ALL_VERBS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


class Reply(JSONResponse):
    """A JSON reply that any client can decode: ASCII only, lone surrogates escaped."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")


class RpcApp:
    """Dispatches requests at ``/`` to the methods of a registry."""

    def __init__(
        self,
        registry: Registry,
        *,
        authorizer: Authorizer | None = None,
        gate: Gate | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_upload: int = DEFAULT_MAX_UPLOAD,
        max_active: int = DEFAULT_MAX_ACTIVE,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.registry = registry
        self.authorizer = authorizer
        self.gate = gate
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_active = max_active
        self.body_timeout = body_timeout
        self.active = 0

    def asgi(self, routes: Sequence[BaseRoute] = ()) -> Starlette:
        """The application: the registry at ``/``, and ``routes`` beside it."""

        async def not_found(request: Request, exc: Exception) -> Response:
            return Reply(failure("1.0", None, "Not found", METHOD_NOT_FOUND), 404)

        async def wrong_verb(request: Request, exc: Exception) -> Response:
            message = f"HTTP {request.method} not allowed: use GET or POST"
            return Reply(failure("1.0", None, message, INVALID_REQUEST), 405)

        async def crashed(request: Request, exc: Exception) -> Response:
            log.error("unhandled error in RPC server: %s", type(exc).__name__)
            return Reply(failure("1.0", None, "Unknown error.", INTERNAL_ERROR), 200)

        return Starlette(
            routes=[Route("/", self.endpoint, methods=ALL_VERBS), *routes],
            exception_handlers={404: not_found, 405: wrong_verb, Exception: crashed},
        )

    async def endpoint(self, request: Request) -> Response:
        if self.active >= self.max_active:
            return Reply(failure("1.0", None, f"Service in wrong state DETAIL:busy: "
                                 f"{self.active} requests in progress; try again",
                                 INVALID_REQUEST), 503)
        self.active += 1
        try:
            if self.gate is not None:
                try:
                    await self.gate(request)
                except AuthError as exc:
                    return Reply(failure("1.0", None, str(exc), exc.code), exc.status,
                                 headers={"Connection": "close"})
            rpc, upload, _ = await self._read(request)
            return await self._dispatch(request, rpc, upload)
        except ProtocolError as exc:
            body = failure(exc.version, exc.request_id, exc.message, exc.code)
            return Reply(body, exc.status)
        except HTTPException as exc:
            return Reply(failure("1.0", None, str(exc.detail), PARSE_ERROR),
                                exc.status_code)
        finally:
            self.active -= 1

    async def _read(self, request: Request) -> tuple[RpcRequest, Upload | None,
                                                     FormReader | None]:
        if request.method == "GET":
            query = request.query_params
            method = query.get("method")
            request_id = query.get("id")
            if not method:
                raise ProtocolError(400, "Did not specify method", INVALID_REQUEST, request_id)
            params = parse_params_text(query.get("params"))
            return RpcRequest(method, params, request_id, "1.0", "GET"), None, None
        if request.method != "POST":
            raise ProtocolError(405, f"HTTP {request.method} not allowed: use GET or POST",
                                INVALID_REQUEST)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            reader = FormReader(content_type, request.stream().__aiter__(),
                                max_upload=self.max_upload, max_field=self.max_body)
            try:
                async with asyncio.timeout(self.body_timeout):  # the fields, not the file
                    rpc, upload = await self._read_upload(reader)
            except TimeoutError:
                raise ProtocolError(408, f"Request form not received within "
                                    f"{self.body_timeout:g} s", INVALID_REQUEST) from None
            return rpc, upload, reader
        return parse_json_body(await self._read_body(request)), None, None

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise ProtocolError(413, f"Request body larger than {self.max_body} bytes",
                                INVALID_REQUEST)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_body:
                        raise ProtocolError(413, f"Request body larger than {self.max_body} "
                                            "bytes", INVALID_REQUEST)
                    chunks.append(chunk)
        except TimeoutError:
            raise ProtocolError(408, f"Request body not received within "
                                f"{self.body_timeout:g} s", INVALID_REQUEST) from None
        return b"".join(chunks)

    async def _read_upload(self, reader: FormReader) -> tuple[RpcRequest, Upload]:
        """The form's fields up to the method's file, which is left to stream."""
        params: dict[str, Any] = {}
        method: str | None = None
        request_id: Any = None
        upload = Upload()
        while (part := await reader.next_part()) is not None:
            if isinstance(part, UploadStream):
                if not method:
                    raise ProtocolError(400, "Did not specify method", INVALID_REQUEST,
                                        request_id)
                declared = self.registry.get(method)
                if declared is not None and part.name in declared.files:
                    upload.stream = part
                    break
                upload.unexpected.append(part.name)
                await part.discard()
                continue
            key, value = part
            if key == "method":
                method = value
            elif key == "id":
                request_id = value
            elif key == "params":
                extra = parse_params_text(value)
                if not isinstance(extra, dict):
                    raise ProtocolError(400, "Invalid argument: params DETAIL:must be a JSON "
                                        "object", INVALID_REQUEST, request_id)
                params.update(extra)
            else:
                params[key] = value
        if not method:
            raise ProtocolError(400, "Did not specify method", INVALID_REQUEST, request_id)
        upload.reader = reader
        return RpcRequest(method, params, request_id, "1.0", "UPLOAD"), upload

    async def _dispatch(self, request: Request, rpc: RpcRequest,
                        upload: Upload | None) -> Response:
        assert rpc.method is not None
        method = self.registry.get(rpc.method)
        if method is None:
            status = 200 if rpc.version == "2.0" else 404
            return await _after(upload, Reply(failure(rpc.version, rpc.id, "method not found",
                                              METHOD_NOT_FOUND), status))
        if not _verb_allowed(method, rpc.form):
            message = f"method {method.name} must be called with {_how(method)}"
            return await _after(upload, Reply(failure(rpc.version, rpc.id, message,
                                                      INVALID_REQUEST), 405))
        principal: str | None = None
        if self.authorizer is not None:
            try:
                principal = await self.authorizer(request, method)
            except AuthError as exc:
                return await _after(upload, Reply(error_reply(rpc, exc), exc.status))
        try:
            result = await self._call(method, rpc, upload, request, principal)
        except ProtocolError:
            raise
        except ConpaasSQLError as exc:
            return await _after(upload, Reply(error_reply(rpc, exc)))
        except Exception:
            log.exception("method %s failed", method.name)
            return await _after(upload, Reply(failure(rpc.version, rpc.id, "Unknown error.",
                                                      INTERNAL_ERROR)))
        if isinstance(result, Response):
            return result
        return Reply(success(rpc, result))

    async def _call(self, method: Method, rpc: RpcRequest, upload: Upload | None,
                    request: Request, principal: str | None) -> Any:
        if not isinstance(rpc.params, dict):
            raise InvalidArgumentError("params", detail="must be a JSON object")
        files = upload.files if upload is not None else {}
        for name in method.files:
            if name not in files:
                raise MissingArgumentError(name)
        if upload is not None and upload.unexpected:
            raise UnexpectedArgumentsError(upload.unexpected)
        params = method.validate(rpc.params)
        context = CallContext(
            method=method.name,
            headers=request.headers,
            files=files,
            client_host=request.client.host if request.client else None,
            principal=principal,
        )
        result = await method.handler(params, context)
        if upload is not None and upload.reader is not None:
            trailing = await upload.reader.rest()
            if trailing:
                raise UnexpectedArgumentsError(
                    trailing, detail="the file must be the last part of the form")
        return result


@dataclass
class Upload:
    """What an UPLOAD carried: the method's file, still streaming, and stray files."""

    stream: UploadStream | None = None
    unexpected: list[str] = field(default_factory=list)
    reader: FormReader | None = None

    @property
    def files(self) -> dict[str, UploadStream]:
        return {} if self.stream is None else {self.stream.name: self.stream}


async def _drain_quietly(reader: FormReader) -> None:
    """Read what is left of an upload so that the client sees our reply."""
    with contextlib.suppress(ProtocolError):
        await reader.rest()


async def _after(upload: Upload | None, reply: Response) -> Response:
    """``reply``, once the rest of an upload (if any) has been read."""
    if upload is not None and upload.reader is not None:
        if upload.stream is not None and not upload.stream.finished:
            with contextlib.suppress(ProtocolError):
                await upload.stream.discard()
        await _drain_quietly(upload.reader)
    return reply


def _verb_allowed(method: Method, form: str) -> bool:
    if method.verb == "GET":
        return form in {"GET", "POST"}
    if method.verb == "POST":
        return form == "POST"
    return form == "UPLOAD"


def _how(method: Method) -> str:
    if method.verb == "UPLOAD":
        return "UPLOAD (a multipart/form-data POST)"
    return method.verb


__all__ = ["Authorizer", "BadRequestError", "RpcApp"]
