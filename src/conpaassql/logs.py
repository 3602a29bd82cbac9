"""Logging set-up shared by the daemons (a file in the state directory and stderr),
and the tail of a log file, as ``get_log`` and error messages show it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The most a tail reads from the end of a file, and the blocks it reads by.
MAX_TAIL_BYTES = 4 << 20
TAIL_BLOCK = 64 << 10


def setup_logging(log_file: Path | None, level: int = logging.INFO) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def tail_lines(path: Path, lines: int | None, limit: int = MAX_TAIL_BYTES) -> str:
    r"""The last ``lines`` lines of ``path`` (all it holds if ``None``), reading at most
    ``limit`` bytes from its end; a line cut by that limit is left out.

    A missing file gives ``""``; other ``OSError``\ s are the caller's.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return ""
    with handle:
        end = handle.seek(0, os.SEEK_END)
        start = end
        data = b""
        while start > 0 and end - start < limit and (
                lines is None or data.count(b"\n") <= lines):
            step = min(TAIL_BLOCK, start, limit - (end - start))
            start -= step
            handle.seek(start)
            data = handle.read(step) + data
    kept = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and kept:
        kept = kept[1:]
    if lines is not None:
        kept = kept[-lines:] if lines else []
    return "\n".join(kept) + "\n" if kept else ""
