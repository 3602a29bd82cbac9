"""The client's side of a dump made by its own mariadb-dump: what it takes from a manager,
and how the tool's output reaches the file."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conpaassql.client.native_dump import (
    ALLOWED_OPTIONS,
    DumpLogin,
    _pump,
    _write_defaults,
    dump_into,
)
from conpaassql.errors import RemoteError
from conpaassql.mysql.dump import dump_arguments

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def answer(**changes: Any) -> dict[str, Any]:
    good: dict[str, Any] = {
        "node": 2, "host": "127.0.101.11", "port": 3306,
        "user": "conpaassql_dump_0a1b2c3d4e5f", "password": "Zx9_-" + "a" * 27, "ca": CA,
        "args": dump_arguments(["shop"])}
    return {**good, **changes}


def test_the_service_s_own_arguments_are_taken() -> None:
    for databases in (["shop"], None):
        login = DumpLogin.parse(answer(args=dump_arguments(databases)))
        assert list(login.args) == dump_arguments(databases)
    assert {a for a in dump_arguments(None) if a.startswith("--") and a != "--"} \
        <= ALLOWED_OPTIONS


@pytest.mark.parametrize(("changes", "said"), [
    ({"args": ["--result-file=/etc/passwd", "--", "shop"]}, "an option this client"),
    ({"args": ["--single-transaction", "--plugin-dir=/tmp", "shop"]}, "an option this client"),
    ({"args": ["--", "bad\nname"]}, "a bad database name"),
    ({"password": "short"}, "a bad account"),
    ({"password": "has space in it 0123456789"}, "a bad account"),
    ({"password": "x" * 20 + "\nhost=evil"}, "a bad account"),
    ({"user": "root'--"}, "a bad account"),
    ({"host": "127.0.0.1\nssl=0"}, "a bad address"),
    ({"port": 0}, "a bad address"),
    ({"ca": "not a certificate"}, "no CA certificate"),
])
def test_an_answer_that_is_not_a_plain_account_is_refused(changes: dict[str, Any],
                                                          said: str) -> None:
    with pytest.raises(RemoteError, match=said):
        DumpLogin.parse(answer(**changes))


@pytest.mark.parametrize("raw", [None, [], {"node": 1}, answer(port="x"), answer(args=None)])
def test_a_malformed_answer_is_refused(raw: Any) -> None:
    with pytest.raises(RemoteError, match="something else than an account"):
        DumpLogin.parse(raw)


def test_the_password_is_in_a_private_file_only(tmp_path: Path) -> None:
    login = DumpLogin.parse(answer())
    assert login.password not in repr(login)
    defaults = _write_defaults(tmp_path, login)
    assert defaults.stat().st_mode & 0o777 == 0o600
    text = defaults.read_text()
    assert f"password={login.password}\n" in text
    assert "ssl-verify-server-cert\n" in text and f"ssl-ca={tmp_path / 'ca.pem'}\n" in text


def _feed(data: bytes) -> tuple[int, int]:
    """A pipe's read end, with a child process writing ``data`` into it; (fd, pid)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
        os._exit(0)
    os.close(write_end)
    return read_end, pid


def _drain_in_child(read_end: int, write_end: int, into: Path) -> int:
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        with open(into, "wb") as handle:
            while chunk := os.read(read_end, 1 << 16):
                handle.write(chunk)
        os._exit(0)
    os.close(read_end)
    return pid


@pytest.mark.parametrize("into", ["file", "appended file", "pipe"])
def test_the_output_is_moved_whole_and_counted(tmp_path: Path, into: str) -> None:
    """Spliced into a file or a pipe; copied where splice is refused (a file opened to
    append, as a terminal would refuse it)."""
    data = os.urandom(3 * (1 << 20) + 12345)
    source, writer = _feed(data)
    counted: list[int] = []
    target_path = tmp_path / "out.sql"
    if into == "pipe":
        sink_r, sink_w = os.pipe()
        reader = _drain_in_child(sink_r, sink_w, target_path)
        moved = _pump(source, sink_w, counted.append)
        os.close(sink_w)
        os.waitpid(reader, 0)
    else:
        with open(target_path, "ab" if into == "appended file" else "wb") as target:
            moved = _pump(source, target.fileno(), counted.append)
    os.close(source)
    os.waitpid(writer, 0)
    assert moved == len(data) == sum(counted)
    assert target_path.read_bytes() == data


