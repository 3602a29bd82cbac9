"""API tokens: the credential of the user API once it listens beyond loopback.

Only a token's SHA-256 is kept (``secrets/api_tokens.json``, mode 0600); a new
token is shown once, to whoever made it. At first start the manager makes an
admin token and writes it to ``secrets/api_token`` (mode 0600), for the
service's owner (``conpaassql-client --token-file``); ``conpaassql token
rotate`` replaces it. A ``read`` token may call the GET methods only.

The manager re-reads the file when it changes, so tokens made or revoked from
the command line take effect without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from conpaassql.errors import ConfigError
from conpaassql.files import write_private

TokenAccess = Literal["admin", "read"]
TOKEN_PREFIX = "cqt_"
REGISTRY_FILE = "api_tokens.json"
OWNER_FILE = "api_token"


@dataclass(frozen=True)
class TokenRecord:
    id: str
    sha256: str
    access: TokenAccess
    created: float
    label: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    """The tokens of one service, kept as digests in its secrets directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / REGISTRY_FILE
        self.owner_file = directory / OWNER_FILE
        self._lock = threading.Lock()
        self._records: list[TokenRecord] = []
        self._seen: tuple[int, int, int] | None = None

    def _load(self) -> list[TokenRecord]:
        """The records, re-read when the file changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._records, self._seen = [], None
            return []
        mark = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # replaced files: new inode
        if mark != self._seen:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._records = [TokenRecord(**item) for item in data]
                for record in self._records:
                    if record.access not in ("admin", "read"):
                        raise ValueError(f"token {record.id}: unknown access "
                                         f"{record.access!r}")
            except (ValueError, TypeError) as exc:
                raise ConfigError(str(self.path), detail=f"unreadable: {exc}") from None
            self._seen = mark
        return list(self._records)

    def _save(self, records: list[TokenRecord]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps([asdict(r) for r in records], indent=1))
        self._seen = None

    def records(self) -> list[TokenRecord]:
        with self._lock:
            return self._load()

    def create(self, access: TokenAccess = "admin", label: str = "") -> tuple[TokenRecord, str]:
        """A new token: its record and the token itself (shown once, never stored)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(id=secrets.token_hex(4), sha256=_digest(token), access=access,
                             created=time.time(), label=label)
        with self._lock:
            self._save([*self._load(), record])
        return record, token

    def revoke(self, token_id: str) -> bool:
        with self._lock:
            records = self._load()
            kept = [r for r in records if r.id != token_id]
            if len(kept) == len(records):
                return False
            self._save(kept)
        return True

    def ensure_owner_token(self) -> bool:
        """At first start: an admin token in ``api_token`` (0600). True if made now."""
        if self.owner_file.exists() or self.records():
            return False
        _, token = self.create("admin", "owner (made at first start)")
        write_private(self.owner_file, token + "\n")
        return True

    def rotate_owner_token(self) -> TokenRecord:
        """Revoke every admin token and write a new one to ``api_token``."""
        with self._lock:
            kept = [r for r in self._load() if r.access != "admin"]
            self._save(kept)
        record, token = self.create("admin", "owner (rotated)")
        write_private(self.owner_file, token + "\n")
        return record

    def check(self, token: str) -> TokenRecord | None:
        """The record of ``token`` if it is a valid one."""
        digest = _digest(token)
        found = None
        for record in self.records():
            if hmac.compare_digest(record.sha256, digest):
                found = record
        return found
