"""Checks a server must pass before the agent changes anything on it."""

from __future__ import annotations

from conpaassql.errors import WrongStateError
from conpaassql.mysql.connection import Session

READ_ONLY_DETAIL = "this server is read-only (a slave): send writes to the master"


async def ensure_writable(session: Session) -> None:
    """Refuse with ``WrongStateError`` when the server runs with ``read_only=ON``.

    Root would get through anyway (it holds READ_ONLY ADMIN), so every write the
    agent makes on a caller's behalf (users, databases, dump loads) asks first.
    """
    rows = await session.execute("SELECT @@global.read_only AS read_only", idempotent=True)
    if rows and int(rows[0]["read_only"]):
        raise WrongStateError(detail=READ_ONLY_DETAIL)
