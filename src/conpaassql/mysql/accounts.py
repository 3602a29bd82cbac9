"""User accounts on one server: create or re-password, grant, delete, list.

User names, hosts and password hashes go as statement parameters; the database
(quoted as a GRANT pattern) and the privileges (from a whitelist) are the only
spliced parts. The password is sent as its ``mysql_native_password`` hash
(``IDENTIFIED BY PASSWORD``), so the plain text reaches neither the general or
slow log nor the binary log. Changes replicate through the binary log as usual.
"""

from __future__ import annotations

import re
from typing import Any

from conpaassql.errors import InvalidArgumentError, MySQLError, NotFoundError
from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import mysql_native_password_hash
from conpaassql.mysql.guards import ensure_writable
from conpaassql.mysql.quoting import quote_grant_database, quote_identifier
from conpaassql.names import (
    ALL_PRIVILEGES,
    OWNER_GLOBAL_PRIVILEGES,
    OWNER_WITHHELD,
    PINNED_DATABASES,
    check_host,
    check_manageable_user,
    check_password,
    check_privileges,
    grant_pattern,
    is_reserved_user,
)

#: Server error: SHOW GRANTS for an account that is not there (any more).
ER_NONEXISTING_GRANT = 1141

#: Every database (a GRANT pattern; ``%%`` because the statement has parameters).
EVERY_DATABASE = "`%%`"
OWNER_NOTE = ("no database given: a new account gets every database privilege WITH GRANT "
              "OPTION on every database but mysql and sys, and "
              + " and ".join(OWNER_GLOBAL_PRIVILEGES) + "; not what the service keeps ("
              + ", ".join(OWNER_WITHHELD) + ")")
KEPT_NOTE = ("no database given: the existing account got a new password and keeps its "
             "privileges; give database and privileges to change them")

#: Authentication plugins a client can log in with.
LOGIN_PLUGINS = frozenset({"mysql_native_password", "mysql_old_password", "ed25519",
                           "unix_socket", "pam", "gssapi", "parsec"})

_LIST_USERS = (
    "SELECT User AS user, Host AS host,"
    " COALESCE(JSON_VALUE(Priv, '$.plugin'), 'mysql_native_password') AS plugin,"
    " COALESCE(JSON_VALUE(Priv, '$.authentication_string'), '') <> '' AS password_set,"
    " COALESCE(JSON_VALUE(Priv, '$.authentication_string'), '') = 'invalid' AS invalid,"
    " COALESCE(JSON_EXTRACT(Priv, '$.account_locked'), 'false') = 'true' AS locked,"
    " COALESCE(JSON_VALUE(Priv, '$.password_last_changed'), 1) = 0 AS password_expired"
    " FROM mysql.global_priv"
    " WHERE Host <> '' AND COALESCE(JSON_EXTRACT(Priv, '$.is_role'), 'false') <> 'true'"
    " AND User <> 'mariadb.sys' ORDER BY User, Host"
)

_STRING = r"""(?:'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")"""
_SECRET_PATTERNS = tuple(
    re.compile(prefix + _STRING, re.IGNORECASE)
    for prefix in (
        r"(IDENTIFIED\s+(?:BY|VIA|WITH)\s+(?:PASSWORD\s+|\w+\s+(?:USING|AS|BY)\s+)?"
        r"(?:PASSWORD\s*\(\s*)?)",
        r"(\bPASSWORD\s*\(\s*)",
        r"(\bMASTER_PASSWORD\s*=\s*)",
        r"(\bSET\s+PASSWORD\b[^=\n]*=\s*)",
    )
)


