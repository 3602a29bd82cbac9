"""``sqldump`` made by the client's own ``mariadb-dump``, straight from the node.

The manager's ``grant_sqldump_login`` gives an account on the node that
``sqldump`` would dump, made for one login and dropped when its connection ends,
with the node's address, the service's CA and the tool's arguments. This client
then runs ``mariadb-dump`` (or ``mysqldump``) itself, over TLS verified with that
CA, and the dump goes from mariadbd into the output with no process of ours
relaying it: the tool writes a file itself (its growth counted for the progress
bar), and its output is spliced by the kernel into a pipe.

The password goes to the tool in a defaults file (mode 0600, in a private
temporary directory removed afterwards), never on a command line; the arguments the
manager sends are taken only from a fixed list of the export's options.

``dump_into`` answers None when this way is not open (no such tool here, a manager
that grants no account, a node this host cannot reach) and nothing was written: the
caller then streams the dump from the node's agent, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.streams import sql_failure_line

log = logging.getLogger(__name__)

DUMPERS = ("mariadb-dump", "mysqldump")
BLOCK = 1 << 20
#: Seconds to reach the node's MySQL port before the dump comes from its agent instead.
CONNECT_TIMEOUT = 5.0
#: Seconds between two looks at the size of the file the tool writes.
PROGRESS_INTERVAL = 0.2
#: The export's options a manager may ask this client to run the tool with.
ALLOWED_OPTIONS = frozenset({"--single-transaction", "--master-data=2", "--gtid",
                             "--routines", "--events", "--triggers", "--hex-blob", "--quick",
                             "--all-databases", "--ignore-database=mysql",
                             "--ignore-database=sys"})
_USER = re.compile(r"^[A-Za-z0-9_]{1,80}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_HOST = re.compile(r"^[A-Za-z0-9.:-]{1,253}$")
_DATABASE = re.compile(r"^[^\x00-\x1f]{1,64}$")
#: What the tool says when it could not log in at all (then nothing was written).
_NOT_CONNECTED = "when trying to connect"
STDERR_LIMIT = 64 * 1024


@dataclass(frozen=True)
class DumpLogin:
    node: int
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    ca: str = field(repr=False)
    args: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Any) -> DumpLogin:
        """The manager's answer, checked; ``RemoteError`` if it is not one."""
        try:
            login = cls(int(raw["node"]), str(raw["host"]), int(raw["port"]),
                        str(raw["user"]), str(raw["password"]), str(raw["ca"]),
                        tuple(str(arg) for arg in raw["args"]))
        except (KeyError, TypeError, ValueError):
            raise RemoteError("grant_sqldump_login answered something else than an "
                              "account") from None
        problem = login.problem()
        if problem:
            raise RemoteError(f"grant_sqldump_login answered {problem}")
        return login

    def problem(self) -> str | None:
        if not _HOST.match(self.host) or not 0 < self.port < 65536:
            return "a bad address"
        if not _USER.match(self.user) or not _PASSWORD.match(self.password):
            return "a bad account"
        if "-----BEGIN CERTIFICATE-----" not in self.ca or not self.ca.isascii():
            return "no CA certificate"
        options, databases = _split(self.args)
        if any(option not in ALLOWED_OPTIONS for option in options):
            return "an option this client does not run mariadb-dump with"
        if not all(_DATABASE.match(name) for name in databases):
            return "a bad database name"
        return None


