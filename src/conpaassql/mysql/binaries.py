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


async def run_program(args: Sequence[str], timeout: float = 300.0) -> tuple[int, str]:
    """Run ``args`` (never holding a secret) to completion: (exit status, stdout+stderr)."""
    log.debug("running %s", " ".join(args))
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
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
