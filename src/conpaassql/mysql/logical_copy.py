"""A logical copy of a server (a dump), for seeding where the physical copy cannot run.

The source runs ``mariadb-dump`` of every user database in one consistent
snapshot, with its accounts and roles (``--system=users``, as ``CREATE USER IF
NOT EXISTS`` and ``GRANT``) and the GTID position of the snapshot (a comment at
the end: ``-- SET GLOBAL gtid_slave_pos='0-1-57';``).

The receiving server is emptied first in the same client session: replication
reset, its own GTID state cleared (a half-loaded server holds no position, so
it can never be taken for the most advanced one), every user database and
every account but the built-in ones dropped. Then the dump is loaded. Nothing
of this goes into the receiver's binary log (``sql_log_bin=0``), so the copy
leaves no GTID of the receiver's own. Once the load succeeds, the position read
from the dump becomes ``@@gtid_slave_pos``, as for a physical copy.

Slower than the physical copy by far (every row is re-inserted and indexed),
and accounts changed while the dump runs may be copied twice (the account
tables are not part of the snapshot); that is why it is only the fallback.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from conpaassql.errors import MySQLError
from conpaassql.mysql.binaries import find_binary
from conpaassql.mysql.connection import Session
from conpaassql.mysql.dump import DUMPER, EXPORT_OPTIONS, client_command, client_error
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import pipe_into
from conpaassql.mysql.quoting import quote_identifier
from conpaassql.names import SYSTEM_DATABASES

#: Accounts every server has of its own; the copy leaves them as they are.
BUILT_IN_ACCOUNTS = frozenset({"root", "mariadb.sys", "PUBLIC"})
#: What a dump of ``mariadb-dump`` starts with (after an optional sandbox-mode line).
DUMP_HEADER = b"-- MariaDB dump "
DUMP_COMPLETED = b"-- Dump completed"
TAIL_KEPT = 8192

_SLAVE_POS = re.compile(rb"^-- SET GLOBAL gtid_slave_pos='([0-9,-]*)';", re.MULTILINE)
_GTID_LIST = re.compile(r"(\d+-\d+-\d+(,\d+-\d+-\d+)*)?")


def copy_dump_command(paths: ServerPaths) -> list[str]:
    """``mariadb-dump`` of every user database, the accounts and the GTID position."""
    return [find_binary(*DUMPER), f"--defaults-file={paths.client_cnf}", *EXPORT_OPTIONS,
            "--system=users", "--insert-ignore", "--all-databases",
            "--ignore-database=mysql", "--ignore-database=sys"]


def load_command(paths: ServerPaths) -> list[str]:
    """``mariadb`` with binary logging off for its session (nothing to replicate)."""
    return [*client_command(paths), "--init-command=SET SESSION sql_log_bin=0"]


async def clearing_script(session: Session) -> bytes:
    """The statements that empty the server before the dump is loaded."""
    databases = await session.execute("SELECT SCHEMA_NAME AS name FROM "
                                      "information_schema.SCHEMATA", idempotent=True)
    accounts = await session.execute(
        "SELECT User AS user, Host AS host, JSON_VALUE(Priv, '$.is_role') AS is_role "
        "FROM mysql.global_priv", idempotent=True)
    lines = ["SET SESSION sql_log_bin = 0;", "STOP ALL SLAVES;", "RESET SLAVE ALL;",
             "RESET MASTER;", "SET GLOBAL gtid_slave_pos = '';"]
    for row in databases:
        name = str(row["name"])
        if name.lower() not in SYSTEM_DATABASES:
            lines.append(f"DROP DATABASE IF EXISTS {quote_identifier(name)};")
    for row in accounts:
        user, host = str(row["user"]), str(row["host"])
        if user in BUILT_IN_ACCOUNTS:
            continue
        if str(row.get("is_role") or "") in ("true", "1"):
            lines.append(f"DROP ROLE IF EXISTS {quote_identifier(user)};")
        else:
            lines.append(f"DROP USER IF EXISTS {quote_identifier(user)}@"
                         f"{quote_identifier(host)};")
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class LogicalCopy:
    gtid_position: str
    received: int  # bytes of the dump
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"gtid_position": self.gtid_position, "bytes": self.received,
                "seconds": round(self.seconds, 3)}


async def load_copy(paths: ServerPaths, session: Session,
                    chunks: AsyncIterator[bytes]) -> LogicalCopy:
    """Empty the server, load the dump from ``chunks`` and adopt its GTID position.

    ``MySQLError`` when the stream is not a whole dump of ``mariadb-dump`` or
    the load fails; the server is then left emptied, without a position, for
    the next copy.
    """
    started = time.monotonic()
    clearing = await clearing_script(session)
    seen = {"bytes": 0}
    head, tail = bytearray(), bytearray()

    async def script() -> AsyncIterator[bytes]:
        yield clearing
        async for chunk in chunks:
            if len(head) < 512:
                head.extend(chunk[: 512 - len(head)])
                if len(head) >= 512 and DUMP_HEADER not in head:
                    raise MySQLError("the copy is not a dump of mariadb-dump")
            seen["bytes"] += len(chunk)
            tail.extend(chunk)
            del tail[:-TAIL_KEPT]
            yield chunk

    status, text = await pipe_into(load_command(paths), script())
    if status != 0:
        raise client_error(text, "loading the copy")
    if DUMP_HEADER not in head:
        raise MySQLError("the copy is not a dump of mariadb-dump" if seen["bytes"]
                         else "the copy is empty")
    if DUMP_COMPLETED not in tail:
        raise MySQLError("the copy is incomplete (the dump does not end as completed)")
    found = _SLAVE_POS.search(bytes(tail))
    if found is None:
        raise MySQLError("the copy records no GTID position (is log-bin off on the source?)")
    position = found.group(1).decode("ascii")
    if not _GTID_LIST.fullmatch(position):
        raise MySQLError(f"unreadable GTID position in the copy: {position[:200]!r}")
    await session.execute("SET GLOBAL gtid_slave_pos = %s", (position,), idempotent=True)
    return LogicalCopy(position, seen["bytes"], time.monotonic() - started)
