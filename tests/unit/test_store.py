"""The manager's SQLite state store (``conpaassql.manager.store.Store``)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.domain.states import NodeState, Role, ServiceState
from conpaassql.errors import IllegalMoveError, WrongStateError
from conpaassql.manager.store import Store


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "manager.sqlite"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    path.parent.mkdir(parents=True, exist_ok=True)
    opened = Store(path)
    yield opened
    opened.close()


def reopen(store: Store) -> Store:
    store.close()
    return Store(store.path)


def add(store: Store, role: Role = Role.NONE) -> int:
    return store.new_node("conpaassql", "local", 60000, 3306, role).id


# --- the service --------------------------------------------------------------------


def test_new_store_is_an_init_service(store: Store) -> None:
    state, since = store.service_state()
    assert state is ServiceState.INIT
    assert abs(since - time.time()) < 60
    assert store.nodes() == []
    history = store.history()
    assert len(history) == 1
    assert history[0].subject == "service"
    assert history[0].to_state == "INIT"


def test_service_id_is_stable_across_reopen(store: Store) -> None:
    service_id = store.service_id
    assert isinstance(service_id, str)
    assert service_id
    again = reopen(store)
    try:
        assert again.service_id == service_id
        assert len(again.history()) == 1  # "service created" is not written twice
    finally:
        again.close()


def test_two_stores_get_different_service_ids(tmp_path: Path) -> None:
    first, second = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    try:
        assert first.service_id != second.service_id
    finally:
        first.close()
        second.close()


def test_set_service_state_records_the_transition(store: Store) -> None:
    assert store.set_service_state(ServiceState.PROLOGUE, "nodes requested") is True
    state, _ = store.service_state()
    assert state is ServiceState.PROLOGUE
    entry = store.history()[-1]
    assert (entry.subject, entry.from_state, entry.to_state, entry.message) == (
        "service", "INIT", "PROLOGUE", "nodes requested")
    assert entry.node_id is None
    assert entry.as_dict()["from"] == "INIT"
    assert entry.as_dict()["to"] == "PROLOGUE"


def test_set_service_state_unchanged_records_nothing(store: Store) -> None:
    store.set_service_state(ServiceState.RUNNING, "up")
    _, since = store.service_state()
    before = store.history(limit=1000)
    assert store.set_service_state(ServiceState.RUNNING, "again") is False
    assert store.history(limit=1000) == before
    assert store.service_state() == (ServiceState.RUNNING, since)


# --- nodes --------------------------------------------------------------------------


def test_new_node_is_pending_with_history(store: Store) -> None:
    node = store.new_node("conpaassql", "local", 60001, 3307, Role.MASTER)
    assert node.id == 1
    assert node.state is NodeState.PENDING
    assert node.role is Role.MASTER
    assert (node.agent_port, node.mysql_port, node.cloud) == (60001, 3307, "local")
    assert node.name.endswith("1")
    assert store.get_node(1) == node
    entry = store.history()[-1]
    assert (entry.subject, entry.node_id, entry.from_state, entry.to_state) == (
        "node", 1, None, "PENDING")


def test_node_ids_are_never_reused(store: Store) -> None:
    first, second = add(store), add(store)
    assert (first, second) == (1, 2)
    store.move_node(second, NodeState.TERMINATED, "removed")
    store.move_node(first, NodeState.TERMINATED, "removed")
    assert store.nodes() == []
    assert add(store) == 3
    again = reopen(store)
    try:
        assert add(again) == 4
        ids = [node.id for node in again.nodes(include_terminated=True)]
        assert ids == [1, 2, 3, 4]
        assert [node.id for node in again.nodes()] == [3, 4]
    finally:
        again.close()


def test_move_node_records_from_to_and_reason(store: Store) -> None:
    node_id = add(store)
    moved = store.move_node(node_id, NodeState.BOOTING, "cloud started the node")
    assert moved.state is NodeState.BOOTING
    assert moved.state_since >= moved.created_at
    assert store.get_node(node_id) == moved
    store.move_node(node_id, NodeState.RUNNING, "agent registered")
    entries = store.history(node_id=node_id)
    assert [(e.from_state, e.to_state, e.message) for e in entries[1:]] == [
        ("PENDING", "BOOTING", "cloud started the node"),
        ("BOOTING", "RUNNING", "agent registered"),
    ]
    assert all(e.subject == "node" and e.node_id == node_id for e in entries)
    as_dict = entries[-1].as_dict()
    assert (as_dict["node"], as_dict["from"], as_dict["to"]) == (node_id, "BOOTING", "RUNNING")
    assert as_dict["time"].endswith("Z")


def test_move_to_the_same_state_records_nothing(store: Store) -> None:
    node_id = add(store)
    first = store.move_node(node_id, NodeState.BOOTING, "started")
    before = store.history(limit=1000)
    again = store.move_node(node_id, NodeState.BOOTING, "started again")
    assert store.history(limit=1000) == before
    assert again.state_since == first.state_since


@pytest.mark.parametrize(("path_to", "target"), [
    ([NodeState.TERMINATED], NodeState.RUNNING),
    ([NodeState.TERMINATING], NodeState.RUNNING),
    ([NodeState.BOOTING, NodeState.RUNNING], NodeState.BOOTING),
    ([NodeState.FAILED], NodeState.PENDING),
])
def test_an_illegal_move_raises_and_changes_nothing(store: Store, path_to: list[NodeState],
                                                    target: NodeState) -> None:
    node_id = add(store)
    for state in path_to:
        store.move_node(node_id, state, "on its way")
    before, history = store.get_node(node_id), store.history(limit=1000)
    with pytest.raises(IllegalMoveError) as raised:
        store.move_node(node_id, target, "not allowed")
    assert isinstance(raised.value, WrongStateError)
    assert f"node {node_id} cannot move from {path_to[-1]} to {target}" in str(raised.value)
    assert store.get_node(node_id) == before
    assert store.history(limit=1000) == history
    again = reopen(store)
    try:
        assert again.get_node(node_id) == before
        assert again.history(limit=1000) == history
    finally:
        again.close()


def test_move_unknown_node(store: Store) -> None:
    with pytest.raises(KeyError):
        store.move_node(99, NodeState.RUNNING, "nope")
    assert len(store.history()) == 1


def test_update_node_keeps_state(store: Store) -> None:
    node_id = add(store)
    updated = store.update_node(node_id, ip="127.0.0.11", role=Role.SLAVE,
                                details={"gtid": "0-1-5"}, cloud_ref="pid:123")
    assert updated.ip == "127.0.0.11"
    assert updated.role is Role.SLAVE
    assert updated.details == {"gtid": "0-1-5"}
    assert updated.state is NodeState.PENDING
    assert updated.agent_url == "https://127.0.0.11:60000/"
    with pytest.raises(ValueError):
        store.update_node(node_id, state=NodeState.RUNNING)
    assert store.get_node(node_id) == updated


def test_get_unknown_node(store: Store) -> None:
    assert store.get_node(1) is None
    assert store.get_node(-5) is None


# --- durability ---------------------------------------------------------------------


def test_everything_survives_a_reopen(store: Store) -> None:
    service_id = store.service_id
    node_id = add(store)
    store.update_node(node_id, ip="127.0.0.12", details={"k": [1, 2]})
    store.move_node(node_id, NodeState.BOOTING, "cloud started the node")
    store.set_service_state(ServiceState.PROLOGUE, "adding nodes")
    store.record_event("hello", node_id)
    history = store.history(limit=1000)
    node = store.get_node(node_id)
    again = reopen(store)
    try:
        assert again.service_id == service_id
        assert again.service_state()[0] is ServiceState.PROLOGUE
        assert again.get_node(node_id) == node
        assert again.history(limit=1000) == history
    finally:
        again.close()


def test_committed_writes_are_visible_without_close(path: Path) -> None:
    """A manager killed without closing: a second connection sees every change."""
    path.parent.mkdir(parents=True)
    first = Store(path)
    node_id = add(first)
    first.move_node(node_id, NodeState.RUNNING, "up")
    first.flush()
    second = Store(path)
    try:
        assert second.service_id == first.service_id
        moved = second.get_node(node_id)
        assert moved is not None
        assert moved.state is NodeState.RUNNING
    finally:
        second.close()
        first.close()


def on_disk(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return [tuple(row) for row in db.execute(sql)]


def test_changes_are_seen_at_once_and_written_behind(store: Store) -> None:
    """The database locked by another writer: a change is made and read all the same,
    and written when the database is free again."""
    node_id = add(store)
    store.flush()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        moved = store.move_node(node_id, NodeState.BOOTING, "cloud started the node")
        store.record_event("while locked", node_id)
        assert store.get_node(node_id) == moved
        assert store.history()[-1].message == "while locked"
        assert on_disk(store.path, "SELECT state FROM nodes") == [("PENDING",)]
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    store.flush()
    assert on_disk(store.path, "SELECT state FROM nodes") == [("BOOTING",)]
    assert on_disk(store.path, "SELECT message FROM history ORDER BY seq DESC LIMIT 1") == [
        ("while locked",)]


def test_durable_waits_for_the_commit_without_blocking(store: Store) -> None:
    node_id = add(store)
    store.flush()

    async def scenario() -> None:
        assert await asyncio.wait_for(store.durable(), 10) is None  # nothing queued
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            store.move_node(node_id, NodeState.TERMINATING, "removed on request")
            waiting = asyncio.create_task(store.durable())
            ticks = 0
            while ticks < 20:  # the loop runs on while the write waits
                await asyncio.sleep(0.005)
                ticks += 1
            assert not waiting.done()
            assert on_disk(store.path, "SELECT state FROM nodes") == [("PENDING",)]
        finally:
            blocker.execute("COMMIT")
            blocker.close()
        await asyncio.wait_for(waiting, 10)
        assert on_disk(store.path, "SELECT state FROM nodes") == [("TERMINATING",)]

    asyncio.run(scenario())


def test_a_change_that_cannot_be_written_is_logged_and_the_next_ones_are_written(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    node_id = add(store)
    store.flush()
    with sqlite3.connect(store.path) as db:
        db.execute("ALTER TABLE history RENAME TO history_away")
    with caplog.at_level(logging.ERROR, logger="conpaassql.manager.store"):
        store.record_event("lost on disk", node_id)
        store.update_node(node_id, ip="127.0.0.13")
        store.flush()
    assert "STORE WRITE FAILED" in caplog.text
    assert store.history()[-1].message == "lost on disk"  # kept in memory
    assert on_disk(store.path, "SELECT ip FROM nodes") == [("127.0.0.13",)]
    assert on_disk(store.path, "SELECT message FROM history_away WHERE message = "
                   "'lost on disk'") == []


def test_the_changes_reach_the_disk_in_order(store: Store) -> None:
    node_id = add(store)
    for number in range(200):
        store.update_node(node_id, details={"n": number})
        store.record_event(f"event {number}", node_id)
    store.move_node(node_id, NodeState.BOOTING, "last")
    store.close()
    assert on_disk(store.path, "SELECT details, state FROM nodes") == [('{"n": 199}',
                                                                         "BOOTING")]
    messages = [row[0] for row in on_disk(store.path, "SELECT message FROM history "
                                          "WHERE node_id = 1 ORDER BY seq")]
    assert messages == ["node 1 requested from cloud local",
                        *(f"event {number}" for number in range(200)), "last"]


def test_a_node_read_is_not_changed_by_its_caller(store: Store) -> None:
    node_id = add(store)
    details = {"agent": {"pid": 1}}
    store.update_node(node_id, details=details)
    details["agent"]["pid"] = 2
    assert store.get_node(node_id).details == {"agent": {"pid": 1}}  # type: ignore[union-attr]


def test_database_is_wal(store: Store) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# --- history ------------------------------------------------------------------------


def test_history_is_oldest_first_and_limited_to_the_latest(store: Store) -> None:
    for number in range(10):
        store.record_event(f"event {number}")
    entries = store.history(limit=3)
    assert [e.message for e in entries] == ["event 7", "event 8", "event 9"]
    seqs = [e.seq for e in store.history(limit=100)]
    assert seqs == sorted(seqs)
    assert len(seqs) == 11


def test_history_of_one_node(store: Store) -> None:
    one, two = add(store), add(store)
    store.move_node(one, NodeState.BOOTING, "one boots")
    store.move_node(two, NodeState.BOOTING, "two boots")
    store.record_event("one event", one)
    store.set_service_state(ServiceState.PROLOGUE, "service")
    entries = store.history(node_id=one)
    assert [e.message for e in entries] == ["node 1 requested from cloud local",
                                            "one boots", "one event"]
    assert [e.message for e in store.history(limit=2, node_id=one)] == ["one boots",
                                                                         "one event"]
    assert store.history(node_id=99) == []


def test_history_of_events_without_transition(store: Store) -> None:
    store.record_event("service note")
    entry = store.history()[-1]
    assert (entry.subject, entry.node_id, entry.from_state, entry.to_state) == (
        "service", None, None, None)
    assert "from" not in entry.as_dict()
    assert "node" not in entry.as_dict()


def test_reason_text_is_stored_verbatim(store: Store) -> None:
    reason = "it's \"odd\"; DROP TABLE history; -- ✓\n2nd line"
    node_id = add(store)
    store.move_node(node_id, NodeState.FAILED, reason)
    assert store.history()[-1].message == reason
    assert len(store.history(limit=1000)) == 3


def test_nodes_move_to_a_renamed_cloud(store: Store) -> None:
    """A store from before clouds had names: its nodes' cloud is its driver's name."""
    first = store.new_node("agent", "local", 60000, 3306)
    other = store.new_node("agent", "aws", 60000, 3306)
    assert store.rename_cloud("local", "default") == 1
    assert store.get_node(first.id).cloud == "default"  # type: ignore[union-attr]
    assert store.get_node(other.id).cloud == "aws"  # type: ignore[union-attr]
    assert "1 node(s) of cloud 'local' now on cloud 'default'" in \
        [entry.message for entry in store.history()]
    assert store.rename_cloud("local", "default") == 0
