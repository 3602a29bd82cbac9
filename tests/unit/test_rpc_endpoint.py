"""The host, URL and token checks the client and the front-end share."""

from __future__ import annotations

from pathlib import Path

import pytest

from conpaassql.rpc.endpoint import (
    MAX_TOKEN_LENGTH,
    TOKEN_ENV,
    base_url,
    check_host,
    check_token,
    load_token,
)


@pytest.mark.parametrize("host", ["localhost", "10.0.0.1", "::1", "[::1]",
                                  "db-manager.example.org"])
def test_a_host_name_or_address_passes(host: str) -> None:
    assert check_host(host) == host


@pytest.mark.parametrize("host", ["", "a b", "a\tb", "a\nb", "h/x", "h\\x", "h?x", "h#x",
                                  "user@h", "h'x", 'h"x', "h\x00"])
def test_what_would_change_a_url_is_not_a_host(host: str) -> None:
    with pytest.raises(ValueError, match="is not a host name or address"):
        check_host(host)


@pytest.mark.parametrize(("host", "port", "https", "url"), [
    ("localhost", 50000, False, "http://localhost:50000/"),
    ("10.0.0.1", 443, True, "https://10.0.0.1:443/"),
    ("::1", 6000, False, "http://[::1]:6000/"),
    ("[::1]", 6000, True, "https://[::1]:6000/"),
])
def test_the_base_url(host: str, port: int, https: bool, url: str) -> None:
    assert base_url(host, port, https=https) == url


def test_a_token_is_stripped() -> None:
    assert check_token(" s3cret-token\n", "the token file t") == "s3cret-token"


@pytest.mark.parametrize(("text", "said"), [
    ("", "the token file t is empty"),
    (" \n", "the token file t is empty"),
    ("two words", "the token file t holds spaces or control characters, not a token"),
    ("tab\there", "the token file t holds spaces or control characters, not a token"),
    ("bell\x07", "the token file t holds spaces or control characters, not a token"),
    ("café", "the token file t holds spaces or control characters, not a token"),
    ("x" * (MAX_TOKEN_LENGTH + 1),
     f"the token file t is longer than {MAX_TOKEN_LENGTH} characters, not a token"),
])
def test_what_is_not_a_token_is_named_by_its_origin_only(text: str, said: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_token(text, "the token file t")
    assert str(raised.value) == said


def test_load_token_from_a_file_the_environment_or_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, "  from-env\n")
    assert load_token(None) == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert load_token(token_file) == "from-file"  # the file wins
    with pytest.raises(ValueError, match="cannot read the token file"):
        load_token(tmp_path / "absent")
    token_file.write_text("two words")
    with pytest.raises(ValueError, match="the token file"):
        load_token(str(token_file))
