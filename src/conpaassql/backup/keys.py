"""The service's backup key: 32 random bytes, generated once, kept 0600.

The file holds the key in base64url (43 characters and a newline). Without it no
backup of the service can be read: it must be copied somewhere safe, apart from
the backups (README, "Backups: the key").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from conpaassql.errors import ConfigError
from conpaassql.files import write_private

KEY_BYTES = 32
KEY_FILE = "backup_key"


@dataclass(frozen=True)
class BackupKey:
    """An AES-256 key and its id (a public fingerprint, written in each object)."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a backup key has {KEY_BYTES} bytes")

    @property
    def id(self) -> str:
        """16 hex digits: which key an object was written with, telling nothing of it."""
        return hashlib.sha256(b"conpaassql backup key id\0" + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> BackupKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_text(cls, text: str, where: str = "backup key") -> BackupKey:
        """The file's form (base64url, padding optional) back to a key."""
        word = text.strip()
        try:
            raw = base64.urlsafe_b64decode(word + "=" * (-len(word) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ConfigError(where, detail=f"not a backup key ({KEY_BYTES} bytes in base64url)")
        return cls(raw)

    def to_text(self) -> str:
        return base64.urlsafe_b64encode(self.secret).decode("ascii").rstrip("=")


def load_or_create_key(path: Path) -> BackupKey:
    """The key in ``path``, created there (mode 0600, directory 0700) if absent."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), detail=f"cannot read the backup key: {exc}") from None
    if text.strip():
        return BackupKey.from_text(text, str(path))
    key = BackupKey.generate()
    write_private(path, key.to_text() + "\n")
    os.chmod(path.parent, 0o700)
    return key
