"""Who may use the front-end, and how a browser is kept from being used against it.

- Every POST must carry the page's CSRF token in ``X-CSRF-Token`` (the login and
  logout forms in a ``csrf`` field, checked by their handlers); the token is an
  HMAC of a per-process secret and of the browser's session id, so it is worthless
  to another browser. A POST from another origin is refused too.
- Bound to loopback, the front-end answers only requests addressed to a loopback
  name (no DNS rebinding), and uses the manager's credential it was configured with:
  it is open to this machine's users, as the manager's API is. A request that came
  through a proxy (it carries ``Forwarded``, ``X-Forwarded-*`` or ``X-Real-IP``) is
  refused, since the proxy would open it to everyone who reaches the proxy.
- Bound beyond loopback, a user logs in by pasting an API token of the manager;
  the browser gets a session id in an HttpOnly, SameSite=Strict cookie (Secure over
  TLS), and the token, kept by the front-end (``sessions.Sessions``), is sent with
  that browser's calls: the manager decides what the token may do.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import HTTPConnection

from conpaassql.gui.sessions import Sessions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "conpaassql_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
#: Paths open without logging in (logging out of an ended session is harmless).
OPEN_PATHS = ("/login", "/logout", "/static/", "/favicon.ico")
ENDED = "your session has ended: log in again"
#: Headers a reverse proxy adds: their presence means the request was relayed.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                 "x-real-ip")
PROXIED = ("this front-end, bound to loopback without a login, serves only this machine "
           "and refuses requests relayed by a proxy: behind a proxy, bind it beyond "
           "loopback so that users log in")
#: POSTs whose handlers check the ``csrf`` form field themselves (plain HTML forms).
FORM_POSTS = ("/login", "/logout")
HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # not no-referrer: with it, a same-origin form POST says "Origin: null"
    (b"referrer-policy", b"same-origin"),
]


def host_of(header: str) -> str:
    """The host of a ``Host`` header (``[::1]:5000`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The front-end's CSRF tokens, login cookie and request checks."""

    def __init__(self, *, login: bool, tls: bool, bind: str, secret: bytes | None = None,
                 sessions: Sessions | None = None) -> None:
        self.login = login
        self.tls = tls
        self.bind = bind
        self.sessions = sessions or Sessions()
        self._secret = secret or secrets.token_bytes(32)
        self._hosts = {"localhost", "127.0.0.1", "::1", host_of(bind)}

    # -- sessions ---------------------------------------------------------

    def session_of(self, request: HTTPConnection) -> str | None:
        """The browser's live session id (logged-in mode), else None."""
        if not self.login:
            return None
        session_id = request.cookies.get(COOKIE)
        return session_id if self.sessions.token(session_id) is not None else None

    def token_of(self, request: HTTPConnection) -> str | None:
        """The API token the browser logged in with (logged-in mode), else None."""
        if not self.login:
            return None
        return self.sessions.token(request.cookies.get(COOKIE))

    def start(self, request: HTTPConnection, token: str) -> str:
        """A new session for ``token`` (the browser's previous one ends); its id."""
        self.end(request)
        return self.sessions.open(token)

    def end(self, request: HTTPConnection) -> None:
        """The browser's session ends (logged out, or its token refused)."""
        self.sessions.close(request.cookies.get(COOKIE))

    def cookie_options(self) -> dict[str, Any]:
        return {"httponly": True, "samesite": "strict", "secure": self.tls, "path": "/"}

    def csrf_for(self, request: HTTPConnection) -> str:
        """The CSRF token of this browser's pages, bound to its session."""
        session = self.session_of(request) or ""
        return hmac.new(self._secret, f"csrf|{session}".encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, request: HTTPConnection, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_for(request))

    # -- request checks ---------------------------------------------------

    def host_allowed(self, request: HTTPConnection) -> bool:
        """Bound to loopback: only requests addressed to this machine by a loopback
        name (a page of another site rebound to 127.0.0.1 is refused)."""
        if self.login:
            return True
        return host_of(request.headers.get("host", "")) in self._hosts

    @staticmethod
    def same_origin(request: HTTPConnection) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            return True
        return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"

    def proxied(self, request: HTTPConnection) -> bool:
        """Without a login: whether a proxy relayed the request (refused)."""
        return not self.login and any(name in request.headers for name in PROXY_HEADERS)

    def refusal(self, request: HTTPConnection) -> tuple[int, str] | None:
        """Why a request is refused before it is handled (status, text), or None."""
        if self.proxied(request):
            return 403, PROXIED
        if not self.host_allowed(request):
            return 400, "this front-end answers only to a loopback address"
        path, method = request.url.path, request.scope["method"]
        if method not in ("GET", "HEAD", "POST"):
            return 405, "method not allowed"
        if method == "POST" and not self.same_origin(request):
            return 403, "a request from another site is refused"
        if self.login and not path.startswith(OPEN_PATHS) and self.token_of(request) is None:
            return 401, ENDED if COOKIE in request.cookies else "log in first"
        if method == "POST" and path not in FORM_POSTS and \
                not self.csrf_matches(request, request.headers.get(CSRF_HEADER)):
            return 403, "missing or wrong CSRF token: reload the page"
        return None


class GuardMiddleware:
    """Applies ``Guard.refusal`` to every request and the security headers to every
    response (pure ASGI: request bodies stream through untouched)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in HEADERS if h[0] not in present)]
            await send(message)

        request = HTTPConnection(scope)
        refused = self.guard.refusal(request)
        if refused is None:
            await self.app(scope, receive, send_with_headers)
            return
        status, text = refused
        wants_page = scope["method"] == "GET" and \
            "text/html" in request.headers.get("accept", "")
        if status == 401 and wants_page:
            where = b"/login?ended=1" if COOKIE in request.cookies else b"/login"
            await _respond(send_with_headers, 303, b"", [(b"location", where)])
            return
        body = json.dumps({"error": text}).encode()
        await _respond(send_with_headers, status, body,
                       [(b"content-type", b"application/json")])


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
