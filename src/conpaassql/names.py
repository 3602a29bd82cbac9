"""Validation of every name a caller may send: users, hosts, databases, privileges,
character sets, passwords; as checks and as pydantic field types.

User names, hosts and passwords only ever travel as statement parameters
(``CREATE USER %s@%s``), so any text the server can store is accepted and kept
exactly. Database names and privileges must be spliced into statements: the
names are backtick-quoted (``mysql.quoting``), the privileges come from a whitelist.

Every refusal is an ``InvalidArgumentError(param, detail=...)``; no message ever
repeats a password. The functions are pure: manager and agent validate with them
alike, and this module imports nothing of ours but the errors.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from conpaassql.errors import InvalidArgumentError

# Limits of MariaDB 10.11, read from the installed server's information_schema.COLUMNS:
# mysql.global_priv (and mysql.db, mysql.tables_priv) have User CHAR(128) and Host
# CHAR(255), utf8mb3_bin; mysql.db.Db is CHAR(64) and holds the GRANT pattern (with its
# escapes), and a database name is at most 64 characters (NAME_CHAR_LEN).
MAX_USER_LENGTH = 128
MAX_HOST_LENGTH = 255
MAX_DATABASE_LENGTH = 64
MAX_PASSWORD_LENGTH = 1024
#: A database is a directory; its name is file-name encoded (``/`` is ``@002f``,
#: at most 5 bytes a character) and a file name holds at most 255 bytes.
MAX_DIRECTORY_NAME = 255
MAX_PRIVILEGES = 32

DEFAULT_HOST = "%"

RESERVED_USERS = frozenset({"root", "mariadb.sys", "public"})
#: Accounts the service keeps for itself (e.g. its replication user).
SERVICE_USER_PREFIX = "conpaassql_"
SYSTEM_DATABASES = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
#: ``#mysql50#name`` names a directory without file-name encoding (old datadirs).
RAW_NAME_PREFIX = "#mysql50#"

#: Database-level privileges (MariaDB 10.11), in the order GRANT lists them.
DATABASE_PRIVILEGES: tuple[str, ...] = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "REFERENCES", "INDEX",
    "ALTER", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "CREATE VIEW",
    "SHOW VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "EVENT", "TRIGGER", "DELETE HISTORY",
)  # fmt: skip
ALL_PRIVILEGES = "ALL PRIVILEGES"

#: What an account made without a database gets (RDS's master user, as far as MariaDB
#: 10.11 allows it safely): every database privilege WITH GRANT OPTION on every
#: database (the pattern ``%``) and these on ``*.*``. Not the database privileges on
#: ``*.*``: they would reach the ``mysql`` tables, where an INSERT into ``mysql.proc``
#: makes a routine that runs as root (MariaDB has no partial revokes).
OWNER_GLOBAL_PRIVILEGES: tuple[str, ...] = ("PROCESS", "SHOW DATABASES")
#: The privileges the service keeps for itself, and why: stopping the server or
#: touching its files (SHUTDOWN, FILE, CREATE TABLESPACE); writing on a read-only
#: slave or changing global settings (SUPER, READ_ONLY ADMIN); the binary log and
#: replication, which the service runs (RELOAD also allows RESET MASTER, which
#: empties the binary log; REPLICATION CLIENT is BINLOG MONITOR, REPLICA MONITOR is
#: SLAVE MONITOR); other users' sessions (CONNECTION ADMIN); acting as another
#: account (SET USER: a routine or view with any DEFINER; CREATE USER: RENAME USER
#: root@localhost TO root@'%'); remote servers (FEDERATED ADMIN: CREATE SERVER).
OWNER_WITHHELD: tuple[str, ...] = (
    "RELOAD", "SHUTDOWN", "FILE", "SUPER", "REPLICATION SLAVE", "BINLOG MONITOR",
    "CREATE USER", "CREATE TABLESPACE", "SET USER", "FEDERATED ADMIN", "CONNECTION ADMIN",
    "READ_ONLY ADMIN", "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN",
    "BINLOG ADMIN", "BINLOG REPLAY", "SLAVE MONITOR",
)  # fmt: skip
#: The system databases every account the service makes is held to, with what it
#: may do there. MariaDB takes the most specific database grant alone, so a grant
#: on ``%`` (the owner's, or one the owner passes on) never reaches them: writing in
#: ``mysql`` or changing the routines of ``sys`` would be acting as root.
PINNED_DATABASES: tuple[tuple[str, str], ...] = (
    ("mysql", "SHOW VIEW"), ("sys", "SELECT, EXECUTE, SHOW VIEW"))
_PRIVILEGE_ALIASES = {"ALL": ALL_PRIVILEGES, ALL_PRIVILEGES: ALL_PRIVILEGES}

_HOST_CHARS = re.compile(r"[a-z0-9._%:-]+")
_CHARSET_NAME = re.compile(r"[a-z0-9_]{1,64}")
_SAFE_FILE_CHAR = re.compile(r"[A-Za-z0-9_]")


def _refuse(param: str, detail: str) -> InvalidArgumentError:
    return InvalidArgumentError(param, detail=detail)


def _check_text(value: object, param: str, what: str, limit: int) -> str:
    """The checks shared by user and database names (the system tables are utf8mb3)."""
    if not isinstance(value, str):
        raise _refuse(param, f"{what} must be a string")
    if not value:
        raise _refuse(param, f"{what} may not be empty")
    if len(value) > limit:
        raise _refuse(param, f"{what} is longer than {limit} characters")
    for char in value:
        if char == "\x00":
            raise _refuse(param, f"{what} may not contain NUL")
        if "\ud800" <= char <= "\udfff":
            raise _refuse(param, f"{what} may not contain a lone surrogate")
        if ord(char) > 0xFFFF:
            raise _refuse(param, f"{what} may only hold characters of the Basic "
                          "Multilingual Plane (the server stores it as utf8mb3)")
        if unicodedata.category(char) == "Cc":
            raise _refuse(param, f"{what} may not contain control characters")
    if value[-1] == " ":
        raise _refuse(param, f"{what} may not end with a space")
    return value


# -- users and hosts ----------------------------------------------------------------


def check_user_name(value: object, param: str = "username") -> str:
    """Any text the server can store as a user name (kept exactly)."""
    return _check_text(value, param, "a user name", MAX_USER_LENGTH)


def is_reserved_user(name: str) -> bool:
    """Root, the system accounts and the service's own (any letter case)."""
    lowered = name.lower()
    return lowered in RESERVED_USERS or lowered.startswith(SERVICE_USER_PREFIX)


