"""What every handler of the front-end shares: the manager link, the guard, the
templates, and one way to turn the manager's answers and errors into responses."""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from conpaassql.errors import ConfigError, ConpaasSQLError, RemoteError, UnreachableError
from conpaassql.gui.config import GuiConfig
from conpaassql.gui.link import ManagerLink
from conpaassql.gui.security import COOKIE, Guard
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.units import human_bytes

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PAGES = (("overview", "/", "Overview"), ("nodes", "/nodes", "Nodes"),
         ("users", "/users", "Users & databases"), ("data", "/data", "Data"),
         ("backups", "/backups", "Backups"),
         ("configuration", "/configuration", "Configuration"))

Loader = Callable[[RpcClient], Awaitable[Mapping[str, Any]]]


#: A form of the pages is a few short fields.
MAX_FORM_BYTES = 64 * 1024


class InputError(ValueError):
    """Something typed in a form that is not sent to the manager at all."""


class FormTooLargeError(InputError):
    """A form's body beyond ``MAX_FORM_BYTES``."""


def whole_number(text: str | None, name: str) -> int:
    """``text`` as a whole number: ASCII digits only (``str.isdigit`` takes ``²``,
    which ``int`` refuses); ``InputError`` naming ``name`` otherwise."""
    value = (text or "").strip()
    if not (value.isascii() and value.isdigit()):
        raise InputError(f"{name} must be a whole number")
    return int(value)


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form, read up to ``MAX_FORM_BYTES`` (never more)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLargeError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    text = body.decode("utf-8", errors="replace")
    try:
        return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=100))
    except ValueError:
        raise InputError("the form has too many fields") from None


def status_of(exc: ConpaasSQLError) -> int:
    """The HTTP status the front-end answers a failed call with."""
    if isinstance(exc, UnreachableError):
        return 502
    if isinstance(exc, RemoteError) and exc.http_status in (401, 403):
        return exc.http_status
    if isinstance(exc, ConfigError):
        return 500
    return 409


def _bytes(size: object) -> str:
    return human_bytes(size) if isinstance(size, int | float) else ""


def _when(at: object) -> str:
    if not isinstance(at, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _ago(at: object) -> str:
    if not isinstance(at, int | float):
        return ""
    seconds = max(0, int(time.time() - at))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


class Gui:
    """The front-end of one manager."""

    def __init__(self, config: GuiConfig, guard: Guard) -> None:
        self.config = config
        self.guard = guard
        self.link = ManagerLink(config)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                 autoescape=True, undefined=jinja2.StrictUndefined,
                                 trim_blocks=True, lstrip_blocks=True)
        env.filters.update(bytes=_bytes, when=_when, ago=_ago)
        versions = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
                    for path in STATIC.iterdir() if path.is_file()}
        env.globals.update(static=lambda name: f"/static/{name}?v={versions.get(name, '')}",
                           pages=PAGES, manager_url=self.link.url)
        self.templates = Jinja2Templates(env=env)

    def client(self, request: Request) -> AbstractAsyncContextManager[RpcClient]:
        """The client for this browser (its own token when logged in), held for a block."""
        return self.link.client(self.guard.token_of(request))

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> Response:
        base = {"csrf": self.guard.csrf_for(request), "login": self.guard.login,
                "error": None, "info": {}, "active": "", "title": ""}
        return self.templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status,
            headers={"cache-control": "no-store"})

    def _token_refused(self, request: Request, exc: ConpaasSQLError) -> bool:
        """Whether the manager no longer takes this browser's token (its session ends)."""
        if self.guard.login and isinstance(exc, RemoteError) and exc.http_status == 401:
            self.guard.end(request)
            return True
        return False

    def _logged_out(self, request: Request, exc: ConpaasSQLError) -> Response | None:
        """Back to the login page when the manager no longer takes this browser's token."""
        if self._token_refused(request, exc):
            response = RedirectResponse("/login?expired=1", status_code=303)
            response.delete_cookie(COOKIE, path="/")
            return response
        return None

    def failed(self, request: Request, exc: ConpaasSQLError) -> JSONResponse:
        """A failed call, for the page's script: the manager's words, as JSON."""
        self._token_refused(request, exc)
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    async def page(self, request: Request, template: str, active: str, title: str,
                   load: Loader | None = None, **extra: Any) -> Response:
        """A page: the service's state for the nav bar, and what ``load`` reads; a
        failure is shown in the page with the manager's own words."""
        context: dict[str, Any] = {"active": active, "title": title, **extra}
        try:
            async with self.client(request) as client:
                context["info"] = await client.get("get_service_info")
                if load is not None:
                    context.update(await load(client))
        except ConpaasSQLError as exc:
            redirect = self._logged_out(request, exc)
            if redirect is not None:
                return redirect
            context["error"] = str(exc)
            context["failed"] = True
            return self.render(request, template, status_of(exc), **context)
        return self.render(request, template, failed=False, **context)

    async def part(self, request: Request, template: str, load: Loader) -> Response:
        """A piece of a page, refreshed by the page's script; a failure as JSON."""
        try:
            async with self.client(request) as client:
                context = await load(client)
        except ConpaasSQLError as exc:
            return self.failed(request, exc)
        return self.render(request, template, **context)

    async def data(self, request: Request, load: Loader) -> Response:
        """JSON for the page's script."""
        try:
            async with self.client(request) as client:
                result = await load(client)
        except ConpaasSQLError as exc:
            return self.failed(request, exc)
        return JSONResponse(dict(result), headers={"cache-control": "no-store"})

    async def act(self, request: Request, name: str,
                  action: Callable[[RpcClient, Mapping[str, str]],
                                   Awaitable[Mapping[str, Any]]]) -> Response:
        """A state-changing request (its CSRF token checked already): the form's
        fields to ``action``; its result, or the manager's error text, as JSON."""
        try:
            fields = await read_form(request)
            async with self.client(request) as client:
                result = await action(client, fields)
        except FormTooLargeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except InputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ConpaasSQLError as exc:
            log.info("%s refused: %s", name, exc)
            return self.failed(request, exc)
        log.info("%s done", name)
        return JSONResponse({"ok": True, **result})
