"""``S3Store``: objects in any S3-compatible store, through boto3.

A put streams into a multipart upload, a part uploaded as soon as it fills (at
most ``IN_FLIGHT`` parts uploading at once, so memory stays at a few parts; parts
grow with the object, see ``part_size``); a put smaller than one part is a single
PutObject. On any failure the multipart
upload is aborted. Every boto3 call is blocking and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from conpaassql.backup.errors import BackupStoreError, MissingObjectError
from conpaassql.backup.keys import BackupKey
from conpaassql.backup.store import SIDECAR, BackupStore, RawWriter, StoredObject

log = logging.getLogger(__name__)

MIB = 1 << 20
PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB
IN_FLIGHT = 2
PARTS_A_STEP = 500  # parts of a size before the next are one part_size larger
READ_SIZE = MIB
LIST_POOL = 8
_S3_ERRORS = (BotoCoreError, ClientError, OSError)
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach the bucket; credentials None: boto3's own chain
    (``AWS_ACCESS_KEY_ID``... in the environment, a profile, an instance role)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"  # path, virtual or auto
    part_size: int = PART_SIZE


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _describe(exc: BaseException) -> str:
    """An S3 error in a line, without the request's signature or credentials."""
    code = _error_code(exc)
    return f"{code}: {exc}" if code and code not in str(exc) else str(exc).splitlines()[0]


