"""The client's pieces without a server: the progress meter, the all-or-nothing
download file, sizes, and the calls the commands build."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from conpaassql.client.arguments import ArgumentError, RpcCall, parse_list
from conpaassql.client.commands import BY_NAME
from conpaassql.client.transfer import Meter, PartialFile, size_of
from conpaassql.rpc.units import human_bytes
from tests.unit.clock import Clock


def test_meter_counts_and_summarises() -> None:
    clock = Clock()
    meter = Meter("dump.sql", None, clock=clock)
    meter.start(3_000_000)
    for _ in range(3):
        meter.advance(1_000_000)
    clock.now += 2.0
    assert meter.done == 3_000_000
    assert meter.summary("Sent") == "Sent 3,000,000 bytes (3.0 MB) in 2.0 s, 1.5 MB/s"


def test_meter_without_console_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    with Meter("x", None) as meter:
        meter.start(None)
        meter.advance(10)
    meter.finish("Received")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("total", [None, 2048])
def test_meter_on_a_terminal_shows_a_bar_then_one_line(total: int | None) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with Meter("shop.sql", console) as meter:
        meter.start(total)
        meter.advance(1024)
        meter.advance(1024)
    meter.finish("Received")
    out = buffer.getvalue()
    assert "shop.sql" in out  # the bar was drawn
    assert out.rstrip().endswith("MB/s")
    assert "Received 2,048 bytes (2.0 kB)" in out


def test_partial_file_appears_only_when_committed(tmp_path: Path) -> None:
    target = tmp_path / "d.sql"
    with PartialFile(target) as partial:
        partial.file.write(b"complete")
        assert partial.temporary.parent == tmp_path and partial.temporary.name.startswith(".")
        assert not target.exists()
        partial.commit()
    assert target.read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["d.sql"]
    assert target.stat().st_mode & 0o777 == 0o600


def test_partial_file_is_removed_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "d.sql"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), PartialFile(target) as partial:
        partial.file.write(b"half")
        raise RuntimeError("cut")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["d.sql"]


def test_size_of(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    with path.open("rb") as file:
        assert size_of(file) == 5
    assert size_of(io.BytesIO(b"no descriptor")) is None
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as pipe:
        os.close(write_end)
        assert size_of(pipe) is None


@pytest.mark.parametrize(("size", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (12_345_678, "12.3 MB"),
    (5 * 10**12, "5.0 TB"), (7 * 10**18, "7000.0 PB"),
])
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text


def test_a_call_waiting_for_its_password() -> None:
    call = BY_NAME["set_password"].rpc({"username": "alice", "password": None, "host": None})
    assert call.secret_missing
    assert "password" not in call.params
    filled = call.with_secret("s3cret")
    assert not filled.secret_missing
    assert filled.params == {"user": "alice", "password": "s3cret"}
    assert filled.redact("rejected s3cret, s3cret!") == "rejected ********, ********!"
    with pytest.raises(ArgumentError) as caught:
        call.with_secret("")
    assert "must not be empty" in str(caught.value)


def test_calls_without_secrets_redact_nothing() -> None:
    call = RpcCall("list_nodes", "GET", {})
    assert not call.secret_missing
    assert call.redact("text") == "text"


def test_nul_in_a_password_is_refused_without_repeating_it() -> None:
    call = BY_NAME["set_password"].rpc({"username": "alice", "password": None, "host": None})
    with pytest.raises(ArgumentError) as caught:
        call.with_secret("zz\x00yy")
    assert "zz" not in str(caught.value) and "yy" not in str(caught.value)


def test_upload_and_download_calls(tmp_path: Path) -> None:
    dump = tmp_path / "shop.sql.gz"
    dump.write_bytes(b"\x1f\x8b")
    call = BY_NAME["send_mysqldump"].rpc({"node_id": "All", "file": str(dump),
                                          "database": None})
    assert (call.verb, call.params) == ("UPLOAD", {"serviceNodeId": "all"})
    assert call.upload is not None
    assert (call.upload.field, call.upload.path, call.upload.filename) == (
        "mysqldump", dump, "shop.sql.gz")
    stdin = BY_NAME["load_dump"].rpc({"file": "-", "database": "shop"})
    assert stdin.upload is not None and stdin.upload.path is None
    assert stdin.params == {"database": "shop"}
    dump_call = BY_NAME["sqldump"].rpc({"database": None, "node": None,
                                        "output": str(tmp_path / "out.sql")})
    assert dump_call.download and dump_call.output == tmp_path / "out.sql"
    assert BY_NAME["sqldump"].rpc({"database": None, "node": None, "output": "-"}).output is None


def test_parse_list() -> None:
    assert parse_list("SELECT", "--privileges") == ["SELECT"]
    assert parse_list(" SELECT , UPDATE ", "--privileges") == ["SELECT", "UPDATE"]
    with pytest.raises(ArgumentError):
        parse_list("SELECT,", "--privileges")
