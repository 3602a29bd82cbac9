"""Running SQL on a server with PyMySQL, one short connection per call, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from conpaassql.errors import InvalidArgumentError, MySQLError

log = logging.getLogger(__name__)

#: Client-side error codes (libmysqlclient's CR_*).
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003

SqlArgs = Sequence[Any] | Mapping[str, Any] | None

#: Seconds a statement may take beyond the connect timeout before its connection is
#: given up: long enough for a replication or account change on a loaded disk
#: (every commit is synced), short enough that a frozen server is noticed.
SLOW_STATEMENT = 8.0


@dataclass(frozen=True)
class ConnectInfo:
    """How to reach a server: over ``socket``, or over TCP when ``host`` is set."""

    socket: Path
    user: str
    password: str = field(repr=False)
    connect_timeout: float = 2.0
    read_timeout: float | None = None
    host: str | None = None
    port: int = 3306


def _connect(info: ConnectInfo) -> pymysql.connections.Connection[pymysql.cursors.DictCursor]:
    where: dict[str, Any] = (
        {"host": info.host, "port": info.port} if info.host else {"unix_socket": str(info.socket)}
    )
    return pymysql.connect(
        user=info.user,
        # PyMySQL would encode a str password as latin-1; servers and the mariadb
        # client see the UTF-8 bytes.
        password=info.password.encode("utf-8"),
        charset="utf8mb4",
        connect_timeout=info.connect_timeout,
        read_timeout=info.read_timeout,
        write_timeout=info.read_timeout,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
        **where,
    )


def _secrets(info: ConnectInfo, args: SqlArgs) -> list[str]:
    values: Iterable[Any] = ()
    if isinstance(args, Mapping):
        values = args.values()
    elif args is not None and not isinstance(args, str | bytes):
        values = args
    found = [info.password] if info.password else []
    for value in values:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if isinstance(text, str) and len(text) >= 4:
            found.append(text)
            found.append(pymysql.converters.escape_string(text))
    return sorted(set(found), key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def to_mysql_error(exc: BaseException, info: ConnectInfo, args: SqlArgs = None) -> MySQLError:
    """A PyMySQL (or socket) failure as ``MySQLError`` with the server's own text.

    Secrets (the password, string parameters) that a server message may echo,
    e.g. in a syntax error's ``near '...'`` part, are replaced by ``***``.
    """
    errno: int | None = None
    text = str(exc)
    if len(exc.args) >= 2 and isinstance(exc.args[0], int):
        errno, text = exc.args[0], str(exc.args[1])
    elif len(exc.args) == 1:
        text = str(exc.args[0])
    if errno is None or errno == 0:
        errno = CR_CONN_HOST_ERROR if isinstance(exc, OSError) else errno
    if errno == CR_CONN_HOST_ERROR and not info.host:
        reason = text[text.find("(") :] if "(" in text else f"({text})"
        errno = CR_CONNECTION_ERROR
        text = f"Can't connect to local server through socket '{info.socket}' {reason}"
    return MySQLError(_redact(text or type(exc).__name__, _secrets(info, args)), errno)


def _open(info: ConnectInfo) -> Any:
    try:
        return _connect(info)
    except (pymysql.MySQLError, OSError) as exc:
        raise to_mysql_error(exc, info) from None


def _run_statement(connection: Any, info: ConnectInfo, sql: str,
                   args: SqlArgs) -> list[dict[str, Any]]:
    """One statement on an open connection; failures as ``MySQLError``."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return [dict(row) for row in cursor.fetchall()]
    except (pymysql.MySQLError, OSError) as exc:
        raise to_mysql_error(exc, info, args) from None
    except (TypeError, ValueError, KeyError):
        raise InvalidArgumentError("SQL parameters do not match the statement") from None


def _execute(info: ConnectInfo, sql: str, args: SqlArgs) -> list[dict[str, Any]]:
    connection = _open(info)
    try:
        return _run_statement(connection, info, sql, args)
    finally:
        connection.close()


async def execute(info: ConnectInfo, sql: str, args: SqlArgs = None, *,
                  thread: Executor | None = None) -> list[dict[str, Any]]:
    """Run one statement (autocommit) and return its rows as dicts (``[]`` when none),
    in ``thread`` if given (else the loop's default threads).

    Values go in ``args`` (``%s`` or ``%(name)s`` placeholders), never in ``sql``.
    Any failure, including an unreachable server, raises ``MySQLError``.
    """
    if thread is not None:
        return await asyncio.get_running_loop().run_in_executor(thread, _execute, info, sql,
                                                                args)
    return await asyncio.to_thread(_execute, info, sql, args)


def probe_info(info: ConnectInfo) -> ConnectInfo:
    """``info`` with a read timeout, so a server that accepts but never greets cannot hang us."""
    if info.read_timeout is not None:
        return info
    return dataclasses.replace(info, read_timeout=info.connect_timeout + SLOW_STATEMENT)


async def ping(info: ConnectInfo) -> bool:
    """True when the server answers ``SELECT 1`` with these credentials."""
    try:
        rows = await execute(probe_info(info), "SELECT 1 AS ok")
    except MySQLError as exc:
        log.debug("ping %s failed: %s", info.socket if not info.host else info.host, exc)
        return False
    return bool(rows) and rows[0].get("ok") == 1


class Session:
    """One persistent connection for a daemon's own control statements.

    It saves a connection per probe, and it counts the statements it sends
    (``statements``) so that the service's figures can leave them out.
    Idempotent statements are retried once on a fresh connection when the old
    one turns out to be dead (for example after the server restarted).
    """

    def __init__(self, info: ConnectInfo) -> None:
        self.info = probe_info(info)
        self.statements = 0
        self._connection: Any = None
        self._lock = threading.Lock()

    def _run(self, sql: str, args: SqlArgs, idempotent: bool) -> list[dict[str, Any]]:
        with self._lock:
            reused = self._connection is not None
            try:
                return self._once(sql, args)
            except MySQLError:
                # A dead connection (not an SQL error) is closed by PyMySQL.
                if self._connection is not None and self._connection.open:
                    raise
                self._drop()
                if not (idempotent and reused):
                    raise
            return self._once(sql, args)

    def _once(self, sql: str, args: SqlArgs) -> list[dict[str, Any]]:
        if self._connection is None:
            self._connection = _open(self.info)
        self.statements += 1
        return _run_statement(self._connection, self.info, sql, args)

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    async def execute(self, sql: str, args: SqlArgs = None, *,
                      idempotent: bool = False) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._run, sql, args, idempotent)

    async def ping(self) -> bool:
        try:
            rows = await self.execute("SELECT 1 AS ok", idempotent=True)
        except MySQLError:
            return False
        return bool(rows) and rows[0].get("ok") == 1

    def close(self) -> None:
        with self._lock:
            self._drop()