def check_manageable_user(value: object, param: str = "username") -> str:
    """A user name the API may create, change or delete."""
    name = check_user_name(value, param)
    if is_reserved_user(name):
        raise _refuse(param, f"{name!r} is reserved: root, mariadb.sys, PUBLIC and "
                      f"{SERVICE_USER_PREFIX}* accounts are managed by the service")
    return name


def check_host(value: object, param: str = "host") -> str:
    """A host pattern, lower-cased as the server stores it.

    A host name, an IPv4 or IPv6 address, the wildcards ``%`` and ``_``, or the
    netmask form ``ip/netmask`` (both dotted IPv4 addresses, as MariaDB wants).
    """
    if not isinstance(value, str):
        raise _refuse(param, "a host must be a string")
    host = value.lower()
    if not host:
        raise _refuse(param, f"a host may not be empty (use '{DEFAULT_HOST}' for any host)")
    if len(host) > MAX_HOST_LENGTH:
        raise _refuse(param, f"a host is longer than {MAX_HOST_LENGTH} characters")
    address, slash, mask = host.partition("/")
    if slash:
        try:
            ipaddress.IPv4Address(address)
            ipaddress.IPv4Address(mask)
        except ValueError:
            raise _refuse(param, "the netmask form is ip/netmask with two dotted IPv4 "
                          "addresses, e.g. 10.0.0.0/255.255.255.0") from None
        return host
    if not _HOST_CHARS.fullmatch(host):
        raise _refuse(param, "a host may hold only letters, digits and . - : _ % "
                      "(or be ip/netmask)")
    return host


def check_password(value: object, param: str = "password") -> str:
    """A password: 1..1024 characters, no NUL, CR or newline. Never echoed."""
    if not isinstance(value, str):
        raise _refuse(param, "a password must be a string")
    if not value:
        raise _refuse(param, "a password may not be empty")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise _refuse(param, f"a password is longer than {MAX_PASSWORD_LENGTH} characters")
    if any(bad in value for bad in ("\x00", "\n", "\r")):
        raise _refuse(param, "a password may not contain NUL, CR or newline")
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise _refuse(param, "a password may not contain a lone surrogate")
    return value


# -- databases --------------------------------------------------------------------


def _directory_bytes(name: str) -> int:
    """An upper bound of the length of ``name`` as the server's file name."""
    return sum(1 if _SAFE_FILE_CHAR.fullmatch(char) else 5 for char in name)


