"""Creating a server's data directory: from a pristine template (fast) or with install-db.

``mariadb-install-db --auth-root-authentication-method=normal --skip-test-db``
(10.11) creates root@localhost, root@<hostname>, root@127.0.0.1 and root@::1,
all without a password, plus ``mariadb.sys@localhost`` (the owner of system
views); without ``--skip-test-db`` also anonymous ``''@localhost``,
``''@<hostname>`` and the ``PUBLIC`` role. The init file written here gives
root@localhost its password (as a hash) and drops every other account except
``mariadb.sys`` and roles.

Every new datadir gets the time zone tables, loaded from the OS's zoneinfo by a
second bootstrap run (about 2 s, once per template).

A datadir holds no path, hostname or instance identity, so copies of one
template are independent servers (replicas get distinct ``server-id``s).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from conpaassql.errors import ConfigError, InvalidArgumentError, MySQLError
from conpaassql.files import write_private
from conpaassql.mysql.binaries import (
    INSTALL_DB,
    SERVER,
    TZINFO_TO_SQL,
    find_binary,
    run_program,
    tail,
)
from conpaassql.mysql.config import render_client_cnf, resolve_run_as
from conpaassql.mysql.paths import ServerPaths, uid_gid

log = logging.getLogger(__name__)

ROOT_USER = "root"
ZONEINFO = Path("/usr/share/zoneinfo")
#: An empty Aria data file is one 8 KiB page; the loaded zone names take ~90 KiB.
EMPTY_ARIA_FILE = 8192

_DROP_OTHER_ACCOUNTS = (
    "BEGIN NOT ATOMIC FOR acct IN (SELECT User AS u, Host AS h FROM mysql.user"
    " WHERE is_role = 'N' AND NOT (User = 'root' AND Host = 'localhost')"
    " AND User <> 'mariadb.sys') DO"
    " EXECUTE IMMEDIATE CONCAT('DROP USER ', QUOTE(acct.u), '@', QUOTE(acct.h));"
    " END FOR; END;"
)


def mysql_native_password_hash(password: str) -> str:
    """``PASSWORD(password)``: ``'*'`` + upper-case hex SHA1(SHA1(UTF-8 bytes)); ``''`` if empty."""
    if not password:
        return ""
    stage1 = hashlib.sha1(password.encode("utf-8")).digest()
    return "*" + hashlib.sha1(stage1).hexdigest().upper()


def render_init_sql(password_hash: str) -> str:
    """The init file: set root@localhost's password hash, drop the other accounts.

    Each statement is on one line (the server's init-file reader ends a
    statement at a line ending in ``;``); nothing goes to the binary log.
    """
    if len(password_hash) != 41 or not password_hash.startswith("*"):
        raise InvalidArgumentError("not a mysql_native_password hash")
    int(password_hash[1:], 16)
    return "\n".join(
        [
            "SET SESSION sql_log_bin = 0;",
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY PASSWORD '{password_hash}';",
            _DROP_OTHER_ACCOUNTS,
            "",
        ]
    )


def _looks_initialised(datadir: Path) -> bool:
    return (datadir / "mysql" / "global_priv.frm").is_file() and (datadir / "ibdata1").is_file()


def _has_time_zones(datadir: Path) -> bool:
    try:
        return (datadir / "mysql" / "time_zone_name.MAD").stat().st_size > EMPTY_ARIA_FILE
    except FileNotFoundError:
        return False


def _template_ready(datadir: Path) -> bool:
    return _looks_initialised(datadir) and _has_time_zones(datadir)


def is_initialised(paths: ServerPaths) -> bool:
    """True when ``paths.datadir`` holds an initialised datadir."""
    return _looks_initialised(paths.datadir)


async def _install_db(datadir: Path) -> None:
    """Run mariadb-install-db into the new directory ``datadir`` (owned by us).

    No ``--user``: as root that option also chowns the system PAM tool directory;
    mariadbd --bootstrap runs as root without it, and callers chown afterwards.
    ``--force`` skips the hostname lookup (a slow or broken DNS cannot stall us).
    """
    args = [
        find_binary(*INSTALL_DB),
        "--no-defaults",
        "--force",
        f"--datadir={datadir}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ]
    started = time.monotonic()
    status, output = await run_program(args)
    if status != 0 or not _looks_initialised(datadir):
        raise MySQLError("mariadb-install-db failed", status, detail=tail(output))
    log.info("install-db created %s in %.2fs", datadir, time.monotonic() - started)
    await _load_time_zones(datadir)


async def _load_time_zones(datadir: Path, zoneinfo: Path = ZONEINFO) -> None:
    """Fill the time zone tables of the never-started ``datadir`` from ``zoneinfo``.

    As install-db does: the SQL goes to ``mariadbd --bootstrap``, nothing to a
    binary log. A small Aria log purged at once keeps ~17 MB of log out of the copies.
    """
    if not zoneinfo.is_dir():
        raise ConfigError(str(zoneinfo), detail="no time zone data: install tzdata")
    started = time.monotonic()
    status, sql = await run_program([find_binary(*TZINFO_TO_SQL), str(zoneinfo)], merge=False)
    if status != 0:
        raise MySQLError("mariadb-tzinfo-to-sql failed", status, detail=tail(sql))
    args = [
        find_binary(*SERVER),
        "--no-defaults",
        "--bootstrap",
        f"--datadir={datadir}",
        "--log-warnings=0",
        "--max-allowed-packet=8M",
        "--skip-log-bin",
        "--aria-log-file-size=8M",
        "--aria-log-purge-type=immediate",
    ]
    status, output = await run_program(args, stdin=b"USE mysql;\n" + sql.encode("utf-8"))
    if status != 0 or not _has_time_zones(datadir):
        raise MySQLError("loading the time zone tables failed", status, detail=tail(output))
    log.info("time zone tables loaded in %.2fs", time.monotonic() - started)


async def _sparse_copy(source: Path, target: Path) -> None:
    """``cp -a --sparse=always source target`` (``target`` must not exist)."""
    args = ["cp", "-a", "--sparse=always", str(source), str(target)]
    status, output = await run_program(args)
    if status != 0:
        raise MySQLError(f"copying {source} failed", status, tail(output))


def _chown_tree(root: Path, user: str) -> None:
    uid, gid = uid_gid(user)
    os.chown(root, uid, gid)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            os.lchown(os.path.join(directory, name), uid, gid)


def _needs_chown(user: str) -> bool:
    return os.geteuid() == 0 and uid_gid(user)[0] != 0


def remove_leftovers(parent: Path, prefix: str) -> None:
    for leftover in parent.glob(f"{prefix}*"):
        log.warning("removing leftover %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


async def _lock(fd: int, poll: float = 0.05) -> None:
    """Take an exclusive flock on ``fd`` without blocking the event loop."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(poll)


async def prepare_template(template_dir: Path) -> Path:
    """Build, once, a pristine (never started) initialised datadir at ``template_dir``.

    Safe across processes: builders serialise on a ``flock`` of a sibling lock
    file, build in a temporary sibling and ``rename`` it into place, so readers
    see either no template or a complete one. Returns ``template_dir``.
    """
    template_dir = template_dir.absolute()
    if _template_ready(template_dir):
        return template_dir
    parent = template_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    build_prefix = f".{template_dir.name}.build-"
    fd = os.open(parent / f".{template_dir.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await _lock(fd)
        if _template_ready(template_dir):
            return template_dir
        remove_leftovers(parent, build_prefix)  # from builders that crashed
        if _looks_initialised(template_dir):  # made before the time zone tables
            log.info("rebuilding the datadir template %s (no time zone tables)", template_dir)
            stale = Path(tempfile.mkdtemp(prefix=build_prefix, dir=parent))
            os.rename(template_dir, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        if template_dir.exists():
            if any(template_dir.iterdir()):
                raise ConfigError(f"{template_dir} exists and is not a datadir")
            template_dir.rmdir()
        build = Path(tempfile.mkdtemp(prefix=build_prefix, dir=parent))
        try:
            await _install_db(build / "raw")
            # install-db writes ~100 MB of zeros (the redo log); a sparse template
            # lets every later copy skip them instead of reading them.
            await _sparse_copy(build / "raw", build / "data")
            os.rename(build / "data", template_dir)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        log.info("datadir template ready at %s", template_dir)
        return template_dir
    finally:
        os.close(fd)  # releases the lock


async def initialise_datadir(
    paths: ServerPaths,
    root_password: str,
    template: Path | None = None,
    *,
    run_as: str | None = None,
) -> None:
    """Create ``paths.datadir`` for a first boot, and root's ``client.cnf``.

    The datadir is a sparse copy of ``template`` (see ``prepare_template``) or,
    without one, made by mariadb-install-db; either way it is built in a
    temporary sibling and renamed into place. ``paths.init_file`` (0600) then
    holds the SQL the server must run at its next start (``start(use_init_file=True)``):
    the password appears there only as its hash. ``run_as`` is the server's user
    as in ``ServerSettings``; as root, files are chowned to it.
    """
    if not root_password:
        raise InvalidArgumentError("the root password may not be empty")
    owner = resolve_run_as(run_as)
    chown = _needs_chown(owner)
    if is_initialised(paths):
        raise ConfigError(f"{paths.datadir} is already initialised")
    paths.ensure_dirs(owner if chown else None)
    client_cnf = render_client_cnf(paths, ROOT_USER, root_password)  # validates first
    if paths.datadir.exists():
        if any(paths.datadir.iterdir()):
            raise ConfigError(f"{paths.datadir} exists and is not an initialised datadir")
        paths.datadir.rmdir()
    remove_leftovers(paths.base, ".data-")
    started = time.monotonic()
    build = Path(tempfile.mkdtemp(prefix=".data-", dir=paths.base))
    try:
        if template is not None:
            if not _looks_initialised(template):
                raise ConfigError(f"{template} is not an initialised datadir")
            await _sparse_copy(template, build / "data")
        else:
            await _install_db(build / "data")
        os.chmod(build / "data", 0o700)
        if chown:
            _chown_tree(build / "data", owner)
        os.rename(build / "data", paths.datadir)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info(
        "datadir %s created %s in %.2fs",
        paths.datadir,
        "from template" if template is not None else "by install-db",
        time.monotonic() - started,
    )
    init_sql = render_init_sql(mysql_native_password_hash(root_password))
    write_private(paths.init_file, init_sql, owner=uid_gid(owner) if chown else None)
    write_private(paths.client_cnf, client_cnf)


def remove_init_file(paths: ServerPaths) -> None:
    """Delete the init file (it holds the root password hash)."""
    with contextlib.suppress(FileNotFoundError):
        paths.init_file.unlink()
