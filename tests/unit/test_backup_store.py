"""The file store (``conpaassql.backup.FileStore``) through the real ``zstd``: streams
round trip, a corrupted object is refused naming it, a failed put leaves nothing;
list, head and delete; the catalog in the store; ``[backup]`` in the configuration."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from conpaassql.backup import (
    BackupKey,
    BackupStoreError,
    CorruptObjectError,
    FileStore,
    MissingObjectError,
    filestore,
    open_store,
)
from conpaassql.backup.catalog import BackupRecord, Catalog, new_backup_id
from conpaassql.config import BackupConfig, IniFile, ManagerConfig
from conpaassql.errors import ConfigError
from conpaassql.manager.credentials import ServiceSecrets
from testbed.streams import MIB, Generated, read_back, read_back_from_pipe

KEY = BackupKey.generate()


def store_at(tmp_path: Path, key: BackupKey = KEY) -> FileStore:
    return FileStore(tmp_path / "backups", key)


def files_in(store: FileStore) -> list[str]:
    return sorted(path.relative_to(store.root).as_posix()
                  for path in store.root.rglob("*") if path.is_file())


def test_a_stream_bigger_than_a_frame_round_trips(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        source = Generated(40 * MIB)
        stored = await store.put("b/1/data.xbstream", source.chunks(), {"node": "n3"})
        assert source.given == 40 * MIB
        assert stored.size > 40 * MIB  # incompressible: a little more, with the frames
        assert await read_back(store, "b/1/data.xbstream") == \
            (source.digest.hexdigest(), 40 * MIB)
        assert await read_back_from_pipe(store, "b/1/data.xbstream") == \
            (source.digest.hexdigest(), 40 * MIB)
        head = await store.head("b/1/data.xbstream")
        assert head == stored and head.metadata == {"node": "n3"} and head.key_id == KEY.id
        path = store.root / "b" / "1" / "data.xbstream"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    asyncio.run(scenario())


def test_a_pipe_is_streamed_in_and_compressed(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        source = Generated(12 * MIB)
        read = source.to_pipe()
        try:
            await store.put("from-pipe", read)
        finally:
            os.close(read)
        assert await read_back(store, "from-pipe") == (source.digest.hexdigest(), 12 * MIB)
        text = b"INSERT INTO t VALUES (1, 'the same row again');\n" * 100_000
        small = await store.put_bytes("text", text)
        assert small.size < len(text) // 20
        assert await store.get_bytes("text") == text
    asyncio.run(scenario())


def corrupt(path: Path, position: int) -> None:
    with path.open("r+b") as stream:
        stream.seek(position)
        byte = stream.read(1)
        stream.seek(position)
        stream.write(bytes([byte[0] ^ 0x04]))


def test_a_corrupted_object_is_refused_naming_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        source = Generated(6 * MIB)
        await store.put("b/2/data.xbstream", source.chunks())
        await store.put("b/1/kept", Generated(2 * MIB).chunks())
        corrupt(store.root / "b" / "2" / "data.xbstream", 3 * MIB + 17)
        named = r"object: b/2/data\.xbstream DETAIL"
        with pytest.raises(CorruptObjectError, match=named) as caught:
            await read_back(store, "b/2/data.xbstream")
        assert "fails authentication" in str(caught.value)
        with pytest.raises(CorruptObjectError, match=named):
            await read_back_from_pipe(store, "b/2/data.xbstream")
        with pytest.raises(CorruptObjectError, match=named):
            await store.verify("b/2/data.xbstream")
        assert (await store.verify("b/1/kept")).key == "b/1/kept"
    asyncio.run(scenario())


def test_a_checksum_that_differs_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        await store.put_bytes("c", b"catalog record")
        sidecar = store.root / "c.meta"
        record = json.loads(sidecar.read_text())
        record["sha256"] = "0" * 64
        sidecar.write_text(json.dumps(record))
        with pytest.raises(CorruptObjectError, match="object: c DETAIL:its sha256"):
            await store.get_bytes("c")
        sidecar.write_text("{not json")
        with pytest.raises(CorruptObjectError, match=r"c\.meta"):
            await store.head("c")
    asyncio.run(scenario())


def test_a_cut_object_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        stored = await store.put("cut", Generated(3 * MIB).chunks())
        path = store.root / "cut"
        os.truncate(path, stored.size - 100)
        with pytest.raises(CorruptObjectError, match="cut"):
            await read_back(store, "cut")
        with pytest.raises(CorruptObjectError, match="cut"):
            await store.verify("cut")
    asyncio.run(scenario())


def test_another_services_key_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        await store_at(tmp_path).put_bytes("k", b"secret rows")
        other = store_at(tmp_path, BackupKey.generate())
        with pytest.raises(CorruptObjectError, match=f"object: k DETAIL:.*{KEY.id}"):
            await other.get_bytes("k")
    asyncio.run(scenario())


def test_a_failed_put_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        await store.put_bytes("kept", b"before")
        with pytest.raises(OSError, match="mid-way"):
            await store.put("broken", Generated(8 * MIB, fail_after=5 * MIB).chunks())
        assert files_in(store) == ["kept", "kept.meta"]
        with pytest.raises(MissingObjectError, match="broken"):
            await store.head("broken")
    asyncio.run(scenario())


def test_a_put_that_fails_at_its_record_leaves_nothing(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(path: Path, data: bytes | str, **_: object) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(filestore, "write_private", full_disk)

    async def scenario() -> None:
        store = store_at(tmp_path)
        with pytest.raises(OSError, match="No space left"):
            await store.put("broken", Generated(3 * MIB).chunks())
        assert files_in(store) == []
    asyncio.run(scenario())


def test_list_head_and_delete(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = store_at(tmp_path)
        assert await store.list() == []
        for key in ["binlogs/0-1-100", "binlogs/0-1-200", "full/x", "catalog/a.json"]:
            await store.put_bytes(key, key.encode())
        assert [item.key for item in await store.list("binlogs/")] == \
            ["binlogs/0-1-100", "binlogs/0-1-200"]
        assert len(await store.list()) == 4
        await store.put_bytes("full/x", b"replaced")
        assert await store.get_bytes("full/x") == b"replaced"
        await store.delete("binlogs/0-1-100")
        await store.delete("binlogs/0-1-100")  # gone already: no error
        assert [item.key for item in await store.list("binlogs")] == ["binlogs/0-1-200"]
        assert not await store.exists("binlogs/0-1-100")
        with pytest.raises(MissingObjectError, match="binlogs/0-1-100"):
            await store.get_bytes("binlogs/0-1-100")
    asyncio.run(scenario())


@pytest.mark.parametrize("key", ["", "../x", "a/../b", "/abs", ".hidden", "a/.tmp",
                                 "x.meta", "a//b", "sp ace", "a/"])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    async def scenario() -> None:
        with pytest.raises(BackupStoreError, match="not a valid object key"):
            await store_at(tmp_path).put_bytes(key, b"x")
    asyncio.run(scenario())


def test_the_catalog_outlives_the_manager(tmp_path: Path) -> None:
    async def scenario() -> None:
        catalog = Catalog(store_at(tmp_path))
        full = BackupRecord(new_backup_id("full", 1_800_000_000), "full", started=1.0,
                            node="node-2", gtid="0-1-42", lsn={"to": 9000},
                            objects=["backups/x/data.xbstream"])
        await catalog.save(full)
        incremental = BackupRecord(new_backup_id("incremental"), "incremental", started=2.0,
                                   parent=full.id, lsn={"from": 9000, "to": 9500})
        await catalog.save(incremental)
        full.state, full.finished, full.bytes = "done", 1.5, 123
        full.extra["verified"] = True  # a field of a later version is kept
        await catalog.save(full)
        again = Catalog(store_at(tmp_path))  # a new manager on the same store and key
        records = await again.records()
        assert [record.id for record in records] == [full.id, incremental.id]
        assert records[0] == full and records[1].parent == full.id
        assert full.id.startswith("20270115T080000Z-full-")
        await again.delete(incremental.id)
        assert [record.id for record in await again.records()] == [full.id]
    asyncio.run(scenario())


def backup_section(text: str, env: dict[str, str] | None = None) -> BackupConfig:
    return ManagerConfig.from_ini(IniFile.from_text(text, env, "m.cnf")).backup


def test_the_backup_section() -> None:
    assert ManagerConfig().backup == BackupConfig()
    assert BackupConfig().directory(Path("/srv/var")) == Path("/srv/var/backups")
    assert backup_section("[backup]\nstore = file:///srv/backups\n").path == \
        Path("/srv/backups")
    assert backup_section("[backup]\nstore = backups\n").path == Path("backups")
    config = backup_section(
        "[backup]\nstore = s3://db-backups/svc1/\nendpoint_url = http://127.0.0.1:9000\n"
        "region = eu-west-1\naccess_key_id = $KEY_ID\nsecret_access_key = ${SECRET}\n"
        "addressing_style = path\npart_size = 16\n",
        {"KEY_ID": "AKID", "SECRET": "Sec-ret"})
    assert (config.bucket, config.prefix, config.region) == ("db-backups", "svc1", "eu-west-1")
    assert (config.access_key_id, config.secret_access_key) == ("AKID", "Sec-ret")
    assert config.part_size == 16 * MIB and config.addressing_style == "path"
    assert "Sec-ret" not in repr(config) and config.url == "s3://db-backups/svc1"


@pytest.mark.parametrize(("text", "message"), [
    ("store = ftp://x/y", "a store is file:///path or s3://bucket/prefix"),
    ("store = s3://Bad_Bucket/x", "not a bucket name"),
    ("store = s3:///x", "not a bucket name"),
    ("store = file://host/x", "file:///absolute/path"),
    ("store = s3://bucket\nendpoint_url = minio:9000", "not an http:// or https:// URL"),
    ("store = s3://bucket\nendpoint_url = http://k:s3cr3t@h", "not in the URL"),
    ("store = s3://bucket\naccess_key_id = a", "go together"),
    ("store = file:///x\nendpoint_url = http://h", "only for an s3:// store"),
    ("store = s3://bucket\naddressing_style = dns", "not one of auto, path, virtual"),
    ("store = s3://bucket\npart_size = 4", "between 5 and 5120"),
    ("stor = s3://bucket", r"\[backup\] STOR.*unknown key"),
    ("store = s3://bucket\nsecret_access_key = $NOPE\naccess_key_id = a", r"\$NOPE is not set"),
])
def test_bad_backup_sections_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backup_section(f"[backup]\n{text}\n", {})


def test_the_service_key_is_one_of_its_secrets(tmp_path: Path) -> None:
    async def scenario() -> None:
        secrets = ServiceSecrets.load(tmp_path)
        path = tmp_path / "secrets" / "backup_key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ServiceSecrets.load(tmp_path).backup_key == secrets.backup_key
        store = open_store(BackupConfig(), secrets.backup_key, tmp_path)
        assert isinstance(store, FileStore) and store.root == tmp_path / "backups"
        await store.put_bytes("x", b"y")
        assert await store.get_bytes("x") == b"y"
    asyncio.run(scenario())
