"""Where a peer is and the credential sent to it, as its callers (the command-line
client, the front-end) check them: the host, the base URL, the bearer token, and
whether an address is this machine's loopback (``conpaassql.net``, offered here to
the front-ends, which import only ``rpc``). Errors are ``ValueError``s that
never quote a token."""

from __future__ import annotations

import os
from pathlib import Path

from conpaassql.net import is_loopback

__all__ = ["HOST_FORBIDDEN", "MAX_TOKEN_LENGTH", "base_url", "check_host", "check_token",
           "is_loopback"]

#: Characters no host name or address holds, and that would change a URL's meaning.
HOST_FORBIDDEN = frozenset(" \t\r\n/\\?#@'\"")
MAX_TOKEN_LENGTH = 512
#: Where the client and the router take the manager's token from, without a file.
TOKEN_ENV = "CONPAASSQL_TOKEN"


def check_host(host: str) -> str:
    """``host`` if it is fit for a URL (a name or an address); ``ValueError`` if not."""
    if not host or HOST_FORBIDDEN & set(host) or not host.isprintable():
        raise ValueError(f"{host!r} is not a host name or address")
    return host


def base_url(host: str, port: int, *, https: bool) -> str:
    """``http(s)://host:port/``, an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}/"


def check_token(text: str, origin: str) -> str:
    """``text`` stripped, if it looks like a token; ``ValueError`` naming ``origin``
    (where the text came from) if not."""
    token = text.strip()
    if not token:
        raise ValueError(f"{origin} is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise ValueError(f"{origin} is longer than {MAX_TOKEN_LENGTH} characters, "
                         "not a token")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError(f"{origin} holds spaces or control characters, not a token")
    return token


def load_token(token_file: str | Path | None) -> str | None:
    """The bearer token from ``token_file``, else from ``$CONPAASSQL_TOKEN``, else none;
    ``ValueError`` saying why when the file cannot be read or holds no token."""
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the token file: {exc}") from None
        origin = f"the token file {token_file}"
    else:
        text = os.environ.get(TOKEN_ENV, "")
        origin = f"${TOKEN_ENV}"
        if not text.strip():
            return None
    return check_token(text, origin)