class _UploadWriter(RawWriter):
    def __init__(self, store: S3Store, key: str) -> None:
        self.store = store
        self.key = key
        self.name = store.object_name(key)
        self.blocks: list[bytes] = []
        self.buffered = 0
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.running: list[asyncio.Task[None]] = []
        self.placing = False  # complete or put: the object may be in place

    def part_size(self) -> int:
        """The configured size, growing with the parts sent: S3 takes 10,000 parts, so
        8 MiB parts make objects up to about 800 GB (16 MiB: 1.6 TB)."""
        return self.store.settings.part_size * (1 + len(self.parts) // PARTS_A_STEP)

    async def write(self, data: bytes) -> None:
        self.blocks.append(data)
        self.buffered += len(data)
        if self.buffered >= self.part_size():
            await self._send(self._take())

    def _take(self) -> bytes:
        part = b"".join(self.blocks)
        self.blocks.clear()
        self.buffered = 0
        return part

    async def _send(self, part: bytes) -> None:
        if self.upload_id is None:
            reply = await self.store.call("create_multipart_upload", self.key,
                                          Key=self.name)
            self.upload_id = str(reply["UploadId"])
        number = len(self.parts) + 1
        entry: dict[str, Any] = {"PartNumber": number}
        self.parts.append(entry)

        async def upload() -> None:
            reply = await self.store.call("upload_part", self.key, Key=self.name,
                                          UploadId=self.upload_id, PartNumber=number,
                                          Body=part)
            entry["ETag"] = reply["ETag"]
        self.running.append(asyncio.create_task(upload()))
        while len(self.running) > IN_FLIGHT or (self.running and self.running[0].done()):
            await self.running.pop(0)

    async def commit(self, record: StoredObject) -> None:
        if self.upload_id is None:
            await self.store.delete_sidecar(self.key)  # a replaced object: absent a moment
            self.placing = True
            await self.store.call("put_object", self.key, Key=self.name, Body=self._take())
        else:
            if self.blocks:
                await self._send(self._take())
            await asyncio.gather(*self.running)
            self.running.clear()
            await self.store.delete_sidecar(self.key)
            self.placing = True
            await self.store.call("complete_multipart_upload", self.key, Key=self.name,
                                  UploadId=self.upload_id,
                                  MultipartUpload={"Parts": self.parts})
            self.upload_id = None
        await self.store.call("put_object", self.key, Key=self.name + SIDECAR,
                              Body=record.to_json(), ContentType="application/json")

    async def abort(self) -> None:
        # Not cancelled: a part's upload goes on in its worker thread whatever its task
        # does, and a part that lands after the abort may be kept by S3 (and billed).
        await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()
        self.blocks.clear()
        if self.upload_id is not None:
            await self._quietly("abort_multipart_upload", UploadId=self.upload_id)
        if self.placing:  # the object may be in place without its sidecar
            await self._quietly("delete_object")

    async def _quietly(self, operation: str, **arguments: Any) -> None:
        try:
            await self.store.call(operation, self.key, Key=self.name, **arguments)
        except BackupStoreError as exc:
            log.warning("cleaning up after a failed upload of %s: %s", self.key, exc)


class S3Store(BackupStore):
    """A bucket (and a prefix in it) of AWS S3, MinIO, Ceph, Swift's S3 API..."""

    def __init__(self, settings: S3Settings, key: BackupKey) -> None:
        super().__init__(key)
        self.settings = settings
        self.prefix = settings.prefix.strip("/") + "/" if settings.prefix.strip("/") else ""
        self._client: Any = None
        self._lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}"

    def object_name(self, key: str) -> str:
        return self.prefix + key

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        settings = self.settings
        session = boto3.session.Session(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token, region_name=settings.region)
        config = Config(s3={"addressing_style": settings.addressing_style},
                        retries={"max_attempts": 5, "mode": "standard"},
                        max_pool_connections=IN_FLIGHT + LIST_POOL)
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._make_client)
        return self._client

    async def call(self, operation: str, key: str, **arguments: Any) -> Any:
        """``client.operation(Bucket=..., **arguments)`` in a thread; an error names
        the object and the store."""
        client = await self.client()
        try:
            return await asyncio.to_thread(getattr(client, operation),
                                           Bucket=self.settings.bucket, **arguments)
        except _S3_ERRORS as exc:
            if _error_code(exc) in _MISSING:
                raise MissingObjectError(f"{key} in {self.url}") from None
            raise BackupStoreError(f"{key} in {self.url}",
                                   detail=f"{operation}: {_describe(exc)}") from None

    async def _writer(self, key: str) -> RawWriter:
        return _UploadWriter(self, key)

    async def _read(self, key: str) -> AsyncGenerator[bytes, None]:
        reply = await self.call("get_object", key, Key=self.object_name(key))
        body = reply["Body"]
        try:
            while True:
                try:
                    block = await asyncio.to_thread(body.read, READ_SIZE)
                except _S3_ERRORS as exc:
                    raise BackupStoreError(f"{key} in {self.url}",
                                           detail=f"reading: {_describe(exc)}") from None
                if not block:
                    break
                yield block
        finally:
            await asyncio.to_thread(body.close)

    async def _read_sidecar(self, key: str) -> bytes | None:
        try:
            reply = await self.call("get_object", key, Key=self.object_name(key) + SIDECAR)
        except MissingObjectError:
            return None
        data = await asyncio.to_thread(reply["Body"].read)
        return bytes(data)

    async def delete_sidecar(self, key: str) -> None:
        await self.call("delete_object", key, Key=self.object_name(key) + SIDECAR)

    async def _list_keys(self, prefix: str) -> list[str]:
        client = await self.client()

        def pages() -> list[str]:
            names: list[str] = []
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.settings.bucket,
                                           Prefix=self.prefix + prefix):
                names.extend(item["Key"] for item in page.get("Contents", ()))
            return names
        try:
            names = await asyncio.to_thread(pages)
        except _S3_ERRORS as exc:
            raise BackupStoreError(f"{prefix or '*'} in {self.url}",
                                   detail=f"list_objects_v2: {_describe(exc)}") from None
        return [name[len(self.prefix):].removesuffix(SIDECAR) for name in names
                if name.endswith(SIDECAR)]

    async def _delete(self, key: str) -> None:
        await self.delete_sidecar(key)
        await self.call("delete_object", key, Key=self.object_name(key))

    async def open_uploads(self) -> list[str]:
        """The keys of the multipart uploads begun and neither completed nor aborted."""
        reply = await self.call("list_multipart_uploads", "*", Prefix=self.prefix)
        return [upload["Key"][len(self.prefix):] for upload in reply.get("Uploads", ())]

    async def close(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

