"""GTID replication on MariaDB: roles, the replication account, status, waits.

Every server boots read-only; ``make_master`` makes one writable (semi-sync on
the master's side), ``make_slave`` points one at a master with
``MASTER_USE_GTID`` and keeps it read-only. Values go as parameters (PyMySQL
quotes them); nothing is spliced into SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from conpaassql.errors import MySQLError
from conpaassql.mysql.connection import ConnectInfo, Session, execute

REPLICATION_USER = "conpaassql_repl"
#: Seconds between heartbeats from master to slave, and how long a slave waits
#: in silence before it drops the connection and reconnects.
HEARTBEAT_PERIOD = 1
CONNECT_RETRY = 1
DRAIN_POLL = 0.02


@dataclasses.dataclass(frozen=True)
class MasterAddress:
    host: str
    port: int
    password: str = dataclasses.field(repr=False)
    user: str = REPLICATION_USER
    ssl_ca: Path | None = None  # replicate over TLS, the master's certificate from this CA


async def ensure_replication_accounts(session: Session, password: str,
                                      hosts: Sequence[str]) -> tuple[list[str], list[str]]:
    """The service's replication account for exactly ``hosts`` (the nodes' addresses),
    with ``password``; (hosts added, hosts removed). Made on the master, whose binlog
    and copies carry the accounts to every other node."""
    rows = await session.execute(
        "SELECT Host AS host FROM mysql.global_priv WHERE User = %s", (REPLICATION_USER,))
    existing = {str(row["host"]) for row in rows}
    wanted = set(hosts)
    added, removed = sorted(wanted - existing), sorted(existing - wanted)
    for host in added:
        await session.execute("CREATE USER %s@%s IDENTIFIED BY %s",
                              (REPLICATION_USER, host, password))
        await session.execute("GRANT REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR "
                              "ON *.* TO %s@%s", (REPLICATION_USER, host))
    for host in removed:
        await session.execute("DROP USER IF EXISTS %s@%s", (REPLICATION_USER, host))
        # A dropped account's connections live on: a removed slave would still read.
        rows = await session.execute(
            "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE USER = %s AND "
            "SUBSTRING_INDEX(HOST, ':', 1) = %s", (REPLICATION_USER, host))
        for row in rows:
            with contextlib.suppress(MySQLError):  # it may have ended meanwhile
                await session.execute("KILL CONNECTION %s", (int(row["id"]),))
    return added, removed


async def make_master(session: Session, *, semi_sync: bool, semi_sync_timeout_ms: int) -> None:
    """Stop replicating from anyone, turn semi-sync on (master side) and accept writes."""
    await session.execute("STOP SLAVE")
    await session.execute("RESET SLAVE ALL")
    await session.execute("SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
    await session.execute("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC'")
    await session.execute("SET GLOBAL rpl_semi_sync_master_timeout = %s",
                          (semi_sync_timeout_ms,))
    await session.execute("SET GLOBAL rpl_semi_sync_master_enabled = %s",
                          ("ON" if semi_sync else "OFF",))
    await session.execute("SET GLOBAL read_only = OFF")


async def set_read_only(session: Session, on: bool) -> None:
    await session.execute("SET GLOBAL read_only = %s", ("ON" if on else "OFF",))


async def read_only_at_once(info: ConnectInfo, within: float,
                            thread: Executor | None = None) -> None:
    """``read_only`` on, on a connection of its own (not one shared behind a lock) and in
    ``thread`` if given, giving up after ``within`` seconds, on the server too: its wait
    for running statements and locks is cut by ``lock_wait_timeout`` (whole seconds, at
    least 1). ``MySQLError`` when it could not be confirmed."""
    quick = dataclasses.replace(info, connect_timeout=within, read_timeout=within)
    await execute(quick, "SET STATEMENT lock_wait_timeout = 1 FOR SET GLOBAL read_only = ON",
                  thread=thread)


async def make_slave(session: Session, master: MasterAddress, *, semi_sync: bool,
                     gtid_position: str | None = None) -> None:
    """Replicate from ``master``: from ``gtid_position`` (a fresh copy) when given, else
    from this server's own current position (a former master or a repointed slave)."""
    await set_read_only(session, True)
    await session.execute("STOP SLAVE")
    await session.execute("SET GLOBAL rpl_semi_sync_master_enabled = OFF")
    await session.execute("SET GLOBAL rpl_semi_sync_slave_enabled = %s",
                          ("ON" if semi_sync else "OFF",))
    use = "current_pos"
    if gtid_position is not None:
        await session.execute("SET GLOBAL gtid_slave_pos = %s", (gtid_position,))
        use = "slave_pos"
    tls = ""
    tls_args: tuple[str, ...] = ()
    if master.ssl_ca is not None:
        # The chain is checked against the service's CA; not the name, as a node's
        # certificate need not hold its address.
        tls = ", MASTER_SSL = 1, MASTER_SSL_CA = %s, MASTER_SSL_VERIFY_SERVER_CERT = 0"
        tls_args = (str(master.ssl_ca),)
    await session.execute(
        "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
        f"MASTER_PASSWORD = %s, MASTER_USE_GTID = {use}, "
        f"MASTER_CONNECT_RETRY = {CONNECT_RETRY}, MASTER_HEARTBEAT_PERIOD = {HEARTBEAT_PERIOD}"
        + tls, (master.host, master.port, master.user, master.password, *tls_args))
    await session.execute("START SLAVE")


