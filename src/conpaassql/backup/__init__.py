"""Backup stores: encrypted, compressed, checksummed objects on a local directory or
S3, streamed both ways, and the catalog of backups kept in the store itself.

The manager builds one with ``open_store(config.backup, key, state_dir)``, the key
from ``load_or_create_key(<state dir>/secrets/backup_key)`` (``ServiceSecrets``).
"""

from __future__ import annotations

from pathlib import Path

from conpaassql.backup.errors import BackupStoreError, CorruptObjectError, MissingObjectError
from conpaassql.backup.filestore import FileStore
from conpaassql.backup.keys import BackupKey, load_or_create_key
from conpaassql.backup.store import BackupStore, StoredObject
from conpaassql.config import BackupConfig

__all__ = [
    "BackupConfig", "BackupKey", "BackupStore", "BackupStoreError", "CorruptObjectError",
    "FileStore", "MissingObjectError", "StoredObject", "load_or_create_key", "open_store",
]


def open_store(config: BackupConfig, key: BackupKey, state_dir: Path) -> BackupStore:
    """The store ``[backup]`` names: S3 (boto3 imported only then) or a directory."""
    if config.bucket is None:
        return FileStore(config.directory(state_dir), key)
    from conpaassql.backup.s3store import S3Settings, S3Store

    return S3Store(S3Settings(
        bucket=config.bucket, prefix=config.prefix, endpoint_url=config.endpoint_url,
        region=config.region, access_key_id=config.access_key_id,
        secret_access_key=config.secret_access_key, session_token=config.session_token,
        addressing_style=config.addressing_style, part_size=config.part_size), key)
