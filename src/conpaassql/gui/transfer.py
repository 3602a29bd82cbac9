"""Dumps through the front-end, streamed both ways: an upload goes from the
browser's request straight into ``load_dump``, an export from ``sqldump`` straight
to the browser, each to or from the node's agent itself when the manager grants it
(``rpc.transfer``), else through the manager. Neither is held whole anywhere."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from conpaassql.errors import ConpaasSQLError
from conpaassql.gui.context import status_of
from conpaassql.gui.pages import gui_of
from conpaassql.rpc import transfer as direct

log = logging.getLogger(__name__)

MAX_NAME = 200


def _file_name(text: str | None) -> str:
    """A plain file name from what the browser said (no path, no odd characters)."""
    name = (text or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in "\"';")[:MAX_NAME]
    return name or "dump.sql"


def _database(request: Request) -> dict[str, Any]:
    database = (request.query_params.get("database") or "").strip()
    return {"database": database} if database else {}


async def upload(request: Request) -> Response:
    """POST the dump as the request's body (``?database=&filename=``): sent on to
    ``load_dump`` as the manager reads it."""
    gui = gui_of(request)
    if request.headers.get("content-length") == "0":
        return JSONResponse({"error": "the file is empty"}, status_code=400)
    params = _database(request)
    name = _file_name(request.query_params.get("filename"))

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    try:
        async with gui.client(request) as client:
            answer = await direct.upload(client, "load_dump", params, "mysqldump_file",
                                         name, chunks())
    except ConpaasSQLError as exc:
        log.info("load_dump of %s refused: %s", name, exc)
        return gui.failed(request, exc)
    log.info("load_dump of %s done", name)
    return JSONResponse({"ok": True, **(answer if isinstance(answer, dict) else {})})


async def export(request: Request) -> Response:
    """GET ``?database=``: the manager's ``sqldump``, streamed as an attachment."""
    gui = gui_of(request)
    stack = contextlib.AsyncExitStack()
    try:
        client = await stack.enter_async_context(gui.client(request))
        stream = await stack.enter_async_context(direct.stream(client, "sqldump",
                                                               _database(request)))
    except ConpaasSQLError as exc:
        await stack.aclose()
        return gui.render(request, "failed.html", status_of(exc), error=str(exc),
                          title="Export", active="data", failed=True, back="/data")
    headers = {"content-disposition": stream.headers.get(
        "content-disposition", 'attachment; filename="conpaassql.sql"'),
        "cache-control": "no-store"}
    if stream.length is not None:
        headers["content-length"] = str(stream.length)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream.chunks():
                yield chunk
        finally:
            await stack.aclose()

    return StreamingResponse(body(), media_type="application/sql", headers=headers,
                             background=BackgroundTask(stack.aclose))


def routes() -> list[Route]:
    return [Route("/data/upload", upload, methods=["POST"]),
            Route("/data/export", export)]
