"""``[backup] restore_from`` read from the configuration (its forms, its key, its
errors), and ``[backup] verify``; the manager's first node restored from the source,
its errors, and a service that had nodes."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conpaassql.backup import BackupKey, FileStore
from conpaassql.backup.catalog import BackupRecord, Catalog
from conpaassql.config import BackupConfig, IniFile, ManagerConfig
from conpaassql.config.restore_from import parse_moment, read_key_file, split_source
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import ConfigError, ConpaasSQLError
from conpaassql.manager.backups import Backups
from conpaassql.manager.restore_from import FirstRestore, pending

BACKUP = "20261207T103000Z-full-3fa2c1"
NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()
KEY = BackupKey.generate()


def backup_section(text: str, env: dict[str, str] | None = None) -> BackupConfig:
    return ManagerConfig.from_ini(IniFile.from_text(text, env or {}, "/etc/m.cnf")).backup


def test_a_backup_of_a_file_store() -> None:
    source = backup_section(f"[backup]\nrestore_from = file:///srv/svc1/backups#{BACKUP}\n"
                            "restore_key_file = keys/svc1\n").restore_from
    assert source is not None
    assert (source.path, source.bucket, source.backup, source.time, source.latest) == (
        Path("/srv/svc1/backups"), None, BACKUP, None, False)
    assert source.key_file == Path("/etc/keys/svc1") and source.key is None
    assert source.store == "file:///srv/svc1/backups" and source.what == f"backup {BACKUP}"


def test_a_time_of_an_s3_store_with_its_key_from_the_environment() -> None:
    key = "k" * 43
    config = backup_section(
        "[backup]\nstore = file:///srv/own\nendpoint_url = http://127.0.0.1:9000\n"
        "restore_from = s3://svc1-backups/prod@2026-12-07 12:00:00\n"
        "restore_key = $OTHER_KEY\n", {"OTHER_KEY": key})
    source = config.restore_from
    assert source is not None
    assert (source.bucket, source.prefix, source.time) == ("svc1-backups", "prod", NOON)
    assert source.key == key and key not in repr(config)
    assert source.what == "2026-12-07 12:00:00 UTC"
    latest = backup_section("[backup]\nrestore_from = /srv/b@latest\n").restore_from
    assert latest is not None and latest.latest and latest.path == Path("/srv/b")
    assert latest.key is None and latest.key_file is None  # this service's own key
    assert backup_section("[backup]\n").restore_from is None


@pytest.mark.parametrize(("text", "moment"), [
    ("2026-12-07 12:00:00", NOON), ("2026-12-07T12:00:00Z", NOON),
    ("2026-12-07T13:00:00+01:00", NOON), (str(int(NOON)), NOON), ("1.5", 1.5)])
def test_the_times(text: str, moment: float) -> None:
    assert parse_moment(text) == moment
    assert split_source(f"file:///a@b@{text}") == ("file:///a@b", None, moment, False)


@pytest.mark.parametrize(("line", "error"), [
    ("restore_from = file:///srv/b", "no backup nor time"),
    (f"restore_from = file:///srv/b#{BACKUP[:-1]}", "is not a backup id"),
    ("restore_from = file:///srv/b@yesterday", "is not a time"),
    ("restore_from = file:///srv/b@-5", "is not a time"),
    (f"restore_from = #{BACKUP}", "no store"),
    (f"restore_from = ftp://x/y#{BACKUP}", "a store is file:///path or s3://"),
    (f"restore_from = s3://B/x#{BACKUP}", "is not a bucket name"),
    ("restore_key = abc", "only with restore_from"),
    ("restore_key_file = abc", "only with restore_from"),
    (f"restore_from = /b#{BACKUP}\nrestore_key = a\nrestore_key_file = b", "not both"),
    ("verify = always", "is not one of never, after_full, after_each"),
])
def test_the_errors(line: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        backup_section(f"[backup]\n{line}\n")


def test_the_verify_setting() -> None:
    assert backup_section("[backup]\n").verify == "never"
    assert backup_section("[backup]\nverify = After_Full\n").verify == "after_full"
    assert backup_section("[backup]\nverify = after_each\n").verify == "after_each"


# --- the manager's side ---------------------------------------------------------------


class History:
    """The manager's store as ``FirstRestore`` uses it: meta, events, nodes."""

    def __init__(self, nodes: list[Node] | None = None) -> None:
        self.metas: dict[str, str] = {}
        self.events: list[str] = []
        self.all = {n.id: n for n in nodes or []}

    def meta(self, key: str) -> str | None:
        return self.metas.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.metas[key] = value

    def record_event(self, message: str, *_: Any) -> None:
        self.events.append(message)

    def nodes(self, include_terminated: bool = False) -> list[Node]:
        return list(self.all.values())

    def get_node(self, node_id: int) -> Node | None:
        return self.all.get(node_id)

    def update_node(self, node_id: int, **changes: Any) -> Node:
        self.all[node_id] = dataclasses.replace(self.all[node_id], **changes)
        return self.all[node_id]


