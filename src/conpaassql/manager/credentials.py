"""The service's generated secrets, kept in the state directory (mode 0600).

``agent_secret`` is the credential manager and agents show each other;
``root_password`` is MySQL's root password on every node;
``replication_password`` is the slaves' password on their master;
``backup_key`` encrypts every backup (without it no backup can be read: README,
"Backups"). All are generated at first start with ``secrets`` and never logged.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from conpaassql.backup.keys import BackupKey, load_or_create_key
from conpaassql.files import write_private


def load_or_create(path: Path, nbytes: int = 24) -> str:
    """Read the secret at ``path``, creating it (mode 0600) if absent."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    try:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value


@dataclass(frozen=True)
class ServiceSecrets:
    agent_secret: str
    root_password: str
    replication_password: str
    backup_key: BackupKey

    @classmethod
    def load(cls, state_dir: Path) -> ServiceSecrets:
        directory = state_dir / "secrets"
        return cls(
            agent_secret=load_or_create(directory / "agent_secret"),
            root_password=load_or_create(directory / "root_password"),
            replication_password=load_or_create(directory / "replication_password"),
            backup_key=load_or_create_key(directory / "backup_key"),
        )

    def __repr__(self) -> str:
        return "ServiceSecrets(<hidden>)"
