"""Private files written whole: secrets, keys, contexts and option files.

Every layer that keeps a secret on disk (the manager's credentials and keys, the
server's option files, a node's context) writes it here, so that it is never
readable by others, even for a moment, and never seen half-written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes | str, mode: int = 0o600,
                  owner: tuple[int, int] | None = None) -> None:
    """Atomically replace ``path`` by ``data`` (text as UTF-8).

    The temporary sibling gets ``mode`` (and ``owner``, a uid and gid, if given)
    before anything is written to it; it is synced, then renamed over ``path``.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    temporary = Path(name)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as stream:
            fd = -1
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