def _split(args: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The options, and the names after ``--``."""
    if "--" in args:
        at = args.index("--")
        return args[:at], args[at + 1:]
    return args, ()


def find_dumper() -> str | None:
    for name in DUMPERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _write_defaults(directory: Path, login: DumpLogin) -> Path:
    ca = directory / "ca.pem"
    ca.write_text(login.ca, encoding="ascii")
    defaults = directory / "client.cnf"
    fd = os.open(defaults, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"[client]\nuser={login.user}\npassword={login.password}\n"
                     f"host={login.host}\nport={login.port}\nprotocol=tcp\n"
                     f"ssl-ca={ca}\nssl-verify-server-cert\n")
    return defaults


def _pump(source: int, target: int, advance: Callable[[int], None]) -> int:
    """Move everything from the pipe ``source`` into ``target`` (spliced by the kernel
    where it can be: a file or a pipe; copied for a terminal); the bytes moved."""
    total = 0
    splice = hasattr(os, "splice")
    while True:
        if splice:
            try:
                moved = os.splice(source, target, BLOCK)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS):  # not spliceable
                    raise
                splice = False
                continue
        else:
            data = os.read(source, BLOCK)
            moved = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(target, view):]
        if not moved:
            return total
        total += moved
        advance(moved)


def _read_limited(stream: BinaryIO, into: bytearray) -> None:
    while chunk := stream.read(4096):
        if len(into) < STDERR_LIMIT:
            into += chunk


class _Growth:
    """Counts what the tool writes into the file ``target`` (from offset ``start``),
    every ``PROGRESS_INTERVAL`` seconds, in a thread of its own."""

    def __init__(self, target: int, start: int, advance: Callable[[int], None]) -> None:
        self.target, self.start, self.advance = target, start, advance
        self.counted = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(PROGRESS_INTERVAL):
            self._catch_up()

    def _catch_up(self) -> None:
        size = os.fstat(self.target).st_size - self.start
        if size > self.counted:
            self.advance(size - self.counted)
            self.counted = size

    def stop(self) -> int:
        """Stop counting; everything written, counted."""
        self._done.set()
        self._thread.join()
        self._catch_up()
        return self.counted


def _offset(target: int) -> int:
    """Where the next write into the file ``target`` goes (its end, when appending)."""
    if fcntl.fcntl(target, fcntl.F_GETFL) & os.O_APPEND:
        return os.fstat(target).st_size
    return os.lseek(target, 0, os.SEEK_CUR)


async def _run(dumper: str, login: DumpLogin, target: int,
               advance: Callable[[int], None]) -> tuple[int, int, str]:
    """Run the tool into ``target``: (exit status, bytes written, what it said).

    A regular file is the tool's own output (no copy of ours at all: its growth is
    counted); anything else gets what the tool writes through a pipe, spliced."""
    into_file = stat.S_ISREG(os.fstat(target).st_mode)
    start = _offset(target) if into_file else 0
    with tempfile.TemporaryDirectory(prefix="conpaassql-dump-") as directory:
        defaults = _write_defaults(Path(directory), login)
        process = subprocess.Popen([dumper, f"--defaults-file={defaults}", *login.args],
                                   stdin=subprocess.DEVNULL,
                                   stdout=target if into_file else subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        said = bytearray()
        reader = threading.Thread(target=_read_limited, args=(process.stderr, said),
                                  daemon=True)
        reader.start()
        growth = _Growth(target, start, advance) if into_file else None
        try:
            if growth is not None:
                status = await asyncio.to_thread(process.wait)
                written = growth.stop()
                os.lseek(target, start + written, os.SEEK_SET)
            else:
                assert process.stdout is not None
                with contextlib.suppress(OSError):
                    fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, BLOCK)
                written = await asyncio.to_thread(_pump, process.stdout.fileno(), target,
                                                  advance)
                status = await asyncio.to_thread(process.wait)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if growth is not None:
                growth.stop()
            reader.join(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
            process.stderr.close()
    return status, written, said.decode("utf-8", "replace").strip()


async def _release(manager: RpcClient, user: str) -> None:
    """Tell the manager the account is no longer needed (else it lingers, unusable, for
    a minute)."""
    try:
        await manager.call("release_sqldump_login", {"user": user}, verb="GET")
    except (RemoteError, UnreachableError) as exc:
        log.debug("dump account %s not released: %s", user, exc)


async def _reachable(login: DumpLogin) -> bool:
    """Whether the node's MySQL port answers from here within ``CONNECT_TIMEOUT`` (the
    tool has no connect timeout of its own: a filtered port would hold it minutes)."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _, writer = await asyncio.open_connection(login.host, login.port)
    except (OSError, TimeoutError) as exc:
        log.info("node %d's MySQL port not reachable from here (%s): the dump comes from "
                 "the node's agent", login.node, exc or type(exc).__name__)
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def dump_into(manager: RpcClient, params: Mapping[str, Any], out: BinaryIO,
                    advance: Callable[[int], None],
                    started: Callable[[], None] = lambda: None) -> int | None:
    """``sqldump`` with ``params`` written into ``out`` by this host's ``mariadb-dump``;
    the bytes written, or None when this way is not open and nothing was written.
    ``started`` is called when the tool starts, ``advance`` with each count of bytes.

    ``RemoteError`` when the tool fails once it has begun (its own message; what it
    wrote then ends with the line that says the dump is incomplete), or when the
    manager's answer is not an account this client takes.
    """
    dumper = find_dumper()
    if dumper is None:
        log.debug("no mariadb-dump here: the dump comes from the node's agent")
        return None
    try:
        raw = await manager.call("grant_sqldump_login", dict(params), verb="GET")
    except RemoteError as exc:
        log.debug("no dump account (%s): the dump comes from the node's agent", exc)
        return None
    user = raw.get("user") if isinstance(raw, dict) else None
    try:
        login = DumpLogin.parse(raw)
        if not await _reachable(login):
            return None
        out.flush()
        started()
        status, written, said = await _run(dumper, login, out.fileno(), advance)
    finally:
        if isinstance(user, str) and _USER.match(user):
            await _release(manager, user)
    if status == 0:
        return written
    last = said.splitlines()[-1] if said else f"exit status {status}"
    if written == 0 and _NOT_CONNECTED in said:
        log.info("node %d not reachable with mariadb-dump from here (%s): the dump comes "
                 "from the node's agent", login.node, last)
        return None
    failure = f"mariadb-dump from node {login.node} failed: {last[:500]}"
    if written:
        _mark_incomplete(out.fileno(), failure)
    raise RemoteError(failure)


def _mark_incomplete(target: int, failure: str) -> None:
    """End what was written with the line that says the dump is incomplete (the tool
    may have written its own last line, ``-- Dump completed``, on some failures)."""
    line = memoryview(sql_failure_line(failure))
    with contextlib.suppress(OSError):
        while line:
            line = line[os.write(target, line):]
