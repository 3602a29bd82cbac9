"""Short-lived accounts that let a client run ``mariadb-dump`` against this server.

A client that has ``mariadb-dump`` can make the service's export itself, over TLS
verified with the service's CA, so that the dump's bytes go from mariadbd to the
client's file with no process of ours between them. The account it gets is made
for one dump:

- one login (``MAX_CONNECTIONS_PER_HOUR 1``, ``MAX_USER_CONNECTIONS 1``), over TLS
  only (``REQUIRE SSL``);
- read-only privileges on the databases to dump, and what the export's options need
  (``RELOAD`` and ``BINLOG MONITOR`` for the dump's GTID position, ``SELECT`` on
  ``mysql.proc`` for the routines' bodies);
- local to this server: ``sql_log_bin=0``, so it neither replicates nor spends a
  GTID (a slave's own account leaves no errant transaction);
- locked as soon as its connection is seen, and dropped once that connection has
  ended (a dropped account's open session would
  lose its database privileges at once, so the drop waits for the end).

The password goes to the server as its hash only.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import mysql_native_password_hash
from conpaassql.mysql.quoting import quote_grant_database
from conpaassql.names import SERVICE_USER_PREFIX, SYSTEM_DATABASES

#: Every dump account's name starts so: one of the service's own names, which the
#: user API neither makes nor changes (``names.SERVICE_USER_PREFIX``).
PREFIX = SERVICE_USER_PREFIX + "dump_"
HOST = "%"
#: What the account may do on each database it dumps.
DATABASE_PRIVILEGES = "SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES"
#: What ``--single-transaction --master-data=2 --gtid`` need on the server.
GLOBAL_PRIVILEGES = "RELOAD, BINLOG MONITOR"
_LOCAL = "SET STATEMENT sql_log_bin=0 FOR "


@dataclass(frozen=True)
class DumpLogin:
    user: str
    password: str = field(repr=False)
    databases: tuple[str, ...]  # what it may read (every user database when all)


async def user_databases(session: Session) -> list[str]:
    """The server's databases but the system ones."""
    rows = await session.execute("SHOW DATABASES", idempotent=True)
    names = [str(next(iter(row.values()))) for row in rows]
    return [name for name in names if name.lower() not in SYSTEM_DATABASES]


async def create(session: Session, databases: Sequence[str]) -> DumpLogin:
    """A new dump account that may read ``databases``."""
    user = PREFIX + secrets.token_hex(6)
    password = secrets.token_urlsafe(24)
    hashed = mysql_native_password_hash(password)
    await session.execute(_LOCAL + "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s REQUIRE SSL "
                          "WITH MAX_USER_CONNECTIONS 1 MAX_CONNECTIONS_PER_HOUR 1",
                          (user, HOST, hashed))
    try:
        for database in databases:
            await session.execute(_LOCAL + f"GRANT {DATABASE_PRIVILEGES} ON "
                                  f"{quote_grant_database(database)}.* TO %s@%s", (user, HOST))
        await session.execute(_LOCAL + f"GRANT {GLOBAL_PRIVILEGES} ON *.* TO %s@%s",
                              (user, HOST))
        await session.execute(_LOCAL + "GRANT SELECT ON mysql.proc TO %s@%s", (user, HOST))
    except BaseException:
        await drop(session, user)
        raise
    return DumpLogin(user, password, tuple(databases))


async def sessions(session: Session, user: str) -> int:
    """How many connections ``user`` has open now."""
    rows = await session.execute(
        "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = %s", (user,),
        idempotent=True)
    return int(rows[0]["n"]) if rows else 0


async def lock(session: Session, user: str) -> None:
    """No new login for ``user``; its open connection goes on."""
    await session.execute(_LOCAL + "ALTER USER IF EXISTS %s@%s ACCOUNT LOCK", (user, HOST))


async def drop(session: Session, user: str) -> None:
    await session.execute(_LOCAL + "DROP USER IF EXISTS %s@%s", (user, HOST))


async def existing(session: Session) -> list[str]:
    """Every dump account on the server (left by an agent that stopped, or copied in
    with the data from another node)."""
    rows = await session.execute(
        "SELECT DISTINCT User AS user FROM mysql.global_priv WHERE User LIKE %s",
        (PREFIX.replace("_", "\\_") + "%",), idempotent=True)
    return [str(row["user"]) for row in rows]