async def stop_replication(session: Session) -> None:
    await session.execute("STOP SLAVE")


async def drain_relay_log(session: Session, timeout: float) -> bool:
    """Stop receiving (the master is gone) and let the SQL thread apply every complete
    transaction already received; False if that took longer than ``timeout``.

    A transaction received only in part stays unapplied: it was never
    acknowledged, and promotion (``make_master``) rolls it back.
    """
    await session.execute("STOP SLAVE IO_THREAD")
    deadline = time.monotonic() + timeout
    while True:
        rows = await session.execute("SHOW SLAVE STATUS", idempotent=True)
        if not rows:
            return True
        row = rows[0]
        idle = "read all relay log" in str(row.get("Slave_SQL_Running_State") or "")
        if row.get("Slave_SQL_Running") != "Yes" or idle:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(DRAIN_POLL)


async def wait_for_position(info: ConnectInfo, position: str, timeout: float) -> bool:
    """Wait (on a connection of its own) until ``position`` is applied; False on timeout."""
    waiting = dataclasses.replace(info, read_timeout=timeout + 10)
    rows = await execute(waiting, "SELECT MASTER_GTID_WAIT(%s, %s) AS done",
                         (position, timeout))
    return bool(rows) and rows[0].get("done") == 0


_SLAVE_FIELDS = {
    "Master_Host": "master_host", "Master_Port": "master_port",
    "Slave_IO_Running": "io_running", "Slave_SQL_Running": "sql_running",
    "Seconds_Behind_Master": "seconds_behind_master", "Gtid_IO_Pos": "gtid_io_pos",
    "Last_IO_Errno": "last_io_errno", "Last_IO_Error": "last_io_error",
    "Last_SQL_Errno": "last_sql_errno", "Last_SQL_Error": "last_sql_error",
    "Using_Gtid": "using_gtid", "Slave_SQL_Running_State": "sql_state",
}


async def replication_status(session: Session) -> dict[str, Any]:
    """Read-only flag, GTID positions, semi-sync state and (on a slave) its threads."""
    rows = await session.execute(
        "SELECT @@global.read_only AS read_only, @@global.gtid_current_pos AS current_pos,"
        " @@global.gtid_binlog_pos AS binlog_pos, @@global.gtid_slave_pos AS slave_pos",
        idempotent=True)
    values = rows[0] if rows else {}
    status = {
        "read_only": bool(int(values.get("read_only") or 0)),
        "gtid_current_pos": values.get("current_pos") or "",
        "gtid_binlog_pos": values.get("binlog_pos") or "",
        "gtid_slave_pos": values.get("slave_pos") or "",
    }
    semi = await session.execute(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status',"
        " 'Rpl_semi_sync_slave_status', 'Rpl_semi_sync_master_clients')", idempotent=True)
    found = {row["Variable_name"]: row["Value"] for row in semi}
    status["semi_sync_master"] = found.get("Rpl_semi_sync_master_status") == "ON"
    status["semi_sync_slave"] = found.get("Rpl_semi_sync_slave_status") == "ON"
    status["semi_sync_clients"] = int(found.get("Rpl_semi_sync_master_clients") or 0)
    slave = await session.execute("SHOW SLAVE STATUS", idempotent=True)
    status["slave"] = None
    if slave:
        row = slave[0]
        status["slave"] = {ours: row.get(theirs) for theirs, ours in _SLAVE_FIELDS.items()}
    return status
