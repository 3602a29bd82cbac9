"""Logging in with an API token of the manager (the front-end bound beyond loopback):
the token is checked by a call to the manager and kept by the front-end; the
browser gets a session id."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from conpaassql.errors import ConpaasSQLError
from conpaassql.gui.context import InputError, read_form, status_of
from conpaassql.gui.pages import gui_of
from conpaassql.gui.security import COOKIE, CSRF_FIELD, ENDED
from conpaassql.rpc.endpoint import check_token

EXPIRED = "the manager no longer takes your token: log in again"


async def login_page(request: Request) -> Response:
    gui = gui_of(request)
    if not gui.guard.login:
        return RedirectResponse("/", status_code=303)
    query = request.query_params
    error = EXPIRED if query.get("expired") else ENDED if query.get("ended") else None
    return gui.render(request, "login.html", title="Log in", error=error)


async def login(request: Request) -> Response:
    """Check the pasted token by a call to the manager; start a session with it."""
    gui = gui_of(request)
    try:
        form = await read_form(request)
    except InputError as exc:
        return gui.render(request, "login.html", 400, title="Log in", error=str(exc))
    if not gui.guard.csrf_matches(request, form.get(CSRF_FIELD, "")):
        return gui.render(request, "login.html", 403, title="Log in",
                          error="the form is stale: try again")
    if not gui.guard.login:
        return RedirectResponse("/", status_code=303)
    try:
        token = check_token(form.get("token", ""), "the token")
        await gui.link.check(token)
    except ValueError as exc:  # not a token at all
        return gui.render(request, "login.html", 400, title="Log in", error=str(exc))
    except ConpaasSQLError as exc:
        return gui.render(request, "login.html", status_of(exc), title="Log in",
                          error=str(exc))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, gui.guard.start(request, token),
                        **gui.guard.cookie_options())
    return response


async def logout(request: Request) -> Response:
    """End the browser's session (its form's CSRF token checked, unless it has
    ended already)."""
    gui = gui_of(request)
    try:
        form = await read_form(request)
    except InputError:
        form = {}
    ended = gui.guard.login and gui.guard.session_of(request) is None
    if not ended and not gui.guard.csrf_matches(request, form.get(CSRF_FIELD, "")):
        return gui.render(request, "failed.html", 403, title="Log out",
                          error="the form is stale: reload the page", failed=True, back="/")
    gui.guard.end(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def routes() -> list[Route]:
    return [Route("/login", login_page), Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"])]
