"""A copy of another service's server adopted by this one (``restore_from``).

The copy carries that service's accounts: its root password, which this node's
agent does not know, and its replication accounts, whose password is not this
service's. Its users' own accounts are kept (they are the data's). So when the
copy is swapped in, an init file is written that the server runs once at its
start, before anyone logs in: root@localhost takes this service's password and
the other service's replication accounts are dropped (the manager makes this
service's own), nothing of it in the binlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from conpaassql.files import write_private
from conpaassql.mysql.backup import SwapRunner
from conpaassql.mysql.config import resolve_run_as
from conpaassql.mysql.datadir import (
    _needs_chown,
    mysql_native_password_hash,
    remove_init_file,
    render_init_sql,
)
from conpaassql.mysql.paths import ServerPaths, uid_gid
from conpaassql.mysql.replication import REPLICATION_USER


def render_adopt_sql(password_hash: str) -> str:
    """root@localhost's password set, the replication accounts dropped, unlogged."""
    render_init_sql(password_hash)  # checks the hash
    return "\n".join([
        "SET SESSION sql_log_bin = 0;",
        f"ALTER USER 'root'@'localhost' IDENTIFIED BY PASSWORD '{password_hash}';",
        "BEGIN NOT ATOMIC FOR acct IN (SELECT User AS u, Host AS h FROM mysql.user"
        f" WHERE User = '{REPLICATION_USER}') DO"
        " EXECUTE IMMEDIATE CONCAT('DROP USER ', QUOTE(acct.u), '@', QUOTE(acct.h));"
        " END FOR; END;",
        "",
    ])


def adopting(paths: ServerPaths, root_password: str, run_as: str | None,
             swap: SwapRunner) -> SwapRunner:
    """``swap`` with the init file put in place once the copy is (and removed if the
    old datadir is put back).

    The file is written and synced beside it before the swap; the swap only renames
    it into place, and if that fails the old datadir is put back at once, so the
    server never starts on the copy without it.
    """
    owner = resolve_run_as(run_as)
    ids = uid_gid(owner) if _needs_chown(owner) else None
    sql = render_adopt_sql(mysql_native_password_hash(root_password))
    ready = paths.init_file.with_name(f".{paths.init_file.name}.adopt")

    async def run(install: Callable[[], None], undo: Callable[[], None]) -> None:
        def install_and_adopt() -> None:
            install()
            try:
                os.replace(ready, paths.init_file)
            except BaseException:
                undo()
                raise

        def undo_all() -> None:
            remove_init_file(paths)
            undo()

        await asyncio.to_thread(write_private, ready, sql, owner=ids)
        try:
            await swap(install_and_adopt, undo_all)
        finally:
            with contextlib.suppress(FileNotFoundError):
                ready.unlink()

    return run
