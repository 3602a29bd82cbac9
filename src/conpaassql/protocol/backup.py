"""The backup store's part of the agent protocol: a backup into the store, a restore
from it, and the binlog archiver; the methods themselves are in ``agent.METHODS``."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from conpaassql.protocol.base import OpenReply, Reply, Request
from conpaassql.rpc.types import PositiveInt, Text


class StoreSettings(Request):
    """Where the service's backups are and their key (``[backup]`` and the key of
    ``ServiceSecrets``): sent over the mutual-TLS agent RPC only, never logged."""

    path: Text | None = None  # a directory (the file store) the node can reach
    bucket: Text | None = None
    prefix: Text = ""
    endpoint_url: Text | None = None
    region: Text | None = None
    access_key_id: Text | None = None
    secret_access_key: Text | None = Field(default=None, repr=False)
    session_token: Text | None = Field(default=None, repr=False)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    part_size: PositiveInt = 8 * 1024 * 1024
    key: Annotated[str, Field(min_length=43, max_length=44, pattern=r"^[A-Za-z0-9_=-]+$",
                              repr=False)]


class BackupToStoreRequest(Request):
    """A physical backup of this node's server into ``object`` of the store; an
    incremental from ``incremental_lsn`` (its parent's ``to_lsn``)."""

    store: StoreSettings
    object: Annotated[str, Field(min_length=1, max_length=900)]
    incremental_lsn: Annotated[int, Field(ge=0)] | None = None


class RestoreFromStoreRequest(Request):
    """Replace this node's data by the backup in ``objects`` (the full backup's
    object, then its incrementals' in order); the server stays read-only. With
    ``target_time`` (epoch seconds), the archived binlogs are then replayed from the
    backup's GTID position up to that second."""

    store: StoreSettings
    objects: Annotated[list[Annotated[str, Field(min_length=1, max_length=900)]],
                       Field(min_length=1, max_length=1000)]
    target_time: Annotated[float, Field(ge=0)] | None = None
    #: The backup is another service's (``restore_from``): root takes this service's
    #: password and that service's replication accounts are dropped.
    foreign: bool = False


class ArchiveRequest(Request):
    """Archive this node's binlogs to a backup store (the master's agent): the store
    as ``[backup]`` names it, the service's backup key, and the GTID position the
    store already holds (archiving begins with the transaction after it)."""

    path: Text | None = None  # a file store's directory (on a machine the node shares)
    bucket: Text | None = None
    prefix: Text = ""
    endpoint_url: Text | None = None
    region: Text | None = None
    access_key_id: Text | None = None
    secret_access_key: Text | None = Field(default=None, repr=False)
    session_token: Text | None = Field(default=None, repr=False)
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}=?$", repr=False)]
    since: Text = ""
    interval: Annotated[float, Field(gt=0, le=3600)] = 5.0


class BackupTaken(Reply):
    gtid: str = ""
    from_lsn: int = 0
    to_lsn: int = 0
    bytes: int = 0  # stored (compressed, encrypted)
    seconds: float = 0.0


class RestoredFromStore(OpenReply):
    gtid_position: str = ""
    seconds: float = 0.0


class ArchiveStatus(Reply):
    """The node's binlog archiver: how far the store holds its transactions."""

    omitted_if_none: ClassVar[frozenset[str]] = frozenset({"gap", "diverged", "error"})

    archiving: bool
    since: str = ""  # where this archiver began
    archived_to: str = ""  # the GTID position the store holds (as far as it knows)
    archived_time: int | None = None  # commit time of the last archived transaction
    caught_up_at: float | None = None  # every commit before this is in the store
    segments: int = 0
    gap: dict[str, str] | None = None
    #: The archive's tail held transactions this node never had (a lost master's):
    #: set aside, and archiving went on from the last one both share.
    diverged: dict[str, str] | None = None
    error: str | None = None


class VerifyFromStoreRequest(Request):
    """Restore the backup in ``objects`` (as ``RestoreFromStoreRequest``) into a scratch
    directory, start a server of its own on it and check every user table; the
    node's own server and data are left alone."""

    store: StoreSettings
    objects: Annotated[list[Annotated[str, Field(min_length=1, max_length=900)]],
                       Field(min_length=1, max_length=1000)]


class VerifiedFromStore(Reply):
    tables: int = 0  # user tables checked, all sound
    gtid_position: str = ""
    seconds: float = 0.0


class JobProgressReply(Reply):
    """The node's backup or restore under way (every field None when it runs none):
    ``bytes`` done of ``expected`` (None: unknown); for a backup, the bytes its copy
    produced and ``stored`` those written to the store, for a restore the stored bytes
    fetched. ``phase``: a backup's ``copy``; a restore's ``fetch``, ``prepare``,
    ``start``, ``replay``."""

    omitted_if_none: ClassVar[frozenset[str]] = frozenset(
        {"kind", "phase", "bytes", "stored", "expected", "started"})

    kind: Literal["backup", "restore"] | None = None
    phase: str | None = None
    bytes: int | None = None
    stored: int | None = None
    expected: int | None = None
    started: float | None = None  # epoch seconds
