"""Short-lived accounts that let a client run ``mariadb-dump`` against this server.

A client that has ``mariadb-dump`` can make the service's export itself, over TLS
verified with the service's CA, so that the dump's bytes go from mariadbd to the
client's file with no process of ours between them. The account it gets is made
for one dump:

- one login (``MAX_CONNECTIONS_PER_HOUR 1``, ``MAX_USER_CONNECTIONS 1``), over TLS
  only (``REQUIRE SSL``);
- read-only privileges on the databases to dump, and ``SELECT`` on ``mysql.proc``
  (without which ``mariadb-dump`` leaves the routines out, silently). No more: with
  ``--single-transaction`` the tool takes the dump's binlog and GTID position from
  its snapshot (``binlog_snapshot_*``, ``BINLOG_GTID_POS``), with no ``RELOAD``,
  ``LOCK TABLES`` or ``BINLOG MONITOR``;
- local to this server: ``sql_log_bin=0``, so it neither replicates nor spends a
  GTID (a slave's own account leaves no errant transaction);
- locked as soon as its connection is seen, and dropped once that connection has
  ended (a dropped account's open session would
  lose its database privileges at once, so the drop waits for the end).

The password goes to the server as its hash only.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from conpaassql.errors import ConpaasSQLError
from conpaassql.mysql.connection import Session
from conpaassql.mysql.datadir import mysql_native_password_hash
from conpaassql.mysql.quoting import quote_grant_database
from conpaassql.names import SERVICE_USER_PREFIX, SYSTEM_DATABASES

#: Every dump account's name starts so: one of the service's own names, which the
#: user API neither makes nor changes (``names.SERVICE_USER_PREFIX``).
PREFIX = SERVICE_USER_PREFIX + "dump_"
HOST = "%"
#: What the account may do on each database it dumps.
DATABASE_PRIVILEGES = "SELECT, SHOW VIEW, TRIGGER, EVENT"
_LOCAL = "SET STATEMENT sql_log_bin=0 FOR "
#: A GRANT never makes an account (should the account be gone by then).
_GRANT = "SET STATEMENT sql_log_bin=0, sql_mode='NO_AUTO_CREATE_USER' FOR GRANT "


@dataclass(frozen=True)
class DumpAccount:
    user: str
    password: str = field(repr=False)


async def user_databases(session: Session) -> list[str]:
    """The server's databases but the system ones."""
    rows = await session.execute("SHOW DATABASES", idempotent=True)
    names = [str(next(iter(row.values()))) for row in rows]
    return [name for name in names if name.lower() not in SYSTEM_DATABASES]


async def create(session: Session, databases: Sequence[str]) -> DumpAccount:
    """A new dump account that may read ``databases``."""
    user = PREFIX + secrets.token_hex(6)
    password = secrets.token_urlsafe(24)
    hashed = mysql_native_password_hash(password)
    await session.execute(_LOCAL + "CREATE USER %s@%s IDENTIFIED BY PASSWORD %s REQUIRE SSL "
                          "WITH MAX_USER_CONNECTIONS 1 MAX_CONNECTIONS_PER_HOUR 1",
                          (user, HOST, hashed))
    try:
        for database in databases:
            await session.execute(_GRANT + f"{DATABASE_PRIVILEGES} ON "
                                  f"{quote_grant_database(database)}.* TO %s@%s", (user, HOST))
        await session.execute(_GRANT + "SELECT ON mysql.proc TO %s@%s", (user, HOST))
    except BaseException:
        with contextlib.suppress(ConpaasSQLError):
            await drop(session, user)
        raise
    return DumpAccount(user, password)


async def sessions(session: Session, user: str) -> int:
    """How many connections ``user`` has open now."""
    rows = await session.execute(
        "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = %s", (user,),
        idempotent=True)
    return int(rows[0]["n"]) if rows else 0


async def end_sessions(session: Session, user: str) -> None:
    """Kill ``user``'s connections."""
    rows = await session.execute(
        "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
    for row in rows:
        with contextlib.suppress(ConpaasSQLError):  # it ended meanwhile
            await session.execute("KILL CONNECTION %s", (int(row["id"]),))


async def lock(session: Session, user: str) -> None:
    """No new login for ``user``; its open connection goes on."""
    await session.execute(_LOCAL + "ALTER USER IF EXISTS %s@%s ACCOUNT LOCK", (user, HOST))


async def drop(session: Session, user: str) -> None:
    """Drop ``user`` (its open connection, if any, loses its database privileges)."""
    await session.execute(_LOCAL + "DROP USER IF EXISTS %s@%s", (user, HOST))


async def existing(session: Session) -> list[str]:
    """Every dump account on the server (left by an agent that stopped, or copied in
    with the data from another node)."""
    rows = await session.execute(
        "SELECT DISTINCT User AS user FROM mysql.global_priv WHERE LEFT(User, %s) = %s",
        (len(PREFIX), PREFIX), idempotent=True)
    return [str(row["user"]) for row in rows]
