"""The ``BackupStore`` interface: uniform verbs over a local directory or S3.

Every object is stored compressed and encrypted (``format``), with a sidecar
``KEY.meta`` beside it: a small JSON record of its sha256, its stored size, the
key id and the caller's metadata. The sidecar is written once the object is
complete and durable, so an object without one does not exist (an interrupted
put leaves nothing visible); ``list`` reads the sidecars.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field

from conpaassql.backup.errors import BackupStoreError, CorruptObjectError, MissingObjectError
from conpaassql.backup.format import VERSION, FrameDecoder
from conpaassql.backup.keys import BackupKey
from conpaassql.backup.pipeline import Decoding, Source, check_whole, encode
from conpaassql.backup.progress import JobProgress

SIDECAR = ".meta"
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@:+=-]{0,199}")
LIST_CONCURRENCY = 8


def check_key(key: str) -> str:
    """A key is ``a/b/c``: components of letters, digits and ``._@:+=-``, none starting
    with a dot (temporary files do), and it does not end with the sidecar's suffix."""
    parts = key.split("/")
    if (not key or len(key) > 900 or key.endswith(SIDECAR)
            or not all(_COMPONENT.fullmatch(part) for part in parts)):
        raise BackupStoreError(repr(key), detail="not a valid object key")
    return key


@dataclass(frozen=True)
class StoredObject:
    """What the store knows of one object."""

    key: str
    size: int  # stored bytes: header and frames
    sha256: str  # of the stored bytes
    key_id: str  # the backup key it was encrypted with
    created: float  # epoch seconds
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"format": VERSION, "size": self.size, "sha256": self.sha256,
                           "key_id": self.key_id, "created": self.created,
                           "metadata": self.metadata}, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, key: str, data: bytes) -> StoredObject:
        try:
            record = json.loads(data)
            return cls(key=key, size=int(record["size"]), sha256=str(record["sha256"]),
                       key_id=str(record["key_id"]), created=float(record["created"]),
                       metadata={str(k): str(v) for k, v in record["metadata"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptObjectError(key + SIDECAR, detail="an unreadable record") from None


Objects = list[StoredObject]
Keys = list[str]


class RawWriter(abc.ABC):
    """One object being written: bytes in order, then commit or abort."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self, record: StoredObject) -> None:
        """Make the object durable under its key, then its sidecar."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Leave nothing behind: no object, no temporary file, no open upload."""


class BackupStore(abc.ABC):
    """put/get/head/list/delete of encrypted, compressed, checksummed objects."""

    def __init__(self, key: BackupKey) -> None:
        self.key = key
        #: Held by ``Catalog`` while it writes or reads records: a record replaced
        #: (running, then done) is briefly absent from a listing of the store.
        self.catalog_lock = asyncio.Lock()

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """Where the store is (``file:///...``, ``s3://bucket/prefix``), without secrets."""

    async def put(self, key: str, source: Source, metadata: Mapping[str, str] | None = None,
                  progress: JobProgress | None = None) -> StoredObject:
        """Stream ``source`` (chunks, or a readable descriptor such as a pipe from
        ``mariabackup --stream=xbstream``) into the object ``key``, replacing any;
        ``progress`` counts the bytes read and stored as they go."""
        check_key(key)
        writer = await self._writer(key)
        try:
            encoder = None
            async with contextlib.aclosing(encode(source, self.key, key,
                                                         progress=progress)) as blocks:
                async for block, encoder in blocks:  # noqa: B007 (complete after the last)
                    if block:
                        await writer.write(block)
            assert encoder is not None
            record = StoredObject(key, encoder.size, encoder.digest.hexdigest(), self.key.id,
                                  time.time(), dict(metadata or {}))
            await writer.commit(record)
        except BaseException:
            await asyncio.shield(writer.abort())
            raise
        return record

    async def put_bytes(self, key: str, data: bytes,
                        metadata: Mapping[str, str] | None = None) -> StoredObject:
        async def once() -> AsyncGenerator[bytes, None]:
            yield data
        return await self.put(key, once(), metadata)

    async def get(self, key: str, progress: JobProgress | None = None
                  ) -> AsyncGenerator[bytes, None]:
        """The original bytes of ``key``, streamed. Each frame is authenticated before
        its bytes go on; a corrupt object raises ``CorruptObjectError`` naming ``key``
        (at the end for a cut or a checksum mismatch: the caller must not trust what it
        received before the iterator ended normally)."""
        record = await self.head(key)
        decoding = Decoding(self._read(key), self.key, key, record.sha256, record.size,
                            progress)
        async with contextlib.aclosing(decoding.chunks()) as chunks:
            async for chunk in chunks:
                yield chunk

    async def get_into(self, key: str, descriptor: int) -> StoredObject:
        """Write the original bytes of ``key`` to ``descriptor`` (``mbstream -x``'s
        stdin), straight from ``zstd -d``; raises as ``get`` does."""
        record = await self.head(key)
        decoding = Decoding(self._read(key), self.key, key, record.sha256, record.size)
        async with contextlib.aclosing(decoding.chunks(into=descriptor)) as chunks:
            async for _ in chunks:
                pass
        return record

    async def verify(self, key: str) -> StoredObject:
        """Read ``key`` whole and check every frame and its checksum, without
        decompressing it; raises ``CorruptObjectError`` naming it."""
        record = await self.head(key)
        decoder = FrameDecoder(self.key, key)
        async with contextlib.aclosing(self._read(key)) as blocks:
            async for block in blocks:
                await asyncio.to_thread(decoder.update, block)
        decoder.finish()
        check_whole(decoder, record.sha256, record.size)
        return record

    async def get_bytes(self, key: str) -> bytes:
        """A small object whole (a catalog record)."""
        return b"".join([chunk async for chunk in self.get(key)])

    async def head(self, key: str) -> StoredObject:
        check_key(key)
        data = await self._read_sidecar(key)
        if data is None:
            raise MissingObjectError(f"{key} in {self.url}")
        return StoredObject.from_json(key, data)

    async def exists(self, key: str) -> bool:
        check_key(key)
        return await self._read_sidecar(key) is not None

    async def list(self, prefix: str = "") -> Objects:
        """The complete objects whose keys start with ``prefix``, in key order."""
        keys = sorted(await self._list_keys(prefix))
        limit = asyncio.Semaphore(LIST_CONCURRENCY)

        async def one(key: str) -> StoredObject | None:
            async with limit:
                data = await self._read_sidecar(key)
            return None if data is None else StoredObject.from_json(key, data)

        found = await asyncio.gather(*(one(key) for key in keys))
        return [item for item in found if item is not None]

    async def delete(self, key: str) -> None:
        """Remove ``key`` (its sidecar first, so it is never seen half deleted); a key
        that does not exist is no error."""
        check_key(key)
        await self._delete(key)

    @abc.abstractmethod
    async def _writer(self, key: str) -> RawWriter: ...

    @abc.abstractmethod
    def _read(self, key: str) -> AsyncGenerator[bytes, None]:
        """The stored bytes of ``key``."""

    @abc.abstractmethod
    async def _read_sidecar(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def _list_keys(self, prefix: str) -> Keys:
        """The keys with a sidecar under ``prefix``."""

    @abc.abstractmethod
    async def _delete(self, key: str) -> None: ...

    async def close(self) -> None:  # noqa: B027 (most stores hold nothing)
        """Release connections."""
