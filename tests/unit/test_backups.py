"""The manager's backup use cases over a real file store (no agent): the chain of a
restore, deletions refused or with the incrementals, the listing's shapes, the
source of a backup; and what the agent reads of mariabackup's metadata."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conpaassql.backup import BackupKey, FileStore
from conpaassql.backup.catalog import BackupRecord, Catalog
from conpaassql.config import BackupConfig
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import BusyError, MySQLError, NotFoundError, WrongStateError
from conpaassql.manager.backups import (
    INTERRUPTED,
    RESTORE_INTERRUPTED,
    Backups,
    object_key,
)
from conpaassql.mysql.store_backup import read_checkpoints, read_gtid
from conpaassql.protocol.backup import StoreSettings

KEY = BackupKey.generate()
FULL = "20261207T100000Z-full-aaaaaa"
INC1 = "20261207T110000Z-incremental-bbbbbb"
INC2 = "20261207T120000Z-incremental-cccccc"
OTHER = "20261207T130000Z-full-dddddd"


def node(node_id: int, role: Role, state: NodeState = NodeState.RUNNING) -> Node:
    return Node(node_id, f"n-{node_id}", "local", state, role, f"127.0.0.{node_id}", 60000,
                3306)


def backups_of(tmp_path: Path, nodes: list[Node] | None = None) -> Backups:
    """``Backups`` over a file store in ``tmp_path``, its nodes ``nodes``."""
    events: list[str] = []
    history = SimpleNamespace(events=events,
                              record_event=lambda message, *_: events.append(message))
    runtime = SimpleNamespace(config=SimpleNamespace(backup=BackupConfig()), store=history,
                              secrets=SimpleNamespace(backup_key=KEY), state_dir=tmp_path)
    service = SimpleNamespace(rt=runtime, live_nodes=lambda: list(nodes or []))
    return Backups(service)  # type: ignore[arg-type]


def record(backup_id: str, parent: str | None = None, **more: Any) -> BackupRecord:
    kind = "full" if parent is None else "incremental"
    fields: dict[str, Any] = {"state": "done", "started": float(backup_id[9:15]),
                              "finished": float(backup_id[9:15]) + 1, "node": "2",
                              "gtid": "0-1-5", "bytes": 10, **more}
    return BackupRecord(backup_id, kind, parent=parent, objects=[object_key(backup_id)],
                        **fields)


async def stored(backups: Backups, *records: BackupRecord) -> None:
    for item in records:
        await backups.store.put_bytes(item.objects[0], b"xbstream")
        await Catalog(backups.store).save(item)


def test_the_chain_of_an_incremental_is_its_full_backup_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups = backups_of(tmp_path)
        await stored(backups, record(FULL), record(INC1, FULL), record(INC2, INC1))
        assert [r.id for r in await backups.chain(INC2)] == [FULL, INC1, INC2]
        assert [r.id for r in await backups.chain(FULL)] == [FULL]
        with pytest.raises(NotFoundError, match="no backup"):
            await backups.chain(OTHER)
        await Catalog(backups.store).save(record(INC1, FULL, state="failed"))
        with pytest.raises(WrongStateError, match=f"backup {INC1} is failed"):
            await backups.chain(INC2)

    asyncio.run(scenario())


def test_a_backup_an_incremental_needs_is_deleted_only_with_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups = backups_of(tmp_path)
        await stored(backups, record(FULL), record(INC1, FULL), record(INC2, INC1),
                     record(OTHER))
        with pytest.raises(WrongStateError, match=f"needed by incremental.s. {INC1}, {INC2}"):
            await backups.delete(FULL)
        assert await backups.delete(INC2) == [INC2]
        assert await backups.delete(FULL, with_incrementals=True) == [INC1, FULL]
        assert backups.rt.store.events[-1] == f"backup(s) {INC1}, {FULL} deleted"
        assert [r.id for r in await backups.records()] == [OTHER]
        assert [o.key for o in await backups.store.list("backups/")] == [object_key(OTHER)]
        with pytest.raises(NotFoundError):
            await backups.delete(FULL)

    asyncio.run(scenario())


def test_the_listing_and_a_backup_the_manager_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups = backups_of(tmp_path)
        assert await backups.listing() == {"backups": [], "restorable": {"from": None,
                                                                          "to": None}}
        await stored(backups, record(FULL), record(INC1, FULL),
                     record(OTHER, state="running", finished=None))
        listed = await backups.listing()
        assert [set(b) for b in listed["backups"]] == [
            {"id", "kind", "state", "started", "finished", "gtid", "bytes", "node",
             "parent"}] * 3
        assert listed["backups"][2]["state"] == "failed"  # running when a manager stopped
        assert (await backups.records())[2].error == INTERRUPTED
        assert listed["restorable"] == {"from": 100001.0, "to": 110001.0}

    asyncio.run(scenario())


def test_the_source_is_a_slave_else_the_master_and_an_incremental_its_parents(
        tmp_path: Path) -> None:
    nodes = [node(1, Role.MASTER), node(2, Role.SLAVE), node(3, Role.SLAVE, NodeState.FAILED),
             node(4, Role.RESTORED)]
    assert backups_of(tmp_path, nodes).source().id == 2
    assert backups_of(tmp_path, [nodes[0], nodes[3]]).source().id == 1
    with pytest.raises(WrongStateError, match="no running master or slave"):
        backups_of(tmp_path, [nodes[3]]).source()
    assert backups_of(tmp_path, nodes).source(record(FULL, node="1")).id == 1
    with pytest.raises(WrongStateError, match="node 3, which took backup"):
        backups_of(tmp_path, nodes).source(record(FULL, node="3"))


def test_restores_after_a_manager_restart(tmp_path: Path) -> None:
    """One not begun is begun; one under way when the manager stopped is marked failed."""
    waiting = replace(node(3, Role.RESTORED), details={"restore": {"backup": INC1,
                                                                   "state": "waiting"}})
    running = replace(node(4, Role.RESTORED), details={"restore": {"backup": INC1,
                                                                   "state": "running"}})
    lost = replace(node(5, Role.RESTORED), details={"restore": {"backup": OTHER,
                                                                "state": "waiting"}})
    done = replace(node(6, Role.RESTORED), details={"restore": {"backup": INC1,
                                                                "state": "done"}})
    nodes = {n.id: n for n in (node(1, Role.MASTER), waiting, running, lost, done)}
    spawned: list[str] = []

    def update_node(node_id: int, **changes: Any) -> Node:
        nodes[node_id] = replace(nodes[node_id], **changes)
        return nodes[node_id]

    def spawn(work: Any, what: str) -> None:
        work.close()
        spawned.append(what)

    async def scenario() -> None:
        backups = backups_of(tmp_path, list(nodes.values()))
        backups.nodes.spawn = spawn  # type: ignore[method-assign]
        backups.rt.store.get_node = nodes.get
        backups.rt.store.update_node = update_node
        await stored(backups, record(FULL), record(INC1, FULL))
        await backups.resume()

        # the resumed restore holds its chain; the others hold nothing
        assert backups.held() == {FULL: ["the restore of node 3 (from backup " + INC1 + ")"],
                                  INC1: ["the restore of node 3 (from backup " + INC1 + ")"]}

    asyncio.run(scenario())
    assert spawned == ["restore node 3"]
    assert nodes[4].details["restore"] == {"backup": INC1, "state": "failed",
                                           "error": RESTORE_INTERRUPTED}
    assert nodes[5].details["restore"]["state"] == "failed"
    assert OTHER in nodes[5].details["restore"]["error"]
    assert nodes[6].details["restore"]["state"] == "done"


RESTORING = f"the restore of node 5 (from backup {INC1})"
VERIFYING = f"the verification of backup {FULL} on node 2"


@pytest.mark.parametrize(("uses", "deleted", "with_incrementals", "refused"), [
    # a backup in the chain of a restore, its own or an ancestor's
    ([([FULL, INC1], RESTORING)], INC1, False, f"busy: backup {INC1} is in use by {RESTORING}"),
    ([([FULL, INC1], RESTORING)], FULL, True, f"busy: backup {FULL} is in use by {RESTORING}"),
    # an incremental deleted with its full backup
    ([([FULL, INC1], RESTORING)], FULL, False, f"busy: backup {FULL} is in use"),
    # two at once, both named
    ([([FULL], VERIFYING), ([FULL, INC1], RESTORING)], FULL, True,
     f"busy: backup {FULL} is in use by {VERIFYING} and {RESTORING}"),
    # a backup after the chain in use, or one in no chain, goes
    ([([FULL, INC1], RESTORING)], INC2, False, None),
    ([([FULL], VERIFYING)], OTHER, False, None),
    # the restore ended: nothing in use
    ([], FULL, True, None),
])
def test_a_backup_in_use_is_not_deleted(tmp_path: Path, uses: list[tuple[list[str], str]],
                                        deleted: str, with_incrementals: bool,
                                        refused: str | None) -> None:
    async def scenario() -> None:
        backups = backups_of(tmp_path)
        records = [record(FULL), record(INC1, FULL), record(INC2, INC1), record(OTHER)]
        await stored(backups, *records)
        by_id = {r.id: r for r in records}
        for ids, what in uses:
            backups.hold([by_id[i] for i in ids], what)
        if refused is None:
            assert deleted in await backups.delete(deleted, with_incrementals)
            return
        with pytest.raises(BusyError) as raised:
            await backups.delete(deleted, with_incrementals)
        assert refused in str(raised.value) and "Service in wrong state" in str(raised.value)
        assert len(await backups.records()) == 4  # nothing deleted, not even an incremental

    asyncio.run(scenario())


def test_a_hold_ends_with_its_release(tmp_path: Path) -> None:
    backups = backups_of(tmp_path)
    first = backups.hold([record(FULL)], VERIFYING)
    second = backups.hold([record(FULL), record(INC1, FULL)], RESTORING)
    assert backups.users(FULL) == [VERIFYING, RESTORING] and backups.users(INC2) == []
    backups.release(first)
    backups.release(first)  # twice: no harm
    assert backups.held() == {FULL: [RESTORING], INC1: [RESTORING]}
    backups.release(second)
    assert backups.held() == {}


def test_one_backup_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        backups = backups_of(tmp_path)
        backups._running = FULL
        with pytest.raises(BusyError, match=f"busy: backup {FULL} is running"):
            await backups.start("full")
        with pytest.raises(BusyError):
            await stored(backups, record(FULL))
            await backups.delete(FULL)

    asyncio.run(scenario())


def test_the_agents_store_settings_hide_the_key(tmp_path: Path) -> None:
    settings = backups_of(tmp_path).settings()
    assert settings.path == str((tmp_path / "backups").resolve())
    assert settings.key == KEY.to_text()
    with_secret = StoreSettings(bucket="b", secret_access_key="s3cr3t-value", key=settings.key)
    assert KEY.to_text() not in repr(settings)
    assert "s3cr3t-value" not in repr(with_secret)
    assert isinstance(backups_of(tmp_path).store, FileStore)


def test_mariabackups_metadata_is_read(tmp_path: Path) -> None:
    (tmp_path / "xtrabackup_checkpoints").write_text(
        "backup_type = incremental\nfrom_lsn = 45678\nto_lsn = 56789\nlast_lsn = 56789\n")
    assert read_checkpoints(tmp_path) == {"from_lsn": 45678, "to_lsn": 56789}
    (tmp_path / "xtrabackup_info").write_text(
        "binlog_pos = filename 'mysql-bin.000002', position '385', GTID of the last "
        "change '0-1-12,1-2-3'\n")
    assert read_gtid(tmp_path) == "0-1-12,1-2-3"
    (tmp_path / "xtrabackup_binlog_info").write_text("mysql-bin.000002\t385\t0-1-12\n")
    assert read_gtid(tmp_path) == "0-1-12"
    (tmp_path / "xtrabackup_checkpoints").write_text("backup_type = full-backuped\n")
    with pytest.raises(MySQLError, match="unreadable xtrabackup_checkpoints"):
        read_checkpoints(tmp_path)
