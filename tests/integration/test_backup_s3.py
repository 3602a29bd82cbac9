"""The S3 store (``conpaassql.backup.s3store``) against a real S3 API: moto's server
on a loopback port, spoken to by boto3 over HTTP with path-style addressing.

A stream of several multipart parts round trips; a corrupted object is refused
naming it; an upload that fails mid-way (its source, or the store) leaves no
object and no open multipart upload; list, delete and the catalog; the store's
errors name it and carry no secret."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from conpaassql.backup import (
    BackupKey,
    BackupStoreError,
    CorruptObjectError,
    MissingObjectError,
    open_store,
    s3store,
)
from conpaassql.backup.catalog import BackupRecord, Catalog, new_backup_id
from conpaassql.backup.s3store import S3Settings, S3Store
from conpaassql.config import IniFile, ManagerConfig
from testbed.standins.s3 import s3_server
from testbed.streams import MIB, Generated, read_back, read_back_from_pipe

KEY_ID, SECRET = "AKIDBACKUPSTANDIN001", "backup-standin-Secret-9"
BUCKET = "service-backups"
KEY = BackupKey.generate()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server(BUCKET, KEY_ID, SECRET) as (url, _):
        yield url


@pytest.fixture
def settings(endpoint: str, request: pytest.FixtureRequest) -> S3Settings:
    """A prefix of the bucket of each test's own."""
    return S3Settings(bucket=BUCKET, prefix=f"svc/{request.node.name[:40]}",
                      endpoint_url=endpoint, region="us-east-1", access_key_id=KEY_ID,
                      secret_access_key=SECRET, addressing_style="path")


def raw_client(settings: S3Settings) -> Any:
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)


def names_in(settings: S3Settings) -> list[str]:
    reply = raw_client(settings).list_objects_v2(Bucket=BUCKET, Prefix=settings.prefix)
    return sorted(item["Key"].removeprefix(settings.prefix + "/")
                  for item in reply.get("Contents", ()))


def open_uploads(settings: S3Settings) -> list[str]:
    reply = raw_client(settings).list_multipart_uploads(Bucket=BUCKET)
    return [item["Key"] for item in reply.get("Uploads", ())
            if item["Key"].startswith(settings.prefix)]


def test_a_stream_of_several_parts_round_trips(settings: S3Settings) -> None:
    async def scenario() -> None:
        store = S3Store(settings, KEY)
        source = Generated(40 * MIB)
        stored = await store.put("b/1/data.xbstream", source.chunks(), {"node": "n2"})
        assert stored.size > 40 * MIB
        assert await read_back(store, "b/1/data.xbstream") == \
            (source.digest.hexdigest(), 40 * MIB)
        assert await read_back_from_pipe(store, "b/1/data.xbstream") == \
            (source.digest.hexdigest(), 40 * MIB)
        assert await store.head("b/1/data.xbstream") == stored
        assert names_in(settings) == ["b/1/data.xbstream", "b/1/data.xbstream.meta"]
        head = raw_client(settings).head_object(
            Bucket=BUCKET, Key=f"{settings.prefix}/b/1/data.xbstream")
        assert head["ContentLength"] == stored.size
        parts = int(head["ETag"].strip('"').rpartition("-")[2])
        assert parts in (5, 6)  # 40 MiB and the frames, in parts of 8 MiB and a little
        source = Generated(9 * MIB)
        read = source.to_pipe()
        try:
            await store.put("from-pipe", read)
        finally:
            os.close(read)
        assert await read_back(store, "from-pipe") == (source.digest.hexdigest(), 9 * MIB)
        await store.close()
    asyncio.run(scenario())


