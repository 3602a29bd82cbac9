"""``verify_backup``'s manager side: its parameters, where it runs, one at a time with
backups, the result kept in the backup's record, ``[backup] verify``; and the
scratch server's options."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from conpaassql.config import BackupConfig
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import BusyError, MySQLError, NotFoundError, WrongStateError
from conpaassql.manager.backup_api import VerifyBackupParams
from conpaassql.manager.backups import Backups
from conpaassql.manager.verification import Verifications
from conpaassql.mysql.scratch_server import copy_layout, scratch_cnf
from conpaassql.protocol.backup import VerifiedFromStore, VerifyFromStoreRequest
from tests.unit.test_backups import FULL, INC1, backups_of, node, record, stored


class Agents:
    """The agents' ``verify_from_store``: answers ``reply`` (or raises it)."""

    def __init__(self, reply: VerifiedFromStore | Exception) -> None:
        self.reply = reply
        self.calls: list[tuple[int, VerifyFromStoreRequest]] = []
        self.release = asyncio.Event()  # the answer waits for it
        self.release.set()

    async def verify_from_store(self, target: Any, request: VerifyFromStoreRequest,
                                **_: Any) -> VerifiedFromStore:
        self.calls.append((target.id, request))
        await self.release.wait()
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def verifications(tmp_path: Path, reply: VerifiedFromStore | Exception,
                  verify: str = "never") -> tuple[Verifications, Agents, list[Any]]:
    backups: Backups = backups_of(tmp_path, [node(1, Role.MASTER), node(2, Role.SLAVE),
                                             node(3, Role.RESTORED)])
    tasks: list[Any] = []
    backups.nodes.spawn = lambda work, what: tasks.append(  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(work))
    agents = Agents(reply)
    backups.rt.agents = agents  # type: ignore[attr-defined]
    backups.rt.config = SimpleNamespace(backup=BackupConfig(verify=verify))
    return Verifications(backups), agents, tasks


def test_the_parameters() -> None:
    assert VerifyBackupParams.model_validate({"id": FULL}).id == FULL
    for bad in ({}, {"id": 7}, {"id": FULL, "kind": "full"}, {"id": ""}, {"id": "x"},
                {"id": FULL + "\n"}):
        with pytest.raises(ValidationError):
            VerifyBackupParams.model_validate(bad)


def test_a_verification_runs_on_a_slave_and_is_kept_with_the_backup(tmp_path: Path) -> None:
    async def scenario() -> None:
        checks, agents, tasks = verifications(tmp_path, VerifiedFromStore(tables=4))
        backups = checks.backups
        await stored(backups, record(FULL), record(INC1, FULL))
        agents.release.clear()  # the verification runs until the checks below are done
        job = await checks.start(INC1)
        assert job["node"] == "2" and job["verified"]["state"] == "running"
        listed = {b["id"]: b for b in (await backups.listing())["backups"]}
        assert listed[INC1]["verified"]["state"] == "running"
        assert listed[FULL]["verified"] is None
        with pytest.raises(BusyError, match="busy"):
            await checks.start(FULL)
        with pytest.raises(BusyError, match="busy"):
            await backups.start("full")
        # the chain verified is not deleted under it
        with pytest.raises(BusyError, match=f"busy: backup {FULL} is in use by the "
                           f"verification of backup {INC1} on node 2"):
            await backups.delete(FULL, with_incrementals=True)
        agents.release.set()
        await asyncio.gather(*tasks)
        assert agents.calls[0][0] == 2
        assert agents.calls[0][1].objects == [f"backups/{FULL}.xbstream",
                                              f"backups/{INC1}.xbstream"]
        kept = (await backups.catalog.load(INC1)).extra["verified"]
        assert kept["ok"] is True and kept["tables"] == 4 and kept["error"] is None
        assert kept["node"] == "2" and set(kept) == {"at", "ok", "tables", "seconds",
                                                     "error", "node"}
        listed = {b["id"]: b for b in (await backups.listing())["backups"]}
        assert listed[INC1]["verified"] == kept
        assert backups._running is None and backups.held() == {}
        assert backups.rt.store.events[-1] == f"backup {INC1} verified on node 2: 4 " \
                                              "table(s) sound"
        with pytest.raises(NotFoundError, match="no backup"):
            await checks.start("20261207T140000Z-full-eeeeee")
        assert backups._running is None

    asyncio.run(scenario())


def test_a_failed_verification_is_kept_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        failure = MySQLError("Corrupt backup object: backups/x.xbstream")
        checks, _, tasks = verifications(tmp_path, failure)
        await stored(checks.backups, record(FULL))
        await checks.start(FULL)
        await asyncio.gather(*tasks)
        kept = (await checks.backups.catalog.load(FULL)).extra["verified"]
        assert kept["ok"] is False and kept["tables"] == 0
        assert "backups/x.xbstream" in kept["error"]
        assert "failed" in checks.backups.rt.store.events[-1]

    asyncio.run(scenario())


def test_only_a_running_master_or_slave_verifies(tmp_path: Path) -> None:
    checks, _, _ = verifications(tmp_path, VerifiedFromStore())
    checks.backups.nodes.live_nodes = lambda: [node(1, Role.MASTER), node(4, Role.RESTORED)]
    assert checks.node().id == 1
    checks.backups.nodes.live_nodes = lambda: [node(1, Role.MASTER, NodeState.FAILED)]
    with pytest.raises(WrongStateError, match="no running master or slave"):
        checks.node()


@pytest.mark.parametrize(("verify", "kind", "verified"), [
    ("never", "full", False), ("after_full", "full", True),
    ("after_full", "incremental", False), ("after_each", "incremental", True)])
def test_the_verify_setting(tmp_path: Path, verify: str, kind: str, verified: bool) -> None:
    async def scenario() -> None:
        checks, agents, tasks = verifications(tmp_path, VerifiedFromStore(tables=1), verify)
        backups = checks.backups
        await stored(backups, record(FULL), record(INC1, FULL))
        await backups.after_backup[0](record(FULL if kind == "full" else INC1, None
                                             if kind == "full" else FULL))
        await asyncio.gather(*tasks)
        assert bool(agents.calls) is verified
        await backups.after_backup[0](record(FULL, state="failed"))
        assert len(agents.calls) == int(verified)

    asyncio.run(scenario())


def test_the_scratch_server_reaches_nothing(tmp_path: Path) -> None:
    text = scratch_cnf(tmp_path, Path("/tmp/s/mysqld.sock"), "mysql")
    for line in ("skip-networking", "skip-grant-tables", "skip-slave-start",
                 f"datadir={tmp_path / 'data'}", "socket=/tmp/s/mysqld.sock"):
        assert line in text.splitlines()
    assert "log-bin" not in text and "port" not in text


def test_the_scratch_server_takes_the_copys_innodb_layout(tmp_path: Path) -> None:
    (tmp_path / "backup-my.cnf").write_text(
        "[mysqld]\ninnodb_checksum_algorithm=crc32\ninnodb_data_file_path=ibdata1:12M:autoextend\n"
        "innodb_log_file_size=100663296\ninnodb_page_size=16384\ninnodb_undo_tablespaces=0\n")
    layout = copy_layout(tmp_path)
    assert layout == ["innodb_data_file_path=ibdata1:12M:autoextend", "innodb_page_size=16384",
                      "innodb_undo_tablespaces=0"]
    assert "innodb_page_size=16384" in scratch_cnf(tmp_path, tmp_path / "s", "m", layout)
    assert copy_layout(tmp_path / "none") == []
