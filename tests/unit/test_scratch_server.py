"""The scratch server of a verification: it dies with the agent, its leftovers are
cleaned (their server killed first), its statements have a bound."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conpaassql.mysql import scratch_server
from conpaassql.mysql.scratch_server import (
    CHECK_TIMEOUT,
    MAX_CHECK_TIMEOUT,
    PID_NAME,
    SCRATCH_PREFIX,
    SOCKET_PREFIX,
    SOCKETS_NOTE,
    check_timeout,
    remove_scratch_leftovers,
)


def _gone(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` ended (it is reaped here), waiting a while for it."""
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_a_leftover_server_is_killed_and_its_directories_removed(tmp_path: Path) -> None:
    leftover = tmp_path / f"{SCRATCH_PREFIX}abc123"
    (leftover / "data").mkdir(parents=True)
    sockets = tmp_path / "tmp" / f"{SOCKET_PREFIX}xyz"
    sockets.mkdir(parents=True)
    (leftover / SOCKETS_NOTE).write_text(str(sockets))
    server = subprocess.Popen(["sleep", "600"], cwd=leftover / "data")
    try:
        (leftover / PID_NAME).write_text(f"{server.pid}\n")
        remove_scratch_leftovers(tmp_path)
        assert _gone(server)
    finally:
        server.kill()
        server.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_pid_of_another_process_is_left_alone(tmp_path: Path) -> None:
    leftover = tmp_path / f"{SCRATCH_PREFIX}abc123"
    leftover.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = subprocess.Popen(["sleep", "600"], cwd=elsewhere)
    try:
        (leftover / PID_NAME).write_text(f"{other.pid}\n")
        (leftover / SOCKETS_NOTE).write_text(str(elsewhere))  # not a socket directory
        remove_scratch_leftovers(tmp_path)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]


def test_the_server_dies_with_the_agent(tmp_path: Path) -> None:
    """A child started as the scratch server is gets SIGTERM when its parent exits."""
    code = ("import subprocess;"
            "from conpaassql.mysql.scratch_server import _die_with_parent;"
            "p = subprocess.Popen(['sleep', '600'], preexec_fn=_die_with_parent);"
            "print(p.pid, flush=True)")
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                            env={**os.environ})
    pid = int(parent.stdout)
    for _ in range(300):
        if not _running(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the orphaned child kept running")


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_scratch_server_is_started_to_die_with_the_agent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def start(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise OSError(2, "stopped here")

    monkeypatch.setattr(scratch_server, "find_binary", lambda *names: "/bin/true")
    monkeypatch.setattr(scratch_server.asyncio, "create_subprocess_exec", start)
    (tmp_path / "data").mkdir()
    with pytest.raises(OSError, match="stopped here"):
        asyncio.run(scratch_server._check_on_server(tmp_path, tmp_path / "s.sock", "nobody"))
    assert seen["preexec_fn"] is scratch_server._die_with_parent


def test_a_check_has_a_bound_that_grows_with_the_copy() -> None:
    assert check_timeout(0) == CHECK_TIMEOUT
    assert CHECK_TIMEOUT < check_timeout(200 * 2**30) < MAX_CHECK_TIMEOUT
    assert check_timeout(100 * 2**40) == MAX_CHECK_TIMEOUT


def test_a_scratch_directory_is_removed_when_its_socket_directory_cannot_be_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch_server.tempfile, "tempdir", str(tmp_path / "missing"))
    node = tmp_path / "node"
    node.mkdir()
    with pytest.raises(OSError):
        scratch_server._make_scratch(node)
    assert list(node.iterdir()) == []
