"""A node's context (``NodeContext``): rendered as shell lines, read back by the agent.

What must work: every field round-trips through ``render``/``parse``, for any
value on one line (quotes, spaces, ``$``, backslashes, ``;``, ``#``, backticks,
non-ASCII); and the rendered text, sourced by bash, yields the same values and
runs nothing. A value with a line break must round-trip as well (or be refused
by ``render``): the text is the only channel to the new node.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conpaassql.context import PREFIX, NodeContext
from conpaassql.errors import ConfigError

NASTY = "'\"$\\ ;#"
NASTY_VALUES = [
    NASTY,
    "p'a\"s$s\\w ;o#rd",
    "$(touch PWNED)",
    "`touch PWNED`",
    "${HOME}",
    "a b  c",
    " leading and trailing ",
    "#not-a-comment",
    "--",
    "",
    "x=y",
    "héllo wörld ✓",
    "'",
    "''",
    "\\",
    "\\'",
    "!history",
    "*",
    "~",
]
BASH = shutil.which("bash")


PEM = "-----BEGIN {kind}-----\nMIIB+zCCAaGgAwIBAgIU'x\"$y`z\n-----END {kind}-----\n"


def make_context(**changes: object) -> NodeContext:
    base = NodeContext(
        manager_url="http://127.0.0.1:50000/",
        service_id="a1b2c3d4",
        node_id=7,
        secret="s3cr3t",
        root_password="r00t",
        ip="127.0.0.11",
        agent_port=60001,
        health_port=60009,
        mysql_port=3307,
        heartbeat_interval=2.5,
        data_dir="/var/lib/conpaassql/node-7",
        template_dir="/var/cache/conpaassql/template",
        mysql_options={"innodb_buffer_pool_size": "64M", "max_connections": "50"},
        ca_cert=PEM.format(kind="CERTIFICATE"),
        tls_cert=PEM.format(kind="CERTIFICATE"),
        tls_key=PEM.format(kind="PRIVATE KEY"),
        grant_key=PEM.format(kind="PUBLIC KEY"),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def source_in_bash(path: Path, name: str) -> str:
    assert BASH is not None
    done = subprocess.run(
        [BASH, "-c", f'set -a; . "$1"; printf %s "${{{name}}}"', "bash", str(path)],
        capture_output=True, text=True, timeout=10, cwd=path.parent, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_round_trip_of_every_field() -> None:
    context = make_context()
    assert NodeContext.parse(context.render()) == context


def test_round_trip_with_defaults_and_nones() -> None:
    context = NodeContext("http://m:50000/", "abc", 1, "s", "p")
    text = context.render()
    assert "IP=" not in text
    assert "DATA_DIR" not in text
    assert NodeContext.parse(text) == context


def test_render_is_key_value_lines_with_prefix() -> None:
    context = make_context()
    parsed = NodeContext.parse(context.render())
    assert parsed == context and parsed.tls_key == context.tls_key  # PEM lines kept
    assert "PRIVATE KEY" not in repr(context) and "r00t" not in repr(context)
    lines = make_context(ca_cert=None, tls_cert=None, tls_key=None,
                         grant_key=None).render().splitlines()
    assert len(lines) == len(dataclasses.fields(NodeContext)) - 4
    for line in lines:
        assert line.startswith(PREFIX)
        key = line.partition("=")[0]
        assert key == key.upper()
    assert "CONPAASSQL_NODE_ID=7" in lines


@pytest.mark.parametrize("value", NASTY_VALUES)
def test_nasty_password_round_trips(value: str) -> None:
    context = make_context(root_password=value, secret=value)
    parsed = NodeContext.parse(context.render())
    assert parsed.root_password == value
    assert parsed.secret == value
    assert parsed == context


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@pytest.mark.parametrize("value", NASTY_VALUES)
def test_rendered_text_is_safe_to_source(tmp_path: Path, value: str) -> None:
    path = tmp_path / "context.sh"
    path.write_text(make_context(root_password=value).render(), encoding="utf-8")
    assert source_in_bash(path, "CONPAASSQL_ROOT_PASSWORD") == value
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.skipif(BASH is None, reason="bash not installed")
def test_every_sourced_field_matches(tmp_path: Path) -> None:
    context = make_context(root_password=NASTY, manager_url="http://127.0.0.1:50000/?a=1&b=2")
    path = tmp_path / "context.sh"
    path.write_text(context.render(), encoding="utf-8")
    assert source_in_bash(path, "CONPAASSQL_MANAGER_URL") == context.manager_url
    assert source_in_bash(path, "CONPAASSQL_NODE_ID") == "7"
    assert json.loads(source_in_bash(path, "CONPAASSQL_MYSQL_OPTIONS")) == {
        "innodb_buffer_pool_size": "64M", "max_connections": "50"}


ONE_LINE = st.text(
    alphabet=st.characters(
        exclude_categories=["Cs"],
        exclude_characters="\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=40,
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(password=ONE_LINE, secret=ONE_LINE, url=ONE_LINE, service=ONE_LINE)
def test_any_one_line_values_round_trip(password: str, secret: str, url: str,
                                        service: str) -> None:
    context = make_context(root_password=password, secret=secret, manager_url=url,
                           service_id=service, data_dir=password)
    assert NodeContext.parse(context.render()) == context


@pytest.mark.parametrize("value", ["pass\nword", "a\r\nb", "x\x0cy", "u\u2028v"])
def test_line_break_in_a_value_round_trips_or_is_refused(value: str) -> None:
    context = make_context(root_password=value)
    try:
        text = context.render()
    except (ConfigError, ValueError):
        return  # refusing such a value up front is acceptable
    assert NodeContext.parse(text) == context


def test_mysql_options_round_trip() -> None:
    options = {"innodb_buffer_pool_size": "128M", "log_bin": "mysql-bin",
               "init_connect": "SET NAMES utf8mb4"}
    parsed = NodeContext.parse(make_context(mysql_options=options).render())
    assert parsed.mysql_options == options
    empty = NodeContext.parse(make_context(mysql_options={}).render())
    assert empty.mysql_options == {}


def test_mysql_option_value_with_equals_round_trips() -> None:
    options = {"init_connect": "SET @a=1"}
    assert NodeContext.parse(make_context(mysql_options=options).render()).mysql_options == (
        options)


def test_mysql_option_value_with_comma_round_trips() -> None:
    options = {"sql_mode": "STRICT_TRANS_TABLES,NO_ZERO_DATE"}
    context = make_context(mysql_options=options)
    assert NodeContext.parse(context.render()).mysql_options == options


def test_unknown_keys_comments_and_blank_lines_are_ignored() -> None:
    text = (
        "# context.sh written by the cloud\n"
        "\n"
        "ETH0_IP='10.0.0.5'\n"
        'SSH_PUBLIC_KEY="ssh-ed25519 AAAA user@host"\n'
        "CONPAASSQL_SOMETHING_NEW=42\n"
        + make_context().render()
        + "   \n"
        "TARGET=hdb\n"
    )
    assert NodeContext.parse(text) == make_context()


def test_indented_lines_are_read() -> None:
    plain = make_context(ca_cert=None, tls_cert=None, tls_key=None, grant_key=None)  # 1 line/key
    text = "".join(f"   {line}\n" for line in plain.render().splitlines())
    assert NodeContext.parse(text) == plain


@pytest.mark.parametrize("key", ["manager_url", "service_id", "node_id", "secret",
                                 "root_password"])
def test_missing_required_key(key: str) -> None:
    name = PREFIX + key.upper()
    text = "".join(line + "\n" for line in make_context().render().splitlines()
                   if not line.startswith(name + "="))
    with pytest.raises(ConfigError) as caught:
        NodeContext.parse(text, origin="/run/context.sh")
    assert name in str(caught.value)
    assert "/run/context.sh" in str(caught.value)


def test_empty_text_is_missing_manager_url() -> None:
    with pytest.raises(ConfigError) as caught:
        NodeContext.parse("")
    assert "CONPAASSQL_MANAGER_URL" in str(caught.value)


@pytest.mark.parametrize(("key", "value"), [
    ("CONPAASSQL_NODE_ID", "seven"),
    ("CONPAASSQL_AGENT_PORT", "60000x"),
    ("CONPAASSQL_MYSQL_PORT", ""),
    ("CONPAASSQL_HEARTBEAT_INTERVAL", "soon"),
    ("CONPAASSQL_MYSQL_OPTIONS", "novalue"),
])
def test_bad_values_are_config_errors(key: str, value: str) -> None:
    text = make_context().render() + f"{key}='{value}'\n"
    with pytest.raises(ConfigError) as caught:
        NodeContext.parse(text, origin="ctx")
    assert key in str(caught.value)


def test_line_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        NodeContext.parse(make_context().render() + "garbage line\n", origin="ctx")
    assert "garbage" in str(caught.value) and "ctx" in str(caught.value)


def test_last_value_of_a_repeated_key_wins() -> None:
    text = make_context().render() + "CONPAASSQL_NODE_ID=9\n"
    assert NodeContext.parse(text).node_id == 9