def redact_secrets(text: str) -> str:
    """``text`` (SQL, a log) with every password or hash literal replaced by ``'***'``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1'***'", text)
    return text


async def user_exists(session: Session, user: str, host: str) -> bool:
    rows = await session.execute(
        "SELECT User AS user, Host AS host FROM mysql.global_priv WHERE User = %s AND Host = %s",
        (user, host), idempotent=True)
    return any(row["user"] == user and row["host"] == host for row in rows)


async def _has_database_grant(session: Session, user: str, host: str, pattern: str) -> bool:
    rows = await session.execute(
        "SELECT Db AS db FROM mysql.db WHERE User = %s AND Host = %s AND Db = %s",
        (user, host, pattern), idempotent=True)
    return any(row["db"] == pattern for row in rows)


def _describe(user: str, host: str) -> str:
    return f"{user!r}@{host!r}"


async def configure_user(session: Session, user: str, password: str, host: str = "%",
                         database: str | None = None,
                         privileges: str | list[str] | tuple[str, ...] | None = None,
                         ) -> dict[str, Any]:
    """Create ``user@host`` or give it a new password; then set its privileges.

    With a database, the account's privileges on it become exactly ``privileges``
    (default ALL PRIVILEGES, never GRANT OPTION). Without one, a new account gets
    ALL PRIVILEGES WITH GRANT OPTION on every database (``%``) and
    ``OWNER_GLOBAL_PRIVILEGES``; an existing one keeps its privileges. A new account
    is held to ``PINNED_DATABASES`` whatever it is granted later. The reply names
    what was granted, and on what, and SHOW GRANTS.
    """
    user = check_manageable_user(user)
    host = check_host(host)
    hashed = mysql_native_password_hash(check_password(password))
    granted: tuple[str, ...] = ()
    if database is not None:
        quote_grant_database(database)  # refuses a name that cannot be granted on
        granted = check_privileges(privileges) if privileges is not None else (ALL_PRIVILEGES,)
    elif privileges is not None:
        raise InvalidArgumentError("privileges", detail="give the database to grant them on")
    await ensure_writable(session)
    created = await _create_or_set_password(session, user, host, hashed)
    result: dict[str, Any] = {"username": user, "host": host, "created": created,
                              "database": database}
    if database is not None:
        result.update(await _grant_on_database(session, user, host, database, granted))
    elif created:
        result.update(await _grant_owner(session, user, host))
    else:
        result.update(privileges=[], on=None, grant_option=False, note=KEPT_NOTE)
    result["grants"] = await grants_of(session, user, host)
    return result


async def _create_or_set_password(session: Session, user: str, host: str,
                                  hashed: str) -> bool:
    """Create the account (held to ``PINNED_DATABASES``) or set its password; True if new."""
    if await user_exists(session, user, host):
        await session.execute("ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, hashed))
        return False
    await session.execute("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, hashed))
    for pinned, allowed in PINNED_DATABASES:
        await session.execute(f"GRANT {allowed} ON {quote_identifier(pinned)}.* TO %s@%s",
                              (user, host))
    return True


async def _grant_on_database(session: Session, user: str, host: str, database: str,
                             granted: tuple[str, ...]) -> dict[str, Any]:
    """Make the account's privileges on ``database`` exactly ``granted``."""
    target = quote_grant_database(database)
    if await _has_database_grant(session, user, host, grant_pattern(database)):
        await session.execute(f"REVOKE ALL PRIVILEGES ON {target}.* FROM %s@%s", (user, host))
    await session.execute(f"GRANT {', '.join(granted)} ON {target}.* TO %s@%s", (user, host))
    return {"privileges": list(granted), "on": f"{target}.*", "grant_option": False}


async def _grant_owner(session: Session, user: str, host: str) -> dict[str, Any]:
    """What the seed's user gets: the data of every database, not the server."""
    await session.execute(f"GRANT {', '.join(OWNER_GLOBAL_PRIVILEGES)} ON *.* TO %s@%s",
                          (user, host))
    await session.execute(f"GRANT ALL PRIVILEGES ON {EVERY_DATABASE}.* TO %s@%s"
                          " WITH GRANT OPTION", (user, host))
    return {"privileges": [ALL_PRIVILEGES], "on": "`%`.*", "grant_option": True,
            "global_privileges": list(OWNER_GLOBAL_PRIVILEGES), "note": OWNER_NOTE}


async def delete_user(session: Session, user: str, host: str = "%") -> dict[str, Any]:
    """Drop ``user@host``; ``NotFoundError`` when there is no such account."""
    user = check_manageable_user(user)
    host = check_host(host)
    await ensure_writable(session)
    if not await user_exists(session, user, host):
        raise NotFoundError("username", detail=f"no user {_describe(user, host)}")
    await session.execute("DROP USER %s@%s", (user, host))
    return {"username": user, "host": host, "deleted": True}


async def set_password(session: Session, user: str, password: str,
                       host: str = "%") -> dict[str, Any]:
    """Give the existing ``user@host`` a new password."""
    user = check_manageable_user(user)
    host = check_host(host)
    hashed = mysql_native_password_hash(check_password(password))
    await ensure_writable(session)
    if not await user_exists(session, user, host):
        raise NotFoundError("username", detail=f"no user {_describe(user, host)}")
    await session.execute("ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (user, host, hashed))
    return {"username": user, "host": host}


async def grants_of(session: Session, user: str, host: str) -> list[str]:
    """``SHOW GRANTS`` of an account, password hashes redacted."""
    rows = await session.execute("SHOW GRANTS FOR %s@%s", (user, host), idempotent=True)
    return [redact_secrets(str(value)) for row in rows for value in row.values()]


async def list_users(session: Session) -> list[dict[str, Any]]:
    """Every account but ``mariadb.sys`` and roles, with its state and grants."""
    rows = await session.execute(_LIST_USERS, idempotent=True)
    users = []
    for row in rows:
        user, host = str(row["user"]), str(row["host"])
        try:
            grants = await grants_of(session, user, host)
        except MySQLError as exc:
            if exc.errno == ER_NONEXISTING_GRANT:
                continue  # dropped meanwhile
            raise
        plugin = str(row["plugin"])
        locked = bool(row["locked"])
        usable = plugin in LOGIN_PLUGINS and not row["invalid"]
        users.append({
            "username": user,
            "host": host,
            "can_login": usable and not locked,
            "locked": locked,
            "password_set": bool(row["password_set"]),
            "password_expired": bool(row["password_expired"]),
            "plugin": plugin,
            "reserved": is_reserved_user(user),
            "grants": grants,
        })
    return users
