"""Logged-in browsers (the front-end bound beyond loopback).

The cookie holds a random session id; the manager's API token the user logged in
with stays here, in memory, beside it: never in a cookie, a page or a log line. A
session ends when its user logs out, after ``idle`` seconds unused, when more than
``limit`` newer ones push it out, or when the front-end restarts.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_IDLE_HOURS = 8.0
MAX_SESSIONS = 1000
ID_BYTES = 32


@dataclass
class Session:
    token: str
    last_use: float


class Sessions:
    """Session id -> (API token, last use), the least recently used first."""

    def __init__(self, idle: float = DEFAULT_IDLE_HOURS * 3600, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle = idle
        self.limit = limit
        self._clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def open(self, token: str) -> str:
        """A new session for ``token``; its id (for the cookie)."""
        now = self._clock()
        self._expire(now)
        session_id = secrets.token_urlsafe(ID_BYTES)
        self._by_id[session_id] = Session(token, now)
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return session_id

    def token(self, session_id: str | None) -> str | None:
        """The token of a live session (used now: its idle time starts again)."""
        if not session_id:
            return None
        found = self._by_id.get(session_id)
        if found is None:
            return None
        now = self._clock()
        if now - found.last_use > self.idle:
            del self._by_id[session_id]
            return None
        found.last_use = now
        self._by_id.move_to_end(session_id)
        return found.token

    def close(self, session_id: str | None) -> None:
        """End a session (logging out); nothing if there is none."""
        if session_id:
            self._by_id.pop(session_id, None)

    def _expire(self, now: float) -> None:
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if now - oldest.last_use <= self.idle:
                return
            self._by_id.popitem(last=False)
