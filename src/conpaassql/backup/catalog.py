"""The catalog of backups, kept in the store itself.

Each backup's record is a JSON object at ``catalog/<id>.json`` (encrypted like any
other object), so the store outlives the manager: a new manager with the same
store and key lists the backups and can restore from them. A record is rewritten
as its backup goes on (``running`` then ``done`` or ``failed``); fields it does
not know are kept as they are, for later versions.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from conpaassql.backup.errors import BackupStoreError, CorruptObjectError
from conpaassql.backup.store import BackupStore

PREFIX = "catalog/"
KINDS = ("full", "incremental")
STATES = ("running", "done", "failed")
Json = bytes  # (the record has a field named ``bytes``)
_ID = re.compile(r"\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{6}")


def new_backup_id(kind: str, now: float | None = None) -> str:
    """``20261207T103000Z-full-3fa2c1``: sorts by time, unique."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{kind}-{secrets.token_hex(3)}"


@dataclass
class BackupRecord:
    """One backup. ``objects`` are the store keys that hold it; ``lsn`` InnoDB's
    positions (``from``/``to``) for incrementals; ``extra`` what this version of
    the record does not name."""

    id: str
    kind: str
    state: str = "running"
    started: float = 0.0
    finished: float | None = None
    gtid: str = ""
    bytes: int = 0
    node: str = ""
    parent: str | None = None
    lsn: dict[str, int] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise BackupStoreError(repr(self.id), detail="not a backup id")
        if self.kind not in KINDS or self.state not in STATES:
            raise BackupStoreError(self.id, detail=f"bad kind {self.kind!r} or state "
                                   f"{self.state!r}")

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.id}.json"

    def to_json(self) -> Json:
        record = asdict(self)
        extra = record.pop("extra")
        return json.dumps({**extra, **record}, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: Json, where: str) -> BackupRecord:
        try:
            record = json.loads(data)
            names = {item.name for item in fields(cls)} - {"extra"}
            known = {name: record.pop(name) for name in list(record) if name in names}
            return cls(**known, extra=record)
        except (ValueError, TypeError, AttributeError, BackupStoreError) as exc:
            raise CorruptObjectError(where, detail=f"not a backup record: {exc}") from None


class Catalog:
    """The backup records of one store."""

    def __init__(self, store: BackupStore) -> None:
        self.store = store

    async def save(self, record: BackupRecord) -> None:
        async with self.store.catalog_lock:
            await self.store.put_bytes(record.key, record.to_json(),
                                       {"kind": record.kind, "state": record.state})

    async def load(self, backup_id: str) -> BackupRecord:
        key = f"{PREFIX}{backup_id}.json"
        async with self.store.catalog_lock:
            return BackupRecord.from_json(await self.store.get_bytes(key), key)

    async def records(self) -> list[BackupRecord]:
        """Every record, oldest first (none missing while another is saved: the
        records of one store object are read and written one call at a time)."""
        found = []
        async with self.store.catalog_lock:
            for item in await self.store.list(PREFIX):
                found.append(BackupRecord.from_json(await self.store.get_bytes(item.key),
                                                    item.key))
        return sorted(found, key=lambda record: (record.started, record.id))

    async def delete(self, backup_id: str) -> None:
        """The record only: its objects are the caller's to delete first."""
        async with self.store.catalog_lock:
            await self.store.delete(f"{PREFIX}{backup_id}.json")
