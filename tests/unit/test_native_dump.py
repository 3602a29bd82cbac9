"""The client's side of a dump made by its own mariadb-dump: what it takes from a manager,
and how the tool's output reaches the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from conpaassql.client.native_dump import ALLOWED_OPTIONS, DumpLogin, _pump, _write_defaults
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
