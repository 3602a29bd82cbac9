"""Finding and running the MariaDB programs."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from conpaassql.errors import ConfigError

log = logging.getLogger(__name__)

FALLBACK_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")

SERVER = ("mariadbd", "mysqld")
INSTALL_DB = ("mariadb-install-db", "mysql_install_db")
CLIENT = ("mariadb", "mysql")
TZINFO_TO_SQL = ("mariadb-tzinfo-to-sql", "mysql_tzinfo_to_sql")


def find_binary(*names: str) -> str:
    """The absolute path of the first of ``names`` found on PATH or in the usual sbin dirs."""
    if not names:
        raise ConfigError("no binary name given")
    for name in names:
        found = shutil.which(name)
        if found:
            return os.path.abspath(found)
        for directory in FALLBACK_DIRS:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise ConfigError(f"program not found: {' or '.join(names)}")


async def run_program(args: Sequence[str], timeout: float = 300.0,
                      stdin: bytes | None = None, merge: bool = True) -> tuple[int, str]:
    """Run ``args`` (never holding a secret) to completion: (exit status, output).

    ``stdin`` is fed to the program; the output is stdout and stderr together,
    or stdout alone when not ``merge`` (stderr then goes to the log at debug level).
    """
    log.debug("running %s", " ".join(args))
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.PIPE,
    )
    try:
        output, errors = await asyncio.wait_for(process.communicate(stdin), timeout)
        if errors:
            log.debug("%s: %s", args[0], tail(errors.decode("utf-8", "replace")))
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    status = process.returncode
    assert status is not None
    return status, output.decode("utf-8", "replace")


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
