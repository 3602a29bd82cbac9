"""The front-end's wiring: ``create_app`` builds the Starlette app, ``serve`` runs it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conpaassql.errors import ConfigError
from conpaassql.gui import actions, backups, configuration, login, pages, transfer
from conpaassql.gui.config import GuiConfig
from conpaassql.gui.context import STATIC, Gui
from conpaassql.gui.security import Guard, GuardMiddleware
from conpaassql.gui.sessions import Sessions
from conpaassql.rpc.endpoint import is_loopback

log = logging.getLogger(__name__)


def _wants_page(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    text = "no such page" if status == 404 else \
        exc.detail if isinstance(exc, HTTPException) else "error"
    if _wants_page(request):
        gui: Gui = request.app.state.gui
        return gui.render(request, "failed.html", status, error=text, title="Not found",
                          failed=True, back="/")
    return JSONResponse({"error": text}, status_code=status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Logged with its traceback here; the browser gets a plain sentence."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "the front-end failed on this request (see its log)"},
                        status_code=500)


def create_app(config: GuiConfig, bind: str = "127.0.0.1", *, tls: bool = False) -> Starlette:
    """The front-end of the manager ``config`` names, for a server bound to ``bind``
    (beyond loopback, users log in with a token of the manager)."""
    guard = Guard(login=not is_loopback(bind), tls=tls, bind=bind,
                  sessions=Sessions(idle=config.session_idle_hours * 3600))
    gui = Gui(config, guard)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gui.link.aclose()

    routes: list[Route | Mount] = [
        *pages.routes(), *actions.routes(), *configuration.routes(), *transfer.routes(),
        *backups.routes(), *login.routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(GuardMiddleware, guard=guard)],
                    exception_handlers={HTTPException: _http_error,
                                        Exception: _internal_error},
                    lifespan=lifespan)
    app.state.gui = gui
    return app


def tls_options(config: GuiConfig, bind: str, insecure_http: bool) -> dict[str, str]:
    """uvicorn's TLS options: GUI_CERT/GUI_KEY if given; beyond loopback they are
    needed unless ``insecure_http`` (a ``ConfigError`` says so)."""
    where = str(config.path or "the configuration")
    if config.gui_cert is None or config.gui_key is None:
        if not is_loopback(bind) and not insecure_http:
            raise ConfigError(
                f"{where}: GUI_CERT, GUI_KEY",
                detail=f"bound to {bind}, beyond loopback, the front-end serves only TLS "
                "(users log in with API tokens): give GUI_CERT and GUI_KEY, or "
                "--insecure-http to serve plain HTTP anyway")
        return {}
    for key, path in (("GUI_CERT", config.gui_cert), ("GUI_KEY", config.gui_key)):
        if not Path(path).is_file():
            raise ConfigError(f"{where}: {key}", detail=f"no such file: {path}")
    return {"ssl_certfile": str(config.gui_cert), "ssl_keyfile": str(config.gui_key)}


def serve(config: GuiConfig, bind: str, port: int, *, insecure_http: bool = False) -> None:
    """Run the front-end in the foreground."""
    tls = tls_options(config, bind, insecure_http)
    app = create_app(config, bind, tls=bool(tls))
    host = f"[{bind}]" if ":" in bind else bind
    log.info("conpaassql gui on %s://%s:%d/ for the manager at %s%s",
             "https" if tls else "http", host, port, config.manager_url,
             "" if is_loopback(bind) else " (users log in with an API token)")
    uvicorn.run(app, host=bind, port=port, log_level="warning", access_log=False,
                **tls)  # type: ignore[arg-type]
