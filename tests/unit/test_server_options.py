"""Server options checked against a server's catalogue, and the manager's params for the
service's configuration."""

from __future__ import annotations

from typing import Any

import pytest

from conpaassql.errors import (
    InvalidArgumentError,
    MissingArgumentError,
    UnexpectedArgumentsError,
)
from conpaassql.gui.configuration import parse_options, rows
from conpaassql.gui.context import InputError
from conpaassql.manager.configuration_api import (
    ResetConfigurationParams,
    RestartParams,
    SetConfigurationParams,
)
from conpaassql.mysql.options import (
    base_value,
    catalogue_of,
    check_options,
    parse_help,
)
from conpaassql.protocol.agent import ServiceOptionsRequest
from conpaassql.protocol.options import generation, option_key, wire_value
from conpaassql.rpc.registry import validate_params


def row(name: str, kind: str, read_only: str = "NO", minimum: str | None = None,
        maximum: str | None = None, choices: str | None = None) -> dict[str, Any]:
    return {"name": name, "type": kind, "read_only": read_only, "minimum": minimum,
            "maximum": maximum, "choices": choices}


ROWS = [
    row("max_connections", "BIGINT UNSIGNED", minimum="10", maximum="100000"),
    row("long_query_time", "DOUBLE", minimum="0", maximum="31536000"),
    row("slow_query_log", "BOOLEAN", choices="OFF,ON"),
    row("innodb_flush_method", "ENUM", "YES",
        choices="fsync,O_DSYNC,littlesync,nosync,O_DIRECT,O_DIRECT_NO_FSYNC"),
    row("sql_mode", "SET", choices="ANSI_QUOTES,STRICT_TRANS_TABLES,NO_ZERO_DATE"),
    row("optimizer_switch", "FLAGSET", choices="index_merge,mrr,default"),
    row("auto_increment_offset", "INT", minimum="1", maximum="65535"),
    row("init_connect", "VARCHAR"),
    row("read_only", "ENUM", choices="OFF,ON,NO_LOCK,NO_LOCK_NO_ADMIN"),
]
HELP = """mariadbd  Ver 11.8
...
Variables (--variable-name=value)
and boolean options {FALSE|TRUE}                             Value (after reading options)
------------------------------------------------------------ -------------
allow-suspicious-udfs                                        FALSE
default-time-zone                                            (No default value)
max-connections                                              151

To see what values a running MariaDB server is using, type
'mariadb-admin variables' instead of 'mariadbd --verbose --help'.
"""
CATALOGUE = catalogue_of(ROWS, parse_help(HELP))


def test_the_help_table_gives_names_and_variables_keep_their_types() -> None:
    assert parse_help(HELP) == ["allow-suspicious-udfs", "default-time-zone", "max-connections"]
    assert CATALOGUE["default_time_zone"].type == "STRING"
    assert not CATALOGUE["default_time_zone"].dynamic
    assert CATALOGUE["max_connections"].type == "BIGINT UNSIGNED"  # the variable wins
    assert CATALOGUE["max_connections"].dynamic
    assert not CATALOGUE["innodb_flush_method"].dynamic


@pytest.mark.parametrize(("given", "expected"), [
    ({"max_connections": 500}, {"max_connections": "500"}),
    ({"MAX-CONNECTIONS": "1k"}, {"max_connections": "1024"}),
    ({"long_query_time": 0.5}, {"long_query_time": "0.5"}),
    ({"long_query_time": "2"}, {"long_query_time": "2.0"}),
    ({"slow_query_log": True}, {"slow_query_log": "ON"}),
    ({"slow_query_log": "off"}, {"slow_query_log": "OFF"}),
    ({"innodb_flush_method": "O_direct"}, {"innodb_flush_method": "O_DIRECT"}),
    ({"sql_mode": "ansi_quotes, strict_trans_tables"},
     {"sql_mode": "ANSI_QUOTES,STRICT_TRANS_TABLES"}),
    ({"sql_mode": ""}, {"sql_mode": ""}),
    ({"optimizer_switch": "mrr=on,index_merge=OFF"},
     {"optimizer_switch": "mrr=on,index_merge=off"}),
    ({"default_time_zone": "+00:00"}, {"default_time_zone": "+00:00"}),
    ({"init_connect": "SET NAMES utf8mb4"}, {"init_connect": "SET NAMES utf8mb4"}),
])
def test_values_are_spelled_as_the_server_does(given: dict[str, object],
                                               expected: dict[str, str]) -> None:
    assert check_options(given, CATALOGUE) == expected


@pytest.mark.parametrize(("given", "detail"), [
    ({"max_conections": 5}, "max_conections: not an option of this server"),
    ({"loose-max-connections": 500}, "loose_max_connections: not an option of this server"),
    ({"loose-read-only": "OFF"}, "loose_read_only: managed by the service"),
    ({"max_connections": "many"}, "max_connections: must be an integer"),
    ({"max_connections": 5}, "max_connections: 5 is out of range (10 to 100000)"),
    ({"max_connections": 1.5}, "max_connections: must be an integer"),
    ({"auto_increment_offset": -1}, "auto_increment_offset: -1 is out of range"),
    ({"long_query_time": "soon"}, "long_query_time: must be a number"),
    ({"long_query_time": "nan"}, "long_query_time: must be a finite number"),
    ({"long_query_time": -1}, "long_query_time: -1 is out of range"),
    ({"slow_query_log": "maybe"}, "slow_query_log: must be ON or OFF"),
    ({"innodb_flush_method": "fast"}, "innodb_flush_method: must be one of fsync"),
    ({"sql_mode": "ANSI_QUOTES,NOPE"}, "sql_mode: must be one of"),
    ({"optimizer_switch": "mrr=maybe"}, "optimizer_switch: 'mrr=maybe' is not flag"),
    ({"optimizer_switch": "warp=on"}, "optimizer_switch: 'warp=on' is not flag"),
    ({"init_connect": "a\nb"}, "init_connect: option value may not contain a newline"),
    ({"read_only": "OFF"}, "read_only: managed by the service"),
    ({"datadir": "/tmp"}, "datadir: managed by the service"),
    ({"ssl-key": "/tmp/k"}, "ssl_key: managed by the service"),
    ({"skip-grant-tables": ""}, "skip_grant_tables: managed by the service"),
    ({"bad name!": 1}, "bad name!: not a valid option name"),
])
def test_wrong_options_are_refused_with_the_option_named(given: dict[str, object],
                                                         detail: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check_options({"max_connections": 100, **given}, CATALOGUE)
    assert str(caught.value).startswith(f"Invalid argument: options DETAIL:{detail}"), \
        str(caught.value)


def test_wire_values_and_generations() -> None:
    assert [wire_value(v) for v in (True, False, 3, 0.25, "x")] == ["ON", "OFF", "3", "0.25",
                                                                     "x"]
    assert generation({"a": "1", "b": "2"}) == generation({"b": "2", "a": "1"})
    assert generation({"a": "1"}) != generation({"a": "2"})
    assert len(generation({})) == 16
    assert option_key(" Max-Connections") == "max_connections"


def test_the_base_value_is_what_my_cnf_sets_without_the_services_options() -> None:
    cnf = "[mariadbd]\nsync-binlog=1\nskip-name-resolve\nlog-error=\"/a b/err\"\n"
    assert base_value(cnf, "sync_binlog") == "1"
    assert base_value(cnf, "skip_name_resolve") == "ON"
    assert base_value(cnf, "log_error") == "/a b/err"
    assert base_value(cnf, "max_connections") is None


def test_the_managers_params_refuse_like_every_method() -> None:
    def refused(model: Any, raw: dict[str, Any]) -> str:
        with pytest.raises((InvalidArgumentError, MissingArgumentError,
                            UnexpectedArgumentsError)) as caught:
            validate_params(model, raw)
        return str(caught.value)

    assert refused(SetConfigurationParams, {}) == "Missing argument: options"
    assert refused(SetConfigurationParams, {"options": {}}).startswith(
        "Invalid argument: options")
    assert refused(SetConfigurationParams, {"options": ["max_connections"]}).startswith(
        "Invalid argument: options")
    assert refused(SetConfigurationParams, {"options": {"a": [1]}}).startswith(
        "Invalid argument: options")
    assert refused(SetConfigurationParams, {"options": {"a": 1}, "apply": "soon"}).startswith(
        "Invalid argument: apply")
    assert refused(SetConfigurationParams, {"options": {"a": 1}, "now": 1}) == \
        "Unexpected arguments ['now']"
    assert refused(ResetConfigurationParams, {"options": "max_connections"}).startswith(
        "Invalid argument: options")
    assert refused(RestartParams, {"serviceNodeId": "x"}).startswith(
        "Invalid argument: serviceNodeId")
    params = validate_params(SetConfigurationParams, {"options": {
        "a": True, "b": 2, "c": 0.5, "d": "x"}, "apply": "next-restart"})
    assert isinstance(params, SetConfigurationParams)
    assert params.options == {"a": True, "b": 2, "c": 0.5, "d": "x"}
    restart = validate_params(RestartParams, {"serviceNodeId": "2"})
    assert isinstance(restart, RestartParams) and restart.serviceNodeId == 2


def test_the_agents_request_wants_a_digest() -> None:
    with pytest.raises(InvalidArgumentError):
        ServiceOptionsRequest.model_validate({"options": {}, "generation": "nope"})
    request = ServiceOptionsRequest(options={"a": "1"}, generation=generation({"a": "1"}),
                                    dry_run=True)
    assert request.wire()["dry_run"] is True


def test_the_configuration_pages_lines_and_rows() -> None:
    assert parse_options("# comment\n max_connections = 500 \n\nsql_mode=\n") == {
        "max_connections": "500", "sql_mode": ""}
    for text, error in (("", "give at least one NAME=VALUE line"),
                        ("max_connections", "line 1: give NAME=VALUE"),
                        ("a=1\n=2", "line 2: give NAME=VALUE")):
        with pytest.raises(InputError) as caught:
            parse_options(text)
        assert str(caught.value).startswith(error)
    answer = {"options": {"b": "2", "a": "1"}, "nodes": [
        {"id": 1, "effective": {"a": "1", "b": "3"}, "pending_restart": ["b"]},
        {"id": 2, "effective": {"a": "1"}, "pending_restart": []}]}
    assert rows(answer) == [
        {"name": "a", "value": "1", "nodes": [{"id": 1, "value": "1", "pending": False},
                                              {"id": 2, "value": "1", "pending": False}]},
        {"name": "b", "value": "2", "nodes": [{"id": 1, "value": "3", "pending": True},
                                              {"id": 2, "value": None, "pending": False}]}]
