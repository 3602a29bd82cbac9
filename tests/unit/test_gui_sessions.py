"""The front-end's sessions: a random id for the cookie, the token kept beside it,
ended by logging out, by idleness or by newer sessions beyond the bound."""

from __future__ import annotations

import re

from conpaassql.gui.sessions import Sessions
from tests.unit.clock import Clock

HOUR = 3600.0


def test_the_id_is_random_and_holds_nothing_of_the_token() -> None:
    sessions = Sessions()
    ids = {sessions.open("s3cret-token") for _ in range(50)}
    assert len(ids) == 50
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", session_id)
        assert "s3cret" not in session_id
        assert sessions.token(session_id) == "s3cret-token"
    assert sessions.token("s3cret-token") is None  # the token is no session id
    assert sessions.token(None) is None and sessions.token("") is None


def test_a_session_ends_after_its_idle_time_and_each_use_starts_it_again() -> None:
    clock = Clock()
    sessions = Sessions(idle=8 * HOUR, clock=clock)
    used, left = sessions.open("used-token"), sessions.open("left-token")
    clock.now += 5 * HOUR
    assert sessions.token(used) == "used-token"
    clock.now += 5 * HOUR  # 10 h since the start, 5 h since its last use
    assert sessions.token(used) == "used-token"
    assert sessions.token(left) is None
    clock.now += 8 * HOUR + 1
    assert sessions.token(used) is None
    assert len(sessions) == 0


def test_idle_sessions_are_dropped_when_new_ones_open() -> None:
    clock = Clock()
    sessions = Sessions(idle=HOUR, clock=clock)
    for number in range(10):
        sessions.open(f"token-{number}")
    clock.now += 2 * HOUR
    sessions.open("fresh")
    assert len(sessions) == 1


def test_beyond_the_bound_the_least_recently_used_ends() -> None:
    clock = Clock()
    sessions = Sessions(limit=3, clock=clock)
    first, second, third = (sessions.open(f"token-{n}") for n in range(3))
    clock.now += 1
    assert sessions.token(first) == "token-0"  # used: now the most recent
    fourth = sessions.open("token-3")
    assert len(sessions) == 3
    assert sessions.token(second) is None
    assert [sessions.token(s) for s in (first, third, fourth)] == \
        ["token-0", "token-2", "token-3"]


def test_logging_out_ends_the_session_only() -> None:
    sessions = Sessions()
    mine, theirs = sessions.open("same-token"), sessions.open("same-token")
    sessions.close(mine)
    sessions.close(mine)
    sessions.close(None)
    assert sessions.token(mine) is None
    assert sessions.token(theirs) == "same-token"
