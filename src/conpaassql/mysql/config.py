"""The server's option files: ``my.cnf`` (no secret in it) and root's ``client.cnf``.

MariaDB reads option files with mysys ``load_defaults``: a value may be enclosed
in single or double quotes, inside which ``\\\\``, ``\\"``, ``\\'``, ``\\t``... are
escapes and ``#`` is not a comment. Options may be abbreviated to any unambiguous
prefix and decorated with ``loose-``/``skip-``/``enable-``/``disable-``/``maximum-``,
which :func:`is_protected` takes into account.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conpaassql.errors import ConfigError, InvalidArgumentError
from conpaassql.mysql.paths import ServerPaths

MAX_VALUE_LENGTH = 1024

_OPTION_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_BARE_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+%=*-]+")
_BIND_ADDRESS = re.compile(r"[A-Za-z0-9.:,_%*-]{1,255}")
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_DECORATIONS = ("loose-", "skip-", "enable-", "disable-", "maximum-")

#: Options the service sets itself (paths, identity, replication, security);
#: users may not set them, nor any prefix or decorated form of them.
PROTECTED_OPTIONS: frozenset[str] = frozenset(
    {
        "datadir", "socket", "port", "bind-address", "user", "pid-file", "log-error",
        "init-file", "plugin-dir", "basedir", "tmpdir", "server-id", "skip-name-resolve",
        "log-bin", "log-bin-index", "binlog-format", "log-slave-updates", "log-basename",
        "relay-log", "relay-log-index", "relay-log-info-file", "master-info-file",
        "slow-query-log-file", "general-log-file", "secure-file-priv", "skip-grant-tables",
        "skip-networking", "extra-port", "extra-bind-address", "plugin-load",
        "plugin-load-add", "innodb-data-home-dir", "innodb-log-group-home-dir",
        "innodb-undo-directory", "innodb-tmpdir", "aria-log-dir-path", "character-sets-dir",
        "lc-messages-dir", "language", "chroot", "bootstrap", "defaults-file",
        "defaults-extra-file", "defaults-group-suffix", "no-defaults", "print-defaults",
        "read-only", "gtid-strict-mode", "skip-slave-start",
        "ssl", "skip-ssl", "ssl-ca", "ssl-capath", "ssl-cert", "ssl-key", "ssl-cipher",
        "ssl-crl", "ssl-crlpath", "tls-version",
    }
)  # fmt: skip

#: Seconds of silence after which a slave drops its master's connection (the
#: master sends a heartbeat every second).
SLAVE_NET_TIMEOUT = 3

#: What applications expect of a server (each may be overridden by the options).
#: utf8mb4_unicode_520_ci is the newest Unicode collation of MariaDB 10.11 (UCA 5.2.0;
#: the uca1400 ones came in 11.x): unlike utf8mb4_general_ci it orders and compares
#: by the Unicode rules and tells supplementary characters (emoji) apart.
APPLICATION_DEFAULTS: Mapping[str, str] = {
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_unicode_520_ci",
    "slow-query-log": "ON",
    "long-query-time": "1",
    # Users without SUPER may create stored functions: the binary log holds rows
    # (binlog-format ROW), not calls, so what a function does replicates as is.
    "log-bin-trust-function-creators": "ON",
}

MIB = 1 << 20
GIB = 1 << 30
#: Memory a node keeps for the OS, connections and caches beyond the buffer pool.
RESERVED_MEMORY = GIB
#: MariaDB's own default buffer pool, the least given.
MIN_BUFFER_POOL = 128 * MIB
#: About what a connection may use (RDS: max_connections = memory / 12582880 bytes).
MEMORY_PER_CONNECTION = 12 * MIB
MIN_CONNECTIONS = 151  # MariaDB's default
MAX_CONNECTIONS = 5000


def memory_defaults(memory: int) -> dict[str, str]:
    """Buffer pool and connections for a node of ``memory`` bytes.

    The pool is 3/4 of memory (RDS's rule) but leaves at least ``RESERVED_MEMORY``
    to the rest (a 2 GiB node gets 1 GiB), in 128 MiB steps, never below 128 MiB;
    connections are memory / 12 MiB, between 151 and 5000.
    """
    pool = min(memory * 3 // 4, memory - RESERVED_MEMORY) // MIN_BUFFER_POOL * MIN_BUFFER_POOL
    connections = min(max(memory // MEMORY_PER_CONNECTION, MIN_CONNECTIONS), MAX_CONNECTIONS)
    return {"innodb-buffer-pool-size": f"{max(pool, MIN_BUFFER_POOL) // MIB}M",
            "max-connections": str(connections)}


def node_memory() -> int:
    """This machine's memory in bytes, or its cgroup's limit when lower."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
    except OSError:
        return memory
    return min(memory, int(limit)) if limit.isdigit() else memory


#: Real options that are also proper prefixes of protected ones (an exact match
#: wins over a prefix in mariadbd's option parser, so these are safe).
_REAL_PREFIX_OPTIONS = frozenset({"slow-query-log", "general-log", "innodb", "aria", "lc-messages"})


def normalise_option(name: str) -> str:
    """Lower-case ``name`` and write ``_`` as ``-``; ``InvalidArgumentError`` if malformed."""
    lowered = name.lower() if isinstance(name, str) else ""
    if not _OPTION_NAME.fullmatch(lowered):
        raise InvalidArgumentError(f"bad option name {name!r}"[:100])
    return lowered.replace("_", "-")


def validate_option_value(value: str) -> str:
    """Return ``value`` if an option file can hold it (one line, at most 1024 chars)."""
    if not isinstance(value, str):
        raise InvalidArgumentError("option value must be a string")
    if any(bad in value for bad in ("\n", "\r", "\0")):
        raise InvalidArgumentError("option value may not contain a newline, CR or NUL")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidArgumentError(f"option value longer than {MAX_VALUE_LENGTH} characters")
    return value


def _undecorated(name: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _DECORATIONS:
            if name.startswith(prefix):
                name, stripped = name[len(prefix) :], True
    return name


_PROTECTED_FORMS = frozenset(PROTECTED_OPTIONS | {_undecorated(p) for p in PROTECTED_OPTIONS})


def is_protected(name: str) -> bool:
    """True when option ``name`` (normalised) would set one of ``PROTECTED_OPTIONS``."""
    for form in {name, _undecorated(name)}:
        if form in _PROTECTED_FORMS:
            return True
        if form in _REAL_PREFIX_OPTIONS:
            continue
        if any(p.startswith(form) for p in _PROTECTED_FORMS):
            return True
    return False


def quote_option_value(value: str) -> str:
    """``value`` as an option file must spell it (quoted and escaped when needed)."""
    validate_option_value(value)
    if _BARE_VALUE.fullmatch(value):
        return value
    return f'"{_escape(value)}"'


def resolve_run_as(run_as: str | None) -> str:
    """The user mariadbd runs as: ``run_as``, else root when we are root, else ourselves."""
    if run_as:
        return run_as
    euid = os.geteuid()
    return "root" if euid == 0 else pwd.getpwuid(euid).pw_name


@dataclass(frozen=True)
class ServerSettings:
    """What varies between servers; the rest of ``my.cnf`` follows from ``ServerPaths``.

    ``options`` are extra ``[mariadbd]`` options, over ``APPLICATION_DEFAULTS``
    and the memory sizing; they are normalised and checked here (protected names
    and bad values raise ``InvalidArgumentError``). An empty value writes the
    option as a bare flag. ``memory``: the node's memory in bytes, to size the
    buffer pool and connections from (None: MariaDB's small defaults, for nodes
    sharing a machine).
    """

    bind_address: str
    port: int = 3306
    server_id: int = 1
    run_as: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    #: (CA, certificate, key) files: TLS for every TCP client, and only TLS.
    tls: tuple[Path, Path, Path] | None = None
    memory: int | None = None

    def __post_init__(self) -> None:
        if not _BIND_ADDRESS.fullmatch(self.bind_address):
            raise InvalidArgumentError(f"bad bind address {self.bind_address!r}"[:100])
        if not 0 < self.port < 65536:
            raise InvalidArgumentError(f"bad port {self.port}")
        if self.memory is not None and self.memory <= 0:
            raise InvalidArgumentError(f"bad memory size {self.memory}")
        if not 0 < self.server_id < 2**32:
            raise InvalidArgumentError(f"bad server id {self.server_id}")
        if self.run_as is not None and not _USER_NAME.fullmatch(self.run_as):
            raise InvalidArgumentError(f"bad user name {self.run_as!r}"[:100])
        options: dict[str, str] = {}
        for raw_name, value in self.options.items():
            name = normalise_option(raw_name)
            if is_protected(name):
                raise InvalidArgumentError(f"option {name} is managed by the service")
            options[name] = validate_option_value(value)
        object.__setattr__(self, "options", options)


def _path_value(path: os.PathLike[str] | str) -> str:
    text = os.fspath(path)
    if any(bad in text for bad in ("\n", "\r", "\0")):
        raise ConfigError("path contains a newline")
    return quote_option_value(text)


def render_my_cnf(paths: ServerPaths, settings: ServerSettings) -> str:
    """The server's ``my.cnf``: a ``[mariadbd]`` section and a ``[client]`` socket."""
    paths.check()
    server: list[tuple[str, str | None]] = [
        ("datadir", _path_value(paths.datadir)),
        ("socket", _path_value(paths.socket)),
        ("pid-file", _path_value(paths.pid_file)),
        ("bind-address", settings.bind_address),
        ("port", str(settings.port)),
        ("log-error", _path_value(paths.error_log)),
        ("user", quote_option_value(resolve_run_as(settings.run_as))),
        ("server-id", str(settings.server_id)),
        ("skip-name-resolve", None),
        ("log-bin", _path_value(paths.datadir / "binlog")),
        ("log-bin-index", _path_value(paths.datadir / "binlog.index")),
        ("binlog-format", "ROW"),
        ("log-slave-updates", None),
        ("relay-log", _path_value(paths.datadir / "relay-bin")),
        ("relay-log-index", _path_value(paths.datadir / "relay-bin.index")),
        ("slow-query-log-file", _path_value(paths.slow_log)),
        ("tmpdir", _path_value(paths.tmpdir)),
        ("secure-file-priv", _path_value(paths.files_dir)),
        # Replication: every server boots read-only until the manager makes it the
        # master; GTIDs in strict mode so that a diverged server stops, not drifts.
        ("read-only", "ON"),
        ("gtid-strict-mode", "ON"),
        ("slave-net-timeout", str(SLAVE_NET_TIMEOUT)),
        ("rpl-semi-sync-master-wait-point", "AFTER_SYNC"),
        ("rpl-semi-sync-slave-kill-conn-timeout", "1"),
        # Durable by default (each may be overridden in the options below).
        ("innodb-flush-log-at-trx-commit", "1"),
        ("sync-binlog", "1"),
    ]
    options = dict(APPLICATION_DEFAULTS)
    if settings.memory is not None:
        options.update(memory_defaults(settings.memory))
    if settings.tls is not None:
        ca, cert, key = settings.tls
        server += [("ssl-ca", _path_value(ca)), ("ssl-cert", _path_value(cert)),
                   ("ssl-key", _path_value(key)), ("tls-version", "TLSv1.2,TLSv1.3")]
        # Over TCP only TLS (the unix socket, local to the node, is not TCP).
        options["require-secure-transport"] = "ON"
    options.update(settings.options)
    for name, value in options.items():
        server.append((name, quote_option_value(value) if value else None))
    lines = ["# Written by conpaassql; changes are overwritten.", "[mariadbd]"]
    lines += [name if value is None else f"{name}={value}" for name, value in server]
    lines += ["", "[client]", f"socket={_path_value(paths.socket)}", ""]
    return "\n".join(lines)


def render_client_cnf(paths: ServerPaths, user: str, password: str) -> str:
    """A ``[client]`` defaults file for ``user`` over the socket (keep it mode 0600)."""
    lines = [
        "[client]",
        f"user={quote_option_value(user)}",
        f'password="{_escape(password)}"',
        f"socket={_path_value(paths.socket)}",
        "",
    ]
    return "\n".join(lines)


def _escape(value: str) -> str:
    if any(bad in value for bad in ("\n", "\r", "\0")):
        # Deliberately vague: the value may be a password.
        raise InvalidArgumentError("value may not contain a newline, CR or NUL")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidArgumentError(f"value longer than {MAX_VALUE_LENGTH} characters")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\t", "\\t")
