"""The private-file writer and the log tail every layer uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conpaassql.files import write_private
from conpaassql.logs import tail_lines


def test_write_private_replaces_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old", encoding="utf-8")
    os.chmod(path, 0o644)
    write_private(path, "new\n")
    assert path.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_private(path, b"\x00bytes", 0o644)
    assert path.read_bytes() == b"\x00bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]


def test_write_private_leaves_nothing_behind_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "directory"
    path.mkdir()
    (path / "inside").write_text("x", encoding="utf-8")
    with pytest.raises(OSError):
        write_private(path, "replacing a directory fails")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["directory"]


def test_tail_lines_gives_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {n}\n" for n in range(1000)), encoding="utf-8")
    assert tail_lines(log, 2) == "line 998\nline 999\n"
    assert tail_lines(log, 0) == ""
    assert tail_lines(log, None) == log.read_text(encoding="utf-8")
    assert tail_lines(tmp_path / "missing", 5) == ""


def test_tail_lines_reads_no_more_than_its_limit(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {n}\n" for n in range(1000)), encoding="utf-8")
    # Each line is 9 bytes: 30 from the end cut "line 996" in two, which is left out.
    assert tail_lines(log, 10, limit=30) == "line 997\nline 998\nline 999\n"
    assert tail_lines(log, None, limit=30) == "line 997\nline 998\nline 999\n"
