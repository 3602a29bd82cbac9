"""Validation and quoting of user names, hosts, databases, privileges and passwords."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conpaassql import names
from conpaassql.errors import InvalidArgumentError
from conpaassql.mysql.accounts import redact_secrets
from conpaassql.mysql.quoting import quote_grant_database, quote_identifier
from conpaassql.names import (
    check_charset_name,
    check_database_name,
    check_host,
    check_manageable_user,
    check_password,
    check_privileges,
    check_user_database,
    check_user_name,
    grant_pattern,
)

INJECTIONS = [
    "x'@'%'; DROP USER root; --",
    "a`b",
    "`",
    "a`; DROP DATABASE mysql; --",
    "%' OR 1=1",
    "ALL; DROP USER root",
    "SUPER",
    "root'@'localhost",
    "\\'; DROP TABLE t; --",
    "\x00",
    "nul\x00byte",
    "\ud800",
    "u" * 200,
    "line\nbreak",
]

BMP_TEXT = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                   min_size=1, max_size=70)


def refusal(check: Callable[..., object], *args: object) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as caught:
        check(*args)
    return caught.value


# -- user names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bob", "x'@'%'; DROP USER root; --", "a`b", "`", "é中文",
                                  "u" * names.MAX_USER_LENGTH, " leading", "with space"])
def test_user_names_are_kept_exactly(name: str) -> None:
    assert check_user_name(name) == name
    assert check_manageable_user(name) == name


@pytest.mark.parametrize(("name", "detail"), [
    ("", "may not be empty"),
    ("u" * (names.MAX_USER_LENGTH + 1), "longer than 128"),
    ("nul\x00", "NUL"),
    ("tab\t", "control characters"),
    ("bell\x07x", "control characters"),
    ("trailing ", "end with a space"),
    ("lone\ud800", "lone surrogate"),
    ("emoji\U0001f600", "Basic Multilingual Plane"),
])
def test_bad_user_names_are_refused(name: str, detail: str) -> None:
    error = refusal(check_user_name, name)
    assert str(error).startswith("Invalid argument: username DETAIL:")
    assert detail in str(error)


@pytest.mark.parametrize("name", ["root", "ROOT", "mariadb.sys", "PUBLIC", "public",
                                  "conpaassql_repl", "ConPaaSSQL_x"])
def test_reserved_users_are_refused(name: str) -> None:
    error = refusal(check_manageable_user, name, "user")
    assert str(error).startswith("Invalid argument: user DETAIL:")
    assert "reserved" in str(error)
    assert check_user_name(name) == name  # listing them is fine


def test_a_non_string_is_refused() -> None:
    assert "string" in str(refusal(check_user_name, 12))


# -- hosts --------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "stored"), [
    ("%", "%"), ("localhost", "localhost"), ("DB.Example.COM", "db.example.com"),
    ("10.0.0.%", "10.0.0.%"), ("192.168.1._", "192.168.1._"), ("::1", "::1"),
    ("fe80::1:2", "fe80::1:2"), ("10.0.0.0/255.255.255.0", "10.0.0.0/255.255.255.0"),
    ("h" * 255, "h" * 255),
])
def test_hosts(host: str, stored: str) -> None:
    assert check_host(host) == stored


@pytest.mark.parametrize("host", ["", "%' OR 1=1", "a b", "h'", "h`", "a;b", "x\x00",
                                  "10.0.0.0/24", "10.0.0.0/x", "a/255.0.0.0", "h" * 256,
                                  "é.example"])
def test_bad_hosts(host: str) -> None:
    assert str(refusal(check_host, host)).startswith("Invalid argument: host DETAIL:")


# -- passwords ----------------------------------------------------------------------


def test_passwords_are_checked_and_never_echoed() -> None:
    assert check_password("any 'thing' \\ `` ; --") == "any 'thing' \\ `` ; --"
    for bad in ("", "se\ncret", "se\rcret", "se\x00cret", "x" * 1025, "se\ud800cret"):
        error = refusal(check_password, bad)
        assert str(error).startswith("Invalid argument: password")
        if bad:
            assert "cret" not in str(error)


# -- databases ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["db1", "my_db", "a`; DROP DATABASE mysql; --", "we`ird",
                                  "p%q", "a\\b", "a.b", "é" * 51, "x" * 64, " lead"])
def test_database_names_are_kept(name: str) -> None:
    assert check_user_database(name) == name


@pytest.mark.parametrize(("name", "detail"), [
    ("", "empty"), ("x" * 65, "longer than 64"), ("trail ", "end with a space"),
    ("nul\x00", "NUL"), ("\ud800", "surrogate"), ("\U0001f600", "Multilingual"),
    ("#mysql50#mysql", "#mysql50#"), ("/" * 64, "directory name"),
])
def test_bad_database_names(name: str, detail: str) -> None:
    error = refusal(check_database_name, name)
    assert str(error).startswith("Invalid argument: database DETAIL:")
    assert detail in str(error)


@pytest.mark.parametrize("name", ["mysql", "MySQL", "information_schema", "performance_schema",
                                  "sys", "SYS"])
def test_system_databases_are_refused(name: str) -> None:
    assert check_database_name(name) == name
    assert "system database" in str(refusal(check_user_database, name))
    assert "system database" in str(refusal(quote_grant_database, name))


def test_quoting() -> None:
    assert quote_identifier("db1") == "`db1`"
    assert quote_identifier("a`; DROP DATABASE mysql; --") == "`a``; DROP DATABASE mysql; --`"
    assert grant_pattern("my_db") == "my\\_db"
    assert grant_pattern("100%") == "100\\%"
    assert grant_pattern("a\\b") == "a\\\\b"
    assert quote_grant_database("my_db") == "`my\\_db`"
    assert quote_grant_database("x`_") == "`x``\\_`"
    long = "a_" * 32  # 64 characters, 96 once escaped: mysql.db.Db holds 64
    assert check_user_database(long) == long
    assert "longer than 64" in str(refusal(quote_grant_database, long))


def _unquote(quoted: str) -> str:
    assert quoted[0] == quoted[-1] == "`"
    inner = quoted[1:-1]
    assert re.fullmatch(r"(?:[^`]|``)*", inner), "a lone backtick would end the identifier"
    return inner.replace("``", "`")


def _grant_regex(pattern: str) -> str:
    """The server's reading of a GRANT database pattern, as a regular expression."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            out.append(re.escape(pattern[index + 1]))
            index += 2
            continue
        out.append({"_": ".", "%": ".*"}.get(char, re.escape(char)))
        index += 1
    return "".join(out)


