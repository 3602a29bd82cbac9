"""Databases on one server: create, drop, list with their sizes.

Names are checked and backtick-quoted (``conpaassql.names``, ``mysql.quoting``); a character set or
collation is looked up in ``information_schema`` with a parameter and only the
server's own spelling of it is put into the statement.
"""

from __future__ import annotations

from typing import Any

from conpaassql.errors import InvalidArgumentError, NotFoundError
from conpaassql.mysql.connection import Session
from conpaassql.mysql.guards import ensure_writable
from conpaassql.mysql.quoting import quote_identifier
from conpaassql.names import SYSTEM_DATABASES, check_charset_name, check_user_database

_LIST_DATABASES = (
    "SELECT s.SCHEMA_NAME AS name, s.DEFAULT_CHARACTER_SET_NAME AS character_set,"
    " s.DEFAULT_COLLATION_NAME AS collation,"
    " COUNT(CASE WHEN t.TABLE_TYPE = 'BASE TABLE' THEN 1 END) AS tables,"
    " COUNT(CASE WHEN t.TABLE_TYPE = 'VIEW' THEN 1 END) AS views,"
    " COALESCE(SUM(t.DATA_LENGTH), 0) AS data_bytes,"
    " COALESCE(SUM(t.INDEX_LENGTH), 0) AS index_bytes"
    " FROM information_schema.SCHEMATA s"
    # information_schema compares names case-insensitively; database names are not.
    " LEFT JOIN information_schema.TABLES t ON BINARY t.TABLE_SCHEMA = BINARY s.SCHEMA_NAME"
    " WHERE s.SCHEMA_NAME NOT IN ({system})"
    " GROUP BY BINARY s.SCHEMA_NAME, s.DEFAULT_CHARACTER_SET_NAME, s.DEFAULT_COLLATION_NAME"
    " ORDER BY s.SCHEMA_NAME"
).format(system=", ".join(["%s"] * len(SYSTEM_DATABASES)))


async def database_exists(session: Session, name: str) -> bool:
    """True when ``name`` exists, spelt exactly so (the query itself ignores case)."""
    rows = await session.execute(
        "SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
        (name,), idempotent=True)
    return any(row["name"] == name for row in rows)


async def _resolve_charset(session: Session, character_set: str | None,
                           collation: str | None) -> tuple[str | None, str | None]:
    """The server's own names for the requested character set and collation."""
    charset_name: str | None = None
    collation_name: str | None = None
    if character_set is not None:
        wanted = check_charset_name(character_set, "character_set")
        rows = await session.execute(
            "SELECT CHARACTER_SET_NAME AS name FROM information_schema.CHARACTER_SETS"
            " WHERE CHARACTER_SET_NAME = %s", (wanted,), idempotent=True)
        if not rows:
            raise InvalidArgumentError("character_set",
                                       detail=f"the server has no character set {wanted!r}")
        charset_name = str(rows[0]["name"])
    if collation is not None:
        wanted = check_charset_name(collation, "collation")
        rows = await session.execute(
            "SELECT COLLATION_NAME AS name, CHARACTER_SET_NAME AS charset"
            " FROM information_schema.COLLATIONS WHERE COLLATION_NAME = %s",
            (wanted,), idempotent=True)
        if not rows:
            raise InvalidArgumentError("collation",
                                       detail=f"the server has no collation {wanted!r}")
        collation_name = str(rows[0]["name"])
        owner = str(rows[0]["charset"])
        if charset_name is not None and owner != charset_name:
            raise InvalidArgumentError("collation", detail=f"{collation_name} belongs to "
                                       f"{owner}, not {charset_name}")
    return charset_name, collation_name


async def create_database(session: Session, name: str, character_set: str | None = None,
                          collation: str | None = None) -> dict[str, Any]:
    """``CREATE DATABASE``; ``InvalidArgumentError`` if it exists already."""
    name = check_user_database(name)
    await ensure_writable(session)
    charset_name, collation_name = await _resolve_charset(session, character_set, collation)
    if await database_exists(session, name):
        raise InvalidArgumentError("database", detail=f"database {name!r} exists already")
    statement = f"CREATE DATABASE {quote_identifier(name)}"
    if charset_name is not None:
        statement += f" CHARACTER SET {charset_name}"
    if collation_name is not None:
        statement += f" COLLATE {collation_name}"
    await session.execute(statement)
    rows = await session.execute(
        "SELECT SCHEMA_NAME AS name, DEFAULT_CHARACTER_SET_NAME AS character_set,"
        " DEFAULT_COLLATION_NAME AS collation FROM information_schema.SCHEMATA"
        " WHERE SCHEMA_NAME = %s", (name,), idempotent=True)
    made = next((row for row in rows if row["name"] == name), {})
    return {"database": name, "character_set": made.get("character_set"),
            "collation": made.get("collation")}


async def drop_database(session: Session, name: str) -> dict[str, Any]:
    """``DROP DATABASE``; ``NotFoundError`` if there is no such database.

    Grants on it stay (as MariaDB keeps them), so a database created again under
    the same name is open to the same accounts.
    """
    name = check_user_database(name)
    await ensure_writable(session)
    if not await database_exists(session, name):
        raise NotFoundError("database", detail=f"no database {name!r}")
    await session.execute(f"DROP DATABASE {quote_identifier(name)}")
    return {"database": name, "dropped": True}


async def list_databases(session: Session) -> list[dict[str, Any]]:
    """The user databases (system ones left out), empty ones included, with sizes.

    ``bytes`` is data plus indexes as ``information_schema.TABLES`` reports them
    (InnoDB's figures are estimates refreshed by its statistics).
    """
    rows = await session.execute(_LIST_DATABASES, sorted(SYSTEM_DATABASES), idempotent=True)
    found = []
    for row in rows:
        data, index = int(row["data_bytes"]), int(row["index_bytes"])
        found.append({
            "database": str(row["name"]),
            "character_set": row["character_set"],
            "collation": row["collation"],
            "tables": int(row["tables"]),
            "views": int(row["views"]),
            "data_bytes": data,
            "index_bytes": index,
            "bytes": data + index,
        })
    return found
