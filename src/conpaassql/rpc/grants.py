"""Copy grants: the manager's leave for one node to take a copy of another, for a while.

A node's certificate shows it belongs to the service, not that it still does: a
node removed from the service keeps its certificate. So a node asking another
for a copy (``backup_stream``, ``backup_push``, ``copy_dump``) must also show a
grant that the manager made for exactly that pair, recently: an HMAC with the
service's agent secret over the source, the receiver and an expiry time. A
removed node gets no new grant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

GRANT_TTL = 600.0  # seconds: the copy must start within this
_GRANT = re.compile(r"(\d+):(\d+):(\d+):([0-9a-f]{64})")


def _mac(secret: str, source: int, receiver: int, expiry: int) -> str:
    message = f"copy {source} -> {receiver} until {expiry}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_grant(secret: str, source: int, receiver: int, ttl: float = GRANT_TTL,
               now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + ttl)
    return f"{source}:{receiver}:{expiry}:{_mac(secret, source, receiver, expiry)}"


def grant_allows(secret: str, grant: str | None, source: int, receiver: int,
                 now: float | None = None) -> bool:
    """True if ``grant`` lets node ``receiver`` copy node ``source`` now."""
    found = _GRANT.fullmatch(grant or "")
    if found is None:
        return False
    granted_source, granted_receiver, expiry = (int(found.group(i)) for i in (1, 2, 3))
    if (granted_source, granted_receiver) != (source, receiver):
        return False
    if expiry < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(found.group(4), _mac(secret, source, receiver, expiry))
