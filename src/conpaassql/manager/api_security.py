"""Who may call the user API: nobody but this machine, unless TLS and a token say so.

Bound to a loopback address (the default), the API is open to this machine's
users, as the original's was to anyone. Bound to any other address it speaks
only TLS (the configured certificate, or one from the service's CA) and every
call needs an API token (``Authorization: Bearer``); ``read`` tokens may call
the GET methods only, and not those that show a secret (``get_password``);
with ``api_client_ca`` the client must also show a certificate from that CA.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

from starlette.requests import Request

from conpaassql.config import ManagerConfig
from conpaassql.errors import AuthError, ConfigError, ForbiddenError
from conpaassql.files import write_private
from conpaassql.manager.authority import Authority
from conpaassql.manager.tokens import TokenStore
from conpaassql.net import is_loopback
from conpaassql.rpc.registry import Method
from conpaassql.rpc.server import Authorizer, Gate

log = logging.getLogger(__name__)


def user_authorizer(tokens: TokenStore | None) -> Authorizer:
    """The API's own methods (agents call theirs on the agents' port), with a token
    when ``tokens`` is given."""

    async def authorize(request: Request, method: Method) -> str | None:
        if method.access == "agent":
            raise ForbiddenError(detail="agents call the manager on its TLS port for agents")
        if tokens is None:
            return "user"
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(detail="an API token is needed (Authorization: Bearer TOKEN)")
        record = await asyncio.to_thread(tokens.check, token.strip())  # a file
        if record is None:
            raise AuthError(detail="unknown or revoked API token")
        if record.access != "admin" and (method.verb != "GET" or method.access == "owner"):
            raise ForbiddenError(detail=f"a read-only token may call GET methods only "
                                 f"(and none that shows a secret), not {method.name}")
        return f"token {record.id}"

    return authorize


def token_gate(tokens: TokenStore) -> Gate:
    """A valid token before anything of the request is read."""

    async def gate(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(detail="an API token is needed (Authorization: Bearer TOKEN)")
        if await asyncio.to_thread(tokens.check, token.strip()) is None:
            raise AuthError(detail="unknown or revoked API token")

    return gate


def api_tls_options(config: ManagerConfig, authority: Authority,
                    bind: str) -> dict[str, Any]:
    """uvicorn's TLS options for the API beyond loopback."""
    if bool(config.api_cert) != bool(config.api_key):
        raise ConfigError("[manager] api_cert, api_key", detail="give both or neither")
    if config.api_cert and config.api_key:
        cert, key = Path(config.api_cert), Path(config.api_key)
        for path in (cert, key):
            if not path.is_file():
                raise ConfigError(str(path), detail="no such file")
    else:
        cert, key = authority.directory / "api.crt", authority.directory / "api.key"
        if not (cert.is_file() and key.is_file()):
            ips = tuple(a for a in {bind, "127.0.0.1"} if _is_ip(a) and a not in ("0.0.0.0",
                                                                                  "::"))
            issued = authority.issue("api", ips=ips, hosts=("localhost", socket.getfqdn()))
            write_private(key, issued.key_pem)
            write_private(cert, issued.cert_pem, 0o644)
    options: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if config.api_client_ca:
        if not Path(config.api_client_ca).is_file():
            raise ConfigError(config.api_client_ca, detail="no such file")
        options.update(ssl_ca_certs=config.api_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def secure_api(config: ManagerConfig, authority: Authority, tokens: TokenStore,
               bind: str) -> tuple[Authorizer, Gate | None, dict[str, Any], str]:
    """The API's authorizer and gate, its uvicorn TLS options and its URL scheme."""
    beyond = not is_loopback(bind)
    if tokens.ensure_owner_token():
        log.info("an API token was made for the service's owner: %s (mode 0600)",
                 tokens.owner_file)
    needs_token = beyond or config.require_token
    authorizer = user_authorizer(tokens if needs_token else None)
    gate = token_gate(tokens) if needs_token else None
    if not beyond:
        return authorizer, gate, {}, "http"
    return authorizer, gate, api_tls_options(config, authority, bind), "https"
