"""Credential checks shared by the servers of the dialect."""

from __future__ import annotations

import hmac

from starlette.requests import Request


def bearer_matches(request: Request, secret: str) -> bool:
    """True if the request carries ``Authorization: Bearer <secret>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), secret.encode())
