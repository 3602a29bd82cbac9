"""API tokens: kept as digests, shown once, revoked and rotated."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conpaassql.manager.tokens import TokenStore
from conpaassql.net import is_loopback


def test_tokens_are_kept_as_digests_and_checked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "secrets")
    admin, admin_token = store.create("admin", "me")
    reader, read_token = store.create("read")
    text = store.path.read_text()
    assert admin_token not in text and read_token not in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.check(admin_token) == admin
    assert store.check(read_token) == reader and reader.access == "read"
    assert store.check(admin_token + "x") is None and store.check("") is None
    # Another process (the command line) revokes: this store sees it at once.
    assert TokenStore(tmp_path / "secrets").revoke(reader.id)
    assert store.check(read_token) is None
    assert not store.revoke("nope")


def test_the_owner_token_is_made_once_and_rotates(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "secrets")
    assert store.ensure_owner_token()
    assert not store.ensure_owner_token()
    first = store.owner_file.read_text().strip()
    assert stat.S_IMODE(store.owner_file.stat().st_mode) == 0o600
    assert store.check(first) is not None
    _, reader = store.create("read")
    store.rotate_owner_token()
    second = store.owner_file.read_text().strip()
    assert second != first and store.check(first) is None
    assert store.check(second) is not None and store.check(reader) is not None


@pytest.mark.parametrize(("bind", "loopback"), [
    ("127.0.0.1", True), ("127.0.3.4", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.org", False),
])
def test_what_counts_as_loopback(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback
