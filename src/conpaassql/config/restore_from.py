"""``[backup] restore_from``: a new service built from a backup in a store.

``restore_from = <store>#<backup id>`` restores that backup (and the
incrementals before it); ``restore_from = <store>@<time>`` the data as it was
at that second (ISO 8601, UTC when no zone is given, or epoch seconds), or
``<store>@latest`` the latest restorable second. ``<store>`` is written as
``store`` is (``file:///path``, a path, ``s3://bucket/prefix``); an S3 store is
reached with this section's ``endpoint_url``, ``region``, credentials and
``addressing_style``. The store's objects are read with ``restore_key`` (the
other service's backup key, its text) or ``restore_key_file`` (a file holding
it, readable by its owner only, as the service's own key file is); with neither,
with this service's own key.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from conpaassql.config.ini import Section, relative_path
from conpaassql.errors import ConfigError

BACKUP_ID = re.compile(r"\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{6}")
LATEST = "latest"
FORMS = ("<store>#<backup id>, <store>@<time> (ISO 8601, UTC when no zone is given, or "
         "epoch seconds) or <store>@latest")


@dataclass(frozen=True)
class RestoreSource:
    """Where a new service's first node takes its data from."""

    text: str  # as written (a store URL and a backup or time: no secret)
    store: str  # the store's part of it
    path: Path | None  # a file store's directory
    bucket: str | None  # or an S3 store's bucket and prefix
    prefix: str = ""
    backup: str | None = None  # a backup id...
    time: float | None = None  # ... or a second (epoch seconds)...
    latest: bool = False  # ... or the latest restorable second
    key: str | None = field(default=None, repr=False)  # restore_key
    key_file: Path | None = None  # restore_key_file

    @property
    def what(self) -> str:
        """``backup <id>``, ``<time> UTC`` or ``the latest restorable second``."""
        if self.backup is not None:
            return f"backup {self.backup}"
        if self.time is not None:
            return datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return "the latest restorable second"


def split_source(text: str) -> tuple[str, str | None, float | None, bool]:
    """(store, backup id, time, latest) of ``restore_from``; ``ValueError`` saying why."""
    text = text.strip()
    if "#" in text:
        store, _, backup = text.rpartition("#")
        if not BACKUP_ID.fullmatch(backup.strip()):
            raise ValueError(f"{backup[:60]!r} is not a backup id (list_backups shows them, "
                             "e.g. 20261207T103000Z-full-3fa2c1)")
        return store.strip(), backup.strip(), None, False
    if "@" in text:
        store, _, when = text.rpartition("@")
        when = when.strip()
        if when.lower() == LATEST:
            return store.strip(), None, None, True
        return store.strip(), None, parse_moment(when), False
    raise ValueError(f"no backup nor time in it: give {FORMS}")


def parse_moment(text: str) -> float:
    """Epoch seconds of ``text``: epoch seconds, or ISO 8601 (UTC when naive)."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text[:60]!r} is not a time: give {FORMS}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text[:60]!r} is not a time")
    return seconds


def read_key_file(path: Path) -> str:
    """The text of ``restore_key_file``; ``ConfigError`` naming it when it cannot be
    read or when its group or others may read or write it (mode not 0600)."""
    where = f"[backup] restore_key_file {path}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(where, detail=f"unreadable: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise ConfigError(where, detail=f"mode {mode:04o}: group or others may read "
                              f"it; make it the owner's only (chmod 600 {path})")
        try:
            return stream.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(where, detail=f"unreadable: {exc}") from None


#: Reads a store as ``[backup] store`` is read: ``(text, where) -> (path, bucket, prefix)``.
StoreParser = Callable[[str, str], tuple[Path | None, str | None, str]]


def restore_source(section: Section, parse_store: StoreParser) -> RestoreSource | None:
    """``restore_from`` and its key of ``section`` (None when not set)."""
    text = section.get("restore_from")
    key, key_file = section.get("restore_key"), section.get("restore_key_file")
    if not text:
        for name, value in (("restore_key", key), ("restore_key_file", key_file)):
            if value:
                raise ConfigError(section.where(name), detail="only with restore_from")
        return None
    where = section.where("restore_from")
    try:
        store, backup, time, latest = split_source(text)
    except ValueError as exc:
        raise ConfigError(where, detail=str(exc)) from None
    if not store:
        raise ConfigError(where, detail=f"no store in it: give {FORMS}")
    if key and key_file:
        raise ConfigError(section.where("restore_key_file"),
                          detail="give restore_key or restore_key_file, not both")
    path, bucket, prefix = parse_store(store, where)
    return RestoreSource(text=text.strip(), store=store, path=path, bucket=bucket,
                         prefix=prefix,
                         backup=backup, time=time, latest=latest, key=key or None,
                         key_file=relative_path(key_file, section.ini.path) if key_file
                         else None)