def check_database_name(value: object, param: str = "database") -> str:
    """A database name the server accepts: 1..64 characters, stored exactly."""
    name = _check_text(value, param, "a database name", MAX_DATABASE_LENGTH)
    if name.lower().startswith(RAW_NAME_PREFIX):
        raise _refuse(param, f"a database name may not start with {RAW_NAME_PREFIX}")
    if _directory_bytes(name) > MAX_DIRECTORY_NAME:
        raise _refuse(param, "a database name this long may only use letters, digits and _ "
                      f"(its directory name would exceed {MAX_DIRECTORY_NAME} bytes)")
    return name


def is_system_database(name: str) -> bool:
    return name.lower() in SYSTEM_DATABASES


def check_user_database(value: object, param: str = "database") -> str:
    """A database the API may create, drop or grant on (not a system one)."""
    name = check_database_name(value, param)
    if is_system_database(name):
        raise _refuse(param, f"{name!r} is a system database")
    return name


def grant_pattern(name: str) -> str:
    """The database pattern GRANT/REVOKE store for exactly ``name`` (unquoted).

    ``_`` and ``%`` are wildcards there, so they (and the escape character ``\\``
    itself) get a backslash: a grant on ``my_db`` must not cover ``myXdb``.
    """
    return name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


def check_grantable_database(value: object, param: str = "database") -> str:
    """A database the API may grant on: its escaped ``grant_pattern`` fits mysql.db.Db."""
    name = check_user_database(value, param)
    if len(grant_pattern(name)) > MAX_DATABASE_LENGTH:
        raise _refuse(param, f"cannot grant on this name: escaping its _ % and \\ makes it "
                      f"longer than {MAX_DATABASE_LENGTH} characters")
    return name


def check_charset_name(value: object, param: str = "character_set") -> str:
    """The syntax of a character set or collation name (lower-cased)."""
    if not isinstance(value, str) or not _CHARSET_NAME.fullmatch(value.lower()):
        raise _refuse(param, "letters, digits and _ only")
    return value.lower()


# -- privileges -------------------------------------------------------------------


def check_privileges(value: object, param: str = "privileges") -> tuple[str, ...]:
    """Database-level privileges, normalised (``'select, insert'`` or a list).

    ``ALL``/``ALL PRIVILEGES`` stands alone; anything off the whitelist (global
    privileges such as SUPER or FILE, GRANT OPTION, any other text) is refused.
    """
    if isinstance(value, str):
        items: Sequence[object] = value.split(",")
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise _refuse(param, "a list of privileges or a comma-separated string")
    if len(items) > MAX_PRIVILEGES:
        raise _refuse(param, f"at most {MAX_PRIVILEGES} privileges")
    found: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise _refuse(param, "every privilege must be a string")
        found.add(_one_privilege(item, param))
    if ALL_PRIVILEGES in found:
        return (ALL_PRIVILEGES,)
    return tuple(p for p in DATABASE_PRIVILEGES if p in found)


def _one_privilege(item: str, param: str) -> str:
    words = item.split()
    if not words:
        raise _refuse(param, "an empty privilege")
    text = " ".join(words).upper()
    text = _PRIVILEGE_ALIASES.get(text, text)
    if text != ALL_PRIVILEGES and text not in DATABASE_PRIVILEGES:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise _refuse(param, f"{shown!r} is not a database privilege (allowed: ALL, "
                      f"{', '.join(DATABASE_PRIVILEGES)})")
    return text


# -- pydantic field types (for the RPC params of agent and manager) ----------------


def _as_value_error(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check`` raising ``ValueError``, so that the registry names the field."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except InvalidArgumentError as exc:
            raise ValueError(exc.detail or "invalid") from None

    return validate


def _field(check: Callable[[Any], Any]) -> AfterValidator:
    return AfterValidator(_as_value_error(check))


def _before(check: Callable[[Any], Any]) -> BeforeValidator:
    return BeforeValidator(_as_value_error(check))


#: The base of the field types: no name is longer than a password (the checks refuse NUL).
_Text = Annotated[str, Field(max_length=MAX_PASSWORD_LENGTH)]

UserName = Annotated[_Text, _field(check_user_name)]
ManageableUser = Annotated[_Text, _field(check_manageable_user)]
Host = Annotated[_Text, _field(check_host)]
Password = Annotated[_Text, _field(check_password)]
DatabaseName = Annotated[_Text, _field(check_user_database)]
CharsetName = Annotated[_Text, _field(check_charset_name)]
Privileges = Annotated[
    tuple[str, ...],
    _before(check_privileges),
    WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": "string"}},
                              {"type": "string"}]}),
]
"""A list or a comma-separated string; validated into a tuple of privileges."""
