"""Where one MariaDB server keeps its files, all under a single base directory."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from conpaassql.errors import ConfigError
from conpaassql.layout import (
    MAX_SOCKET_PATH,
    SERVER_PID_NAME,
    SERVER_RUN_DIR,
    SERVER_SOCKET_NAME,
)

PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class ServerPaths:
    """The files of the server whose directory is ``base`` (e.g. ``<node_dir>/mysql``)."""

    base: Path

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def run_dir(self) -> Path:
        return self.base / SERVER_RUN_DIR

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def socket(self) -> Path:
        return self.run_dir / SERVER_SOCKET_NAME

    @property
    def pid_file(self) -> Path:
        return self.run_dir / SERVER_PID_NAME

    @property
    def error_log(self) -> Path:
        return self.log_dir / "mysqld.err"

    @property
    def slow_log(self) -> Path:
        return self.log_dir / "mysqld-slow.log"

    @property
    def cnf(self) -> Path:
        return self.base / "my.cnf"

    @property
    def client_cnf(self) -> Path:
        """Root's client defaults file (mode 0600): the only file holding the password."""
        return self.base / "client.cnf"

    @property
    def init_file(self) -> Path:
        """SQL run once by the server at its first start (mode 0600)."""
        return self.base / "init.sql"

    @property
    def tmpdir(self) -> Path:
        return self.base / "tmp"

    @property
    def files_dir(self) -> Path:
        """The only directory ``LOAD DATA INFILE``/``SELECT ... INTO OUTFILE`` may use."""
        return self.base / "files"

    def check(self) -> None:
        """Raise ``ConfigError`` when the socket path is too long for a unix socket."""
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise ConfigError(f"socket path too long (over {MAX_SOCKET_PATH} bytes): {self.socket}")

    def ensure_dirs(self, owner: str | None = None) -> None:
        """Create base, run, log, tmp and files with mode 0700.

        ``owner`` (a user name) is the server's user when we are root and it runs
        as another user: it gets run, log, tmp and files, while base stays ours
        with mode 0711 (so it can neither read ``client.cnf`` nor swap ``my.cnf``).
        """
        self.check()
        handing_over = owner is not None and os.geteuid() == 0
        ids = uid_gid(owner) if owner is not None and handing_over else None
        self.base.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.base, 0o711 if ids and ids[0] != 0 else PRIVATE_DIR_MODE)
        for directory in (self.run_dir, self.log_dir, self.tmpdir, self.files_dir):
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
            os.chmod(directory, PRIVATE_DIR_MODE)
            if ids:
                os.chown(directory, *ids)


def uid_gid(user: str) -> tuple[int, int]:
    """The uid and primary gid of ``user``; ``ConfigError`` if unknown."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"no such user: {user}") from None
    return entry.pw_uid, entry.pw_gid