# -- dump_into: the whole way, with a stand-in for the tool and the manager ---------------
# (tests/integration/test_dumps.py runs the real mariadb-dump against real nodes)

TOOL = """#!/bin/sh
# Stands in for mariadb-dump: its behaviour is chosen by the file beside it.
read -r behaviour < "${0%/*}/behaviour"
case "$behaviour" in
  ok) printf -- '-- MariaDB dump\\nINSERT INTO t VALUES (1);\\n-- Dump completed\\n';;
  refused) echo 'mariadb-dump: Got error: 2003: "Can'"'"'t connect" when trying to connect' >&2
           exit 2;;
  broken) printf 'INSERT INTO t VALUES (1);\\n'; echo 'mariadb-dump: Error 2013: Lost' >&2
          exit 2;;
esac
"""


class StandInManager:
    """Answers grant_sqldump_login with an account on ``port``; records every call."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any], verb: str = "POST") -> Any:
        self.calls.append((method, params))
        if method == "grant_sqldump_login":
            return answer(host="127.0.0.1", port=self.port, args=dump_arguments(["shop"]))
        return {"released": True}


@pytest.fixture
def tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    script = directory / "mariadb-dump"
    script.write_text(TOOL)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))
    return directory / "behaviour"


def run_dump(behaviour: Path, what: str, port: int, out: Path,
             mode: str = "wb") -> tuple[int | None, StandInManager, list[int]]:
    behaviour.write_text(what)
    manager = StandInManager(port)
    counted: list[int] = []

    async def go() -> int | None:
        with open(out, mode) as handle:
            return await dump_into(manager, {"database": "shop"}, handle,  # type: ignore[arg-type]
                                   counted.append)

    return asyncio.run(go()), manager, counted


@pytest.fixture
def listening() -> Iterator[int]:
    """A port that accepts connections (the node's MySQL port, as far as a probe sees)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_the_tool_writes_the_file_and_the_account_is_released(
        tool: Path, listening: int, tmp_path: Path) -> None:
    out = tmp_path / "out.sql"
    out.write_bytes(b"kept\n")
    made, manager, counted = run_dump(tool, "ok", listening, out, "ab")
    assert out.read_bytes().startswith(b"kept\n-- MariaDB dump\n")
    assert made == sum(counted) == out.stat().st_size - len(b"kept\n")
    assert [method for method, _ in manager.calls] == ["grant_sqldump_login",
                                                       "release_sqldump_login"]
    assert manager.calls[1][1] == {"user": "conpaassql_dump_0a1b2c3d4e5f"}


def test_a_node_the_tool_cannot_reach_leaves_the_way_to_the_agent(
        tool: Path, listening: int, tmp_path: Path) -> None:
    out = tmp_path / "out.sql"
    made, manager, _ = run_dump(tool, "refused", listening, out)
    assert made is None and out.read_bytes() == b""
    assert manager.calls[-1][0] == "release_sqldump_login"
    with socket.socket() as sock:  # a port nobody listens on: not even tried
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    made, manager, _ = run_dump(tool, "ok", closed, out)
    assert made is None and out.read_bytes() == b""
    assert [method for method, _ in manager.calls] == ["grant_sqldump_login",
                                                       "release_sqldump_login"]


def test_a_tool_that_fails_midway_says_so_in_the_output_too(
        tool: Path, listening: int, tmp_path: Path) -> None:
    out = tmp_path / "out.sql"
    with pytest.raises(RemoteError, match=r"mariadb-dump from node 2 failed: .*Lost"):
        run_dump(tool, "broken", listening, out)
    text = out.read_text()
    assert text.startswith("INSERT INTO t VALUES (1);\n")
    assert text.rstrip().splitlines()[-1].startswith(
        "-- conpaassql: THE DUMP FAILED AND IS INCOMPLETE: mariadb-dump from node 2")


def test_no_tool_here_asks_the_manager_nothing(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    manager = StandInManager(1)
    with open(tmp_path / "out.sql", "wb") as handle:
        assert asyncio.run(dump_into(manager, {}, handle, lambda _: None)) is None  # type: ignore[arg-type]
    assert manager.calls == []