@given(BMP_TEXT)
def test_any_accepted_database_name_round_trips(name: str) -> None:
    try:
        check_database_name(name)
    except InvalidArgumentError:
        return
    assert _unquote(quote_identifier(name)) == name
    pattern = grant_pattern(name)
    regex = _grant_regex(pattern)
    # The pattern has no wildcard left: it is the name itself, character for character.
    assert regex == "".join(re.escape(char) for char in name)
    assert re.fullmatch(regex, name, re.DOTALL)


@given(BMP_TEXT)
def test_any_accepted_user_name_is_the_value_itself(name: str) -> None:
    try:
        accepted = check_user_name(name)
    except InvalidArgumentError:
        return
    assert accepted is name


# -- privileges ---------------------------------------------------------------------


@pytest.mark.parametrize(("given_", "expected"), [
    ("select", ("SELECT",)),
    ("insert, select", ("SELECT", "INSERT")),
    (["Select", "  create   temporary\ttables "], ("SELECT", "CREATE TEMPORARY TABLES")),
    ("delete history,lock tables", ("LOCK TABLES", "DELETE HISTORY")),
    ("all", ("ALL PRIVILEGES",)),
    (["ALL PRIVILEGES", "SELECT"], ("ALL PRIVILEGES",)),
    ("select,select", ("SELECT",)),
    (list(names.DATABASE_PRIVILEGES), names.DATABASE_PRIVILEGES),
])
def test_privileges_are_normalised(given_: object, expected: tuple[str, ...]) -> None:
    assert check_privileges(given_) == expected


@pytest.mark.parametrize("bad", ["SUPER", "FILE", "GRANT OPTION", "ALL; DROP USER root",
                                 "SELECT; DROP USER root", "select,", "", "USAGE",
                                 "ALL PRIVILEGES WITH GRANT OPTION", "CREATE USER", "PROCESS",
                                 ["SELECT", 1], 5, ["x"] * 40, "SELECT ON *.*"])
def test_other_privileges_are_refused(bad: object) -> None:
    assert str(refusal(check_privileges, bad)).startswith("Invalid argument: privileges")


# -- the injection strings of the task ----------------------------------------------


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_strings(text: str) -> None:
    """Each is refused, or accepted as exactly itself (host and charset: lower-cased)."""
    for check in (check_user_name, check_database_name):
        with contextlib.suppress(InvalidArgumentError):
            assert check(text) == text
    for check in (check_host, check_charset_name):
        try:
            accepted = check(text)
        except InvalidArgumentError:
            continue
        assert accepted == text.lower() and re.fullmatch(r"[a-z0-9._%:-]+", accepted)
    with pytest.raises(InvalidArgumentError):
        check_privileges(text)


def test_charset_names() -> None:
    assert check_charset_name("UTF8MB4") == "utf8mb4"
    assert check_charset_name("latin1_swedish_ci", "collation") == "latin1_swedish_ci"
    for bad in ("utf8; DROP", "", "a-b", "x" * 65):
        assert "letters, digits" in str(refusal(check_charset_name, bad))


# -- secrets in SQL text and logs ---------------------------------------------------


@pytest.mark.parametrize("text", [
    "CREATE USER 'u1'@'%' IDENTIFIED BY 'sekrit'",
    "ALTER USER u1 IDENTIFIED BY PASSWORD '*C3006DE0E4A8A971101A8EDA89193ECA020ED9A7'",
    "SET PASSWORD FOR 'u1'@'%' = PASSWORD('sekrit')",
    "set password = 'sekrit'",
    "GRANT SELECT ON `a\\_b`.* TO u1 IDENTIFIED BY 'sek''rit'",
    "CREATE USER u1 IDENTIFIED VIA ed25519 USING PASSWORD('sekrit')",
    "CHANGE MASTER TO MASTER_PASSWORD='sekrit', MASTER_HOST='h'",
    "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*4661D72F443CFC758BECA246B5FA8952'",
])
def test_secrets_are_redacted(text: str) -> None:
    redacted = redact_secrets(text)
    assert "sekrit" not in redacted and "rit'" not in redacted
    assert "*4661" not in redacted and "*C300" not in redacted
    assert "'***'" in redacted


def test_redaction_leaves_other_text() -> None:
    line = "2024-01-01 [Note] mariadbd: ready for connections. user 'bob'"
    assert redact_secrets(line) == line