def test_parts_grow_with_the_object(settings: S3Settings,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 takes 10,000 parts: past each step of parts, the next are one part_size
    larger (here a step of 2 parts of 5 MiB: 5, 5, 10, 10, then the rest)."""
    monkeypatch.setattr(s3store, "PARTS_A_STEP", 2)

    async def scenario() -> None:
        store = S3Store(replace(settings, part_size=5 * MIB), KEY)
        source = Generated(40 * MIB)
        await store.put("grown", source.chunks())
        head = raw_client(settings).head_object(Bucket=BUCKET,
                                                Key=f"{settings.prefix}/grown")
        assert head["ETag"].strip('"').endswith("-5")  # fixed 5 MiB parts: 9
        assert await read_back(store, "grown") == (source.digest.hexdigest(), 40 * MIB)
        await store.close()
    asyncio.run(scenario())


def test_a_corrupted_object_is_refused_naming_it(settings: S3Settings) -> None:
    async def scenario() -> None:
        store = S3Store(settings, KEY)
        await store.put("b/2/data.xbstream", Generated(3 * MIB).chunks())
        client, name = raw_client(settings), f"{settings.prefix}/b/2/data.xbstream"
        data = bytearray(client.get_object(Bucket=BUCKET, Key=name)["Body"].read())
        data[2 * MIB] ^= 0x10
        client.put_object(Bucket=BUCKET, Key=name, Body=bytes(data))
        named = r"object: b/2/data\.xbstream DETAIL"
        with pytest.raises(CorruptObjectError, match=named) as caught:
            await read_back(store, "b/2/data.xbstream")
        assert "fails authentication" in str(caught.value)
        with pytest.raises(CorruptObjectError, match=named):
            await read_back_from_pipe(store, "b/2/data.xbstream")
        with pytest.raises(CorruptObjectError, match=named):
            await store.verify("b/2/data.xbstream")
        await store.close()
    asyncio.run(scenario())


def test_a_source_that_fails_mid_way_leaves_nothing(settings: S3Settings) -> None:
    async def scenario() -> None:
        store = S3Store(settings, KEY)
        with pytest.raises(OSError, match="mid-way"):
            await store.put("broken", Generated(40 * MIB, fail_after=30 * MIB).chunks())
        assert names_in(settings) == []
        assert open_uploads(settings) == []
        with pytest.raises(MissingObjectError, match="broken"):
            await store.head("broken")
        await store.close()
    asyncio.run(scenario())


FAILURES = {
    "UploadPart": lambda params: params.get("PartNumber") == 3,
    "CompleteMultipartUpload": lambda params: True,
    "PutObject": lambda params: str(params.get("Key", "")).endswith(".meta"),  # the sidecar
}


@pytest.mark.parametrize("operation", sorted(FAILURES))
def test_a_store_that_fails_mid_way_leaves_nothing(settings: S3Settings,
                                                   operation: str) -> None:
    async def scenario() -> None:
        store = S3Store(settings, KEY)
        client = await store.client()

        def refuse(params: dict[str, Any], **_: Any) -> None:
            if FAILURES[operation](params):
                raise OSError("connection reset by the store")
        client.meta.events.register(f"provide-client-params.s3.{operation}", refuse)
        with pytest.raises(BackupStoreError, match=r"broken in s3://") as caught:
            await store.put("broken", Generated(40 * MIB).chunks())
        assert SECRET not in str(caught.value)
        assert names_in(settings) == []
        assert open_uploads(settings) == []
        assert await store.open_uploads() == []
        await store.close()
    asyncio.run(scenario())


def test_list_delete_and_the_catalog(settings: S3Settings) -> None:
    async def scenario() -> None:
        store = S3Store(settings, KEY)
        for key in ["binlogs/0-1-100", "binlogs/0-1-200", "full/x"]:
            await store.put_bytes(key, key.encode())
        assert [item.key for item in await store.list("binlogs/")] == \
            ["binlogs/0-1-100", "binlogs/0-1-200"]
        await store.delete("binlogs/0-1-100")
        assert [item.key for item in await store.list()] == ["binlogs/0-1-200", "full/x"]
        assert "binlogs/0-1-100" not in " ".join(names_in(settings))
        with pytest.raises(MissingObjectError, match="binlogs/0-1-100"):
            await store.get_bytes("binlogs/0-1-100")
        record = BackupRecord(new_backup_id("full"), "full", started=5.0, gtid="0-1-7")
        await Catalog(store).save(record)
        await store.close()
        again = S3Store(settings, KEY)  # a new manager on the same bucket
        assert await Catalog(again).records() == [record]
        await again.close()
    asyncio.run(scenario())


def test_the_configuration_opens_the_bucket(settings: S3Settings) -> None:
    async def scenario() -> None:
        text = (f"[backup]\nstore = s3://{BUCKET}/{settings.prefix}\n"
                f"endpoint_url = {settings.endpoint_url}\nregion = us-east-1\n"
                "access_key_id = $S3_KEY\nsecret_access_key = $S3_SECRET\n"
                "addressing_style = path\n")
        config = ManagerConfig.from_ini(IniFile.from_text(
            text, {"S3_KEY": KEY_ID, "S3_SECRET": SECRET}, "m.cnf")).backup
        store = open_store(config, KEY, state_dir=Path("/nonexistent"))
        assert isinstance(store, S3Store)
        assert store.url == f"s3://{BUCKET}/{settings.prefix}/"
        await store.put_bytes("x", b"through the configuration")
        assert await store.get_bytes("x") == b"through the configuration"
        await store.close()
    asyncio.run(scenario())


def test_a_missing_bucket_is_an_error_naming_the_store(settings: S3Settings) -> None:
    async def scenario() -> None:
        store = S3Store(replace(settings, bucket="no-such-bucket"), KEY)
        with pytest.raises(BackupStoreError, match="x in s3://no-such-bucket/") as caught:
            await store.put_bytes("x", b"y")
        assert SECRET not in str(caught.value)
        await store.close()
    asyncio.run(scenario())
