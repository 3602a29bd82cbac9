"""The backup stores' errors: each names the object it is about, never a secret."""

from __future__ import annotations

from conpaassql.errors import ConpaasSQLError


class BackupStoreError(ConpaasSQLError):
    """The store could not be reached, written or read."""

    code = -32050
    template = "Backup store error: %s"


class MissingObjectError(BackupStoreError):
    """No object of that key (or it was never completed)."""

    template = "No such backup object: %s"


class CorruptObjectError(BackupStoreError):
    """An object failed its checksum or its authentication: it is refused whole."""

    template = "Corrupt backup object: %s"