class Service:
    """``NodeService``: nodes added into ``History``, work spawned kept aside."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.spawned: list[str] = []

    def live_nodes(self) -> list[Node]:
        return self.rt.store.nodes()

    async def add_nodes(self, count: int, cloud: str | None = None,
                        role: Role = Role.NONE) -> list[Node]:
        made = []
        for _ in range(count):
            node_id = len(self.rt.store.all) + 1
            self.rt.store.all[node_id] = Node(node_id, f"n{node_id}", "local",
                                              NodeState.PENDING, role, "", 60000, 3306)
            made.append(self.rt.store.all[node_id])
        return made

    def spawn(self, work: Any, what: str) -> None:
        work.close()
        self.spawned.append(what)


def first_restore(tmp_path: Path, restore_from: str | None,
                  nodes: list[Node] | None = None) -> FirstRestore:
    source = None
    if restore_from is not None:
        source = backup_section(f"[backup]\nrestore_from = {restore_from}\n").restore_from
    rt = SimpleNamespace(config=SimpleNamespace(backup=BackupConfig(restore_from=source)),
                         store=History(nodes), secrets=SimpleNamespace(backup_key=KEY),
                         state_dir=tmp_path)
    service = Service(rt)
    return FirstRestore(Backups(service), replication=None)  # type: ignore[arg-type]


async def a_store_with_one_backup(tmp_path: Path) -> str:
    """A file store of another service (this key) holding backup ``BACKUP``; its URL."""
    store = FileStore(tmp_path / "other", KEY)
    record = BackupRecord(BACKUP, "full", state="done", started=1.0, finished=2.0,
                          gtid="0-1-5", objects=[f"backups/{BACKUP}.xbstream"])
    await store.put_bytes(record.objects[0], b"xbstream")
    await Catalog(store).save(record)
    return (tmp_path / "other").as_uri()


def test_nothing_to_restore_without_restore_from(tmp_path: Path) -> None:
    restore = first_restore(tmp_path, None)
    assert not pending(restore.rt) and restore.info() is None
    added = asyncio.run(restore.add_nodes(2, None))
    assert [n.role for n in added] == [Role.NONE, Role.NONE]


def test_the_first_node_added_is_the_restored_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        url = await a_store_with_one_backup(tmp_path)
        restore = first_restore(tmp_path, f"{url}#{BACKUP}")
        assert pending(restore.rt)
        added = await restore.add_nodes(3, None)
        assert [n.role for n in added] == [Role.RESTORED, Role.NONE, Role.NONE]
        assert added[0].details["restore"] == {"backup": BACKUP, "state": "waiting",
                                               "source": f"{url}#{BACKUP}"}
        assert restore.nodes.spawned == ["restore_from into node 1"]  # type: ignore[attr-defined]
        assert restore.info() == {"source": f"{url}#{BACKUP}", "state": "waiting",
                                  "node": 1, "backup": BACKUP, "time": None, "error": None}
        # Later nodes are plain ones: copied from the master once it is there.
        assert [n.role for n in await restore.add_nodes(1, None)] == [Role.NONE]
        assert pending(restore.rt)
        restore._set(state="done")
        assert not pending(restore.rt)

    asyncio.run(scenario())


def test_two_add_nodes_at_once_restore_one_node(tmp_path: Path) -> None:
    """The second call waits for the first to choose its node, then adds a plain one
    (copied from the restored node once it is the master), rather than restoring twice."""
    async def scenario() -> None:
        url = await a_store_with_one_backup(tmp_path)
        restore = first_restore(tmp_path, f"{url}#{BACKUP}")
        one, two = await asyncio.gather(restore.add_nodes(1, None),
                                        restore.add_nodes(1, None))
        assert [n.role for n in one + two] == [Role.RESTORED, Role.NONE]
        assert restore.nodes.spawned == ["restore_from into node 1"]  # type: ignore[attr-defined]
        assert len(restore.rt.store.all) == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(("suffix", "error"), [
    (f"#{BACKUP[:-6]}000000", f"no backup {BACKUP[:-6]}000000"),
    ("@1", "outside the restorable window"),
])
def test_a_source_that_cannot_be_used_refuses_the_nodes(tmp_path: Path, suffix: str,
                                                        error: str) -> None:
    async def scenario() -> None:
        url = await a_store_with_one_backup(tmp_path)
        restore = first_restore(tmp_path, url + suffix)
        with pytest.raises(ConpaasSQLError, match=error):
            await restore.add_nodes(1, None)
        assert restore.rt.store.all == {}
        info = restore.info()
        assert info is not None and info["state"] == "failed" and error in info["error"]
        assert restore.rt.store.events[-1].startswith(f"restore_from {url}{suffix} failed")

    asyncio.run(scenario())


def test_a_missing_store_and_a_wrong_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        url = await a_store_with_one_backup(tmp_path)
        missing = first_restore(tmp_path, f"{(tmp_path / 'none').as_uri()}#{BACKUP}")
        with pytest.raises(ConpaasSQLError, match="no such directory"):
            await missing.add_nodes(1, None)
        wrong = first_restore(tmp_path, f"{url}#{BACKUP}")
        wrong.rt.secrets.backup_key = BackupKey.generate()
        with pytest.raises(ConpaasSQLError, match="key"):
            await wrong.add_nodes(1, None)

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "svc1.key"
    key_file.write_text(KEY.to_text())
    key_file.chmod(mode)
    with pytest.raises(ConfigError, match=f"restore_key_file {key_file}.*mode {mode:04o}"):
        read_key_file(key_file)

    async def scenario() -> None:
        url = await a_store_with_one_backup(tmp_path)
        restore = first_restore(tmp_path, f"{url}#{BACKUP}\nrestore_key_file = {key_file}")
        with pytest.raises(ConfigError, match="chmod 600"):
            await restore.add_nodes(1, None)
        assert restore.rt.store.all == {}
        key_file.chmod(0o600)
        assert [n.role for n in await restore.add_nodes(1, None)] == [Role.RESTORED]

    asyncio.run(scenario())


def test_a_key_file_of_the_owner_only_is_read(tmp_path: Path) -> None:
    key_file = tmp_path / "svc1.key"
    key_file.write_text(KEY.to_text())
    key_file.chmod(0o600)
    assert read_key_file(key_file) == KEY.to_text()
    with pytest.raises(ConfigError, match="unreadable"):
        read_key_file(tmp_path / "none.key")


def test_a_service_that_had_nodes_ignores_it(tmp_path: Path) -> None:
    old = Node(1, "n1", "local", NodeState.RUNNING, Role.MASTER, "", 60000, 3306)
    restore = first_restore(tmp_path, f"/srv/b#{BACKUP}", [old])
    asyncio.run(restore.resume())
    assert not pending(restore.rt)
    info = restore.info()
    assert info is not None and info["state"] == "skipped"
    assert restore.rt.store.events == [f"restore_from /srv/b#{BACKUP} ignored: the service "
                                       "already had nodes"]
