"""The init file of an adopted copy: in place with the copy, or the old datadir back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from conpaassql.errors import MySQLError
from conpaassql.mysql import foreign_copy
from conpaassql.mysql.backup import restore
from conpaassql.mysql.paths import ServerPaths


async def _receive(directory: Path) -> int:
    (directory / "xtrabackup_binlog_info").write_text("binlog.000001\t42\t0-7-9\n")
    (directory / "foreign.ibd").write_text("the other service's data")
    return 1


async def _prepared(directory: Path) -> None:
    return None


async def _swap(install: Callable[[], None], undo: Callable[[], None]) -> None:
    install()  # as the supervisor does: a failing install leaves the old data in place


def _adopt(tmp_path: Path) -> ServerPaths:
    paths = ServerPaths(tmp_path)
    paths.datadir.mkdir()
    (paths.datadir / "own.ibd").write_text("this service's data")
    swap = foreign_copy.adopting(paths, "secret", None, _swap)
    asyncio.run(restore(paths, _receive, swap=swap, prepare_copy=_prepared))
    return paths


def test_the_copy_comes_with_its_init_file(tmp_path: Path) -> None:
    paths = _adopt(tmp_path)
    assert sorted(p.name for p in paths.datadir.iterdir()) == ["foreign.ibd"]
    assert "ALTER USER 'root'@'localhost'" in paths.init_file.read_text()
    assert paths.init_file.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "init.sql"]


def test_an_init_file_not_written_leaves_the_old_datadir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(foreign_copy, "write_private", failing)
    with pytest.raises(MySQLError, match="No space left"):
        _adopt(tmp_path)
    assert sorted(p.name for p in ServerPaths(tmp_path).datadir.iterdir()) == ["own.ibd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_init_file_not_put_in_place_puts_the_old_datadir_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace

    def failing(source: str | Path, target: str | Path) -> None:
        if Path(target).name == "init.sql":
            raise OSError(5, "Input/output error")
        real(source, target)

    monkeypatch.setattr(foreign_copy.os, "replace", failing)
    with pytest.raises(MySQLError, match="Input/output error"):
        _adopt(tmp_path)
    assert sorted(p.name for p in ServerPaths(tmp_path).datadir.iterdir()) == ["own.ibd"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

