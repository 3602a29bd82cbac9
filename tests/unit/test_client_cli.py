"""conpaassql-client against a real HTTP server speaking the ConPaaS dialect.

The server is the project's own ``RpcApp`` served by uvicorn on 127.0.0.1, with
fake manager handlers returning the seed's results. A recorder in front of it
keeps what arrived on the wire (HTTP method, RPC method, params as sent, the
Authorization header, the files of an upload), so the tests check what the
client really sends. Uploads are checked against the checksum the handler
computes of the file as it streams in; dumps are streamed by the handler.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner, Result
from pydantic import ConfigDict
from rich.console import Console
from starlette.responses import StreamingResponse

from conpaassql.client import cli as cli_module
from conpaassql.client import native_dump
from conpaassql.client.cli import cli
from conpaassql.client.commands import COMMANDS
from conpaassql.client.render import (
    backups_tables,
    databases_tables,
    nodes_tables,
    performance_tables,
    tables_for,
    users_tables,
)
from conpaassql.client.transfer import Meter
from conpaassql.errors import InvalidArgumentError, NotFoundError, WrongStateError
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.types import Params
from tests.unit.served import served

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run-manager-client.sh"
SEED_NODE = {"ip": "10.1.0.20", "state": "PENDING", "id": 1815, "name": "conpaassql-agent"}
DUMP = b"".join(b"INSERT INTO t VALUES (%d, '%s');\n" % (i, b"x" * (i % 97))
                for i in range(40_000))
"""A dump of a few MB: several chunks on the wire."""
USERS = {"nodes": [
    {"id": 1792, "ip": "10.1.0.19", "role": "master", "users": [
        {"username": "alice", "host": "%", "can_login": True, "locked": False,
         "grants": ["GRANT SELECT ON `shop`.* TO `alice`@`%`",
                    "GRANT INSERT ON `shop`.* TO `alice`@`%`"]},
        {"username": "bob", "host": "10.0.0.%", "can_login": False, "locked": True,
         "grants": []},
    ]},
    {"id": 1815, "ip": "10.1.0.20", "role": "slave", "users": []},
]}
DATABASES = {"nodes": [
    {"id": 1792, "ip": "10.1.0.19", "role": "master", "databases": [
        {"name": "shop", "size_bytes": 12_345_678, "tables": 7},
        {"name": "empty", "size_bytes": 0, "tables": 0},
    ]},
]}


# --- the fake manager ---------------------------------------------------------------


class AddNodesParams(Params):
    function: str | None = None
    count: int | None = None
    cloud: str | None = None


class RemoveNodesParams(Params):
    serviceNodeId: int | None = None
    count: int | None = None


class NodeParams(Params):
    serviceNodeId: int


class AnyParams(Params):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


HISTORY = [
    {"at": 1330250400.0, "time": "2012-02-26T10:00:00Z", "subject": "service",
     "message": "1 node(s) added", "from": "INIT", "to": "PROLOGUE"},
    {"at": 1330250460.0, "time": "2012-02-26T10:01:00Z", "subject": "node", "node": 1792,
     "message": "node 1792 is the master"},
]


BACKUPS = {
    "backups": [
        {"id": "20261207T103000Z-full-3fa2c1", "kind": "full", "state": "done",
         "started": 1796639400.0, "finished": 1796639460.5, "gtid": "0-1-57",
         "bytes": 12_300_000, "node": "2", "parent": None,
         "verified": {"at": 1796639500.0, "ok": True, "tables": 17, "seconds": 9.5,
                      "error": None, "node": "2"}},
        {"id": "20261207T110000Z-incremental-0b1c2d", "kind": "incremental",
         "state": "running", "started": 1796641200.0, "finished": None, "gtid": "",
         "bytes": 0, "node": "2", "parent": "20261207T103000Z-full-3fa2c1",
         "verified": None},
    ],
    "restorable": {"from": 1796639460.5, "to": 1796639460.5},
}

CONFIGURATION = {
    "options": {"max_connections": "500", "innodb_flush_method": "fsync"},
    "generation": "0123456789abcdef",
    "nodes": [
        {"id": 1, "role": "MASTER", "in_sync": True, "pending_restart": ["innodb_flush_method"],
         "effective": {"max_connections": "500", "innodb_flush_method": "O_DIRECT"}},
        {"id": 2, "role": "SLAVE", "in_sync": True, "pending_restart": [],
         "effective": {"max_connections": "500", "innodb_flush_method": "fsync"}},
    ],
    "unreachable": [],
    "restart": {"state": "done", "seconds": 12.5},
}


class FakeManager:
    """Seed-shaped answers; the node list changes as in the seed's session."""

    def __init__(self) -> None:
        self.nodes = [1792]
        self.uploads: list[dict[str, Any]] = []

    def registry(self) -> Registry:
        registry = Registry()
        registry.add("list_nodes", "GET", self.list_nodes)
        registry.add("add_nodes", "POST", self.add_nodes, AddNodesParams)
        registry.add("remove_nodes", "POST", self.remove_nodes, RemoveNodesParams)
        registry.add("get_node_info", "GET", self.get_node_info, NodeParams)
        registry.add("get_service_info", "GET", self.get_service_info)
        registry.add("get_service_performance", "GET", self.get_service_performance)
        registry.add("getLog", "GET", self.get_log)
        registry.add("shutdown", "POST", self.shutdown)
        registry.add("echo", "POST", self.echo, AnyParams)
        registry.add("get_users", "GET", self.get_users, AnyParams)
        registry.add("get_service_history", "GET", self.get_service_history, AnyParams)
        for name in ("delete_user", "set_password", "create_database", "drop_database",
                     "set_up_replica_master", "set_up_replica_slave",
                     "set_server_configuration", "reset_server_configuration",
                     "restart_nodes"):
            registry.add(name, "POST", self.nodes_done, AnyParams)
        registry.add("configure_user", "POST", self.configure_user, AnyParams)
        registry.add("get_password", "GET", self.get_password)
        registry.add("get_server_configuration", "GET", self.get_server_configuration)
        registry.add("list_backups", "GET", self.list_backups)
        for name in ("backup", "delete_backup", "restore_node", "verify_backup"):
            registry.add(name, "POST", self.echo, AnyParams)
        registry.add("list_databases", "GET", self.list_databases, AnyParams)
        registry.add("get_agent_log", "GET", self.get_agent_log, AnyParams)
        registry.add("send_mysqldump", "UPLOAD", self.load, AnyParams, files=("mysqldump",))
        registry.add("load_dump", "UPLOAD", self.load, AnyParams, files=("mysqldump_file",))
        registry.add("sqldump", "GET", self.sqldump, AnyParams)
        return registry

    async def list_nodes(self, params: Params, context: CallContext) -> Any:
        return {"serviceNode": list(self.nodes)}

    async def add_nodes(self, params: AddNodesParams, context: CallContext) -> Any:
        self.nodes.append(1815)
        return {"serviceNode": dict(SEED_NODE)}

    async def remove_nodes(self, params: RemoveNodesParams, context: CallContext) -> Any:
        if params.serviceNodeId in self.nodes:
            self.nodes.remove(params.serviceNodeId)
        return {"result": "OK"}

    async def get_node_info(self, params: NodeParams, context: CallContext) -> Any:
        return {"serviceNode": {"id": params.serviceNodeId, "ip": "10.1.0.20",
                                "isRunningMySQL": True}}

    async def get_service_info(self, params: Params, context: CallContext) -> Any:
        return {
            "type": "conpaas-mysql",
            "state": "RUNNING",
            "transitions": [
                {"from": "INIT", "to": "PROLOGUE", "at": "2012-02-26T10:00:00Z",
                 "reason": "startup"},
                {"from": "PROLOGUE", "to": "RUNNING", "at": "2012-02-26T10:01:00Z",
                 "reason": "master ready"},
            ],
            "endpoints": {"writer": {"host": "10.1.0.2", "port": 3306},
                          "readers": {"host": "10.1.0.2", "port": 3307}},
        }

    async def get_service_performance(self, params: Params, context: CallContext) -> Any:
        return {
            "queries_per_second": 42.5,
            "nodes": {
                "1792": {"role": "master", "queries_per_second": 40.0, "connections": 7},
                "1815": {"role": "slave", "queries_per_second": 2.5, "lag_seconds": 0},
            },
        }

    async def get_service_history(self, params: AnyParams, context: CallContext) -> Any:
        return {"history": HISTORY}

    async def get_server_configuration(self, params: Params, context: CallContext) -> Any:
        return CONFIGURATION

    async def list_backups(self, params: Params, context: CallContext) -> Any:
        return BACKUPS

    async def get_log(self, params: Params, context: CallContext) -> Any:
        return {"log": "first line\nsecond line\n"}

    async def shutdown(self, params: Params, context: CallContext) -> Any:
        raise WrongStateError()

    async def echo(self, params: AnyParams, context: CallContext) -> Any:
        return params.model_dump()

    async def get_users(self, params: AnyParams, context: CallContext) -> Any:
        return USERS

    async def nodes_done(self, params: AnyParams, context: CallContext) -> Any:
        return {"nodes": [1792]}

    async def configure_user(self, params: AnyParams, context: CallContext) -> Any:
        """A manager whose error quotes the password (ours must not show it)."""
        sent = params.model_dump()
        if sent.get("username") == "weak":
            raise InvalidArgumentError("password", detail=f"{sent['password']} is too weak")
        return {"nodes": [1792]}

    async def get_password(self, params: Params, context: CallContext) -> Any:
        return {"username": "root", "password": "r00t-pw", "note": "local logins only"}

    async def list_databases(self, params: AnyParams, context: CallContext) -> Any:
        return DATABASES

    async def get_agent_log(self, params: AnyParams, context: CallContext) -> Any:
        sent = params.model_dump()
        return {"log": "agent started\nmysqld running", "node": sent["serviceNodeId"],
                "which": sent["log"]}

    async def load(self, params: AnyParams, context: CallContext) -> Any:
        """Reads the file as it streams in and reports its size and checksum."""
        (upload,) = context.files.values()
        digest = hashlib.sha256()
        size = 0
        async for chunk in upload.chunks():
            digest.update(chunk)
            size += len(chunk)
        self.uploads.append({"field": upload.name, "filename": upload.filename,
                             "bytes": size, "sha256": digest.hexdigest()})
        return {"nodes": [1792], "bytes": size, "sha256": digest.hexdigest()}

    async def sqldump(self, params: AnyParams, context: CallContext) -> Any:
        """DUMP streamed; ``database`` picks a failure: ``missing`` before the first
        byte, ``broken`` in the middle; ``sized`` announces its length."""
        database = params.model_dump().get("database")
        if database == "missing":
            raise NotFoundError("database", detail="no database missing")

        async def body() -> AsyncIterator[bytes]:
            half = len(DUMP) // 2
            yield DUMP[:half]
            if database == "broken":
                raise RuntimeError("the node went away")
            yield DUMP[half:]

        headers = {"content-length": str(len(DUMP))} if database == "sized" else None
        return StreamingResponse(body(), media_type="application/sql", headers=headers)


# --- the server and its recorder ----------------------------------------------------


@dataclass
class Received:
    http_method: str
    method: str | None
    params: Any
    authorization: str | None
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    """An upload's files: field -> (file name, sha256)."""


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str],
                                                        dict[str, tuple[str, str]]]:
    """The plain fields and the files (name, sha256) of a multipart body."""
    boundary = content_type.split("boundary=", 1)[1].encode()
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str]] = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, content = part[2:-2].partition(b"\r\n\r\n")
        disposition = head.decode().split("\r\n")[0]
        name = re.search(r' name="([^"]*)"', disposition)
        filename = re.search(r' filename="([^"]*)"', disposition)
        assert name is not None
        if filename is None:
            fields[name.group(1)] = content.decode()
        else:
            files[name.group(1)] = (filename.group(1), hashlib.sha256(content).hexdigest())
    return fields, files


class Recorder:
    """ASGI middleware keeping each request as it arrived, then passing it on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received: list[Received] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        files: dict[str, tuple[str, str]] = {}
        if scope["method"] == "GET":
            query = parse_qs(scope["query_string"].decode())
            method = query.get("method", [None])[0]
            params = json.loads(query["params"][0]) if "params" in query else {}
        elif headers.get("content-type", "").startswith("multipart/form-data"):
            params, files = parse_form(headers["content-type"], body)
            method = params.pop("method", None)
            params.pop("id", None)
        else:
            data = json.loads(body)
            method, params = data.get("method"), data.get("params")
        self.received.append(
            Received(scope["method"], method, params, headers.get("authorization"), files)
        )
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass
class Live:
    port: int
    recorder: Recorder
    manager: FakeManager
    runner: CliRunner = field(default_factory=CliRunner)

    @property
    def sent(self) -> list[tuple[str, str | None, Any]]:
        return [(r.http_method, r.method, r.params) for r in self.recorder.received]

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(cli, ["127.0.0.1", str(self.port), *args], env=env)


@pytest.fixture(scope="module")
def server() -> Iterator[Live]:
    manager = FakeManager()
    recorder = Recorder(RpcApp(manager.registry()).asgi())
    with served(recorder) as port:
        yield Live(port, recorder, manager)


@pytest.fixture
def live(server: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    monkeypatch.delenv("CONPAASSQL_TOKEN", raising=False)
    monkeypatch.delenv("CONPAASSQL_PASSWORD", raising=False)
    # As if mariadb-dump were not here (tests/unit/test_native_dump.py tests that way).
    monkeypatch.setattr(native_dump, "find_dumper", lambda: None)
    server.recorder.received.clear()
    server.manager.nodes = [1792]
    server.manager.uploads.clear()
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- the seed's lines, through the wrapper script ------------------------------------


def test_seed_session_through_run_manager_client_sh(live: Live) -> None:
    assert os.access(SCRIPT, os.X_OK)
    env = {k: v for k, v in os.environ.items() if k != "CONPAASSQL_TOKEN"}

    def script(*args: str) -> Any:
        done = subprocess.run([str(SCRIPT), "127.0.0.1", str(live.port), *args],
                              capture_output=True, text=True, timeout=30, env=env, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        return json.loads(done.stdout)

    assert script("list_nodes") == {"serviceNode": [1792]}
    assert script("add_node", "agent") == {"serviceNode": SEED_NODE}
    assert script("list_nodes") == {"serviceNode": [1792, 1815]}
    assert script("delete_nodes", "1815") == {"result": "OK"}
    assert live.sent == [
        ("GET", "list_nodes", {}),
        ("POST", "add_nodes", {"function": "agent"}),
        ("GET", "list_nodes", {}),
        ("POST", "remove_nodes", {"serviceNodeId": 1815}),
    ]


def test_script_reports_the_error_exit_code(live: Live) -> None:
    done = subprocess.run([str(SCRIPT), "127.0.0.1", str(live.port), "shutdown"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "Service in wrong state\n")


# --- what each command sends ---------------------------------------------------------


def sqldump_asks(params: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """What the client asks for one sqldump of a manager that grants nothing (with no
    mariadb-dump on this host, as the ``live`` fixture has it): a grant, then the stream."""
    return [("GET", "grant_sqldump", params), ("GET", "sqldump", params)]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list_nodes"], ("GET", "list_nodes", {})),
        (["add_node", "agent"], ("POST", "add_nodes", {"function": "agent"})),
        (["add_node", "agent", "--cloud", "one"],
         ("POST", "add_nodes", {"function": "agent", "cloud": "one"})),
        (["add_nodes"], ("POST", "add_nodes", {"count": 1})),
        (["add_nodes", "3"], ("POST", "add_nodes", {"count": 3})),
        (["add_nodes", "2", "--cloud", "local"],
         ("POST", "add_nodes", {"count": 2, "cloud": "local"})),
        (["delete_nodes", "1815"], ("POST", "remove_nodes", {"serviceNodeId": 1815})),
        (["remove_nodes", "1815"], ("POST", "remove_nodes", {"serviceNodeId": 1815})),
        (["remove_nodes", "--count", "2"], ("POST", "remove_nodes", {"count": 2})),
        (["get_node_info", "1792"], ("GET", "get_node_info", {"serviceNodeId": 1792})),
        (["get_service_info"], ("GET", "get_service_info", {})),
        (["get_service_performance"], ("GET", "get_service_performance", {})),
        (["getLog"], ("GET", "getLog", {})),
        (["set_up_replica_master", "2"], ("POST", "set_up_replica_master", {"id": 2})),
        (["set_up_replica_slave", "3"], ("POST", "set_up_replica_slave", {"id": 3})),
        (["get_service_history"], ("GET", "get_service_history", {})),
        (["get_service_history", "--node", "2", "--limit", "5"],
         ("GET", "get_service_history", {"serviceNodeId": 2, "limit": 5})),
        (["set_server_configuration", "max_connections=500", "long_query_time=0.5"],
         ("POST", "set_server_configuration",
          {"options": {"max_connections": "500", "long_query_time": "0.5"}})),
        (["set_server_configuration", "init_connect=SET a=1", "--next-restart"],
         ("POST", "set_server_configuration",
          {"options": {"init_connect": "SET a=1"}, "apply": "next-restart"})),
        (["get_server_configuration"], ("GET", "get_server_configuration", {})),
        (["reset_server_configuration", "max_connections", "long_query_time"],
         ("POST", "reset_server_configuration",
          {"options": ["max_connections", "long_query_time"]})),
        (["restart_nodes"], ("POST", "restart_nodes", {})),
        (["restart_nodes", "2"], ("POST", "restart_nodes", {"serviceNodeId": 2})),
        (["call", "echo", '{"serviceNodeId": 5, "username": "u"}'],
         ("POST", "echo", {"serviceNodeId": 5, "username": "u"})),
        (["call", "echo"], ("POST", "echo", {})),
        (["call", "get_users", "--get"], ("GET", "get_users", {})),
        (["configure_user", "all", "alice", "pw1"],
         ("POST", "configure_user", {"serviceNodeId": "all", "username": "alice",
                                     "password": "pw1"})),
        (["configure_user", "ALL", "alice", "pw1", "--host", "10.0.0.%", "--database", "shop",
          "--privileges", "SELECT, INSERT,ALL PRIVILEGES"],
         ("POST", "configure_user", {"serviceNodeId": "all", "username": "alice",
                                     "password": "pw1", "host": "10.0.0.%",
                                     "database": "shop",
                                     "privileges": ["SELECT", "INSERT", "ALL PRIVILEGES"]})),
        (["configure_user", "1792", "alice", "pw1"],
         ("POST", "configure_user", {"serviceNodeId": 1792, "username": "alice",
                                     "password": "pw1"})),
        (["delete_user", "all", "alice"],
         ("POST", "delete_user", {"serviceNodeId": "all", "username": "alice"})),
        (["delete_user", "3", "alice", "--host", "localhost"],
         ("POST", "delete_user", {"serviceNodeId": 3, "username": "alice",
                                  "host": "localhost"})),
        (["get_users"], ("GET", "get_users", {})),
        (["get_users", "1792"], ("GET", "get_users", {"serviceNodeId": 1792})),
        (["set_password", "alice", "pw2"],
         ("POST", "set_password", {"user": "alice", "password": "pw2"})),
        (["set_password", "alice", "pw2", "--host", "%"],
         ("POST", "set_password", {"user": "alice", "password": "pw2", "host": "%"})),
        (["get_password"], ("GET", "get_password", {})),
        (["create_database", "shop"], ("POST", "create_database", {"database": "shop"})),
        (["create_database", "shop", "--character-set", "utf8mb4", "--collation",
          "utf8mb4_bin"],
         ("POST", "create_database", {"database": "shop", "character_set": "utf8mb4",
                                      "collation": "utf8mb4_bin"})),
        (["drop_database", "shop"], ("POST", "drop_database", {"database": "shop"})),
        (["list_databases"], ("GET", "list_databases", {})),
        (["list_databases", "1815"], ("GET", "list_databases", {"serviceNodeId": 1815})),
        (["get_agent_log", "1792"],
         ("GET", "get_agent_log", {"serviceNodeId": 1792, "log": "agent", "lines": 100})),
        (["get_agent_log", "1792", "--log", "Slow", "--lines", "20"],
         ("GET", "get_agent_log", {"serviceNodeId": 1792, "log": "slow", "lines": 20})),
        (["sqldump"], ("GET", "sqldump", {})),
        (["backup"], ("POST", "backup", {})),
        (["backup", "--kind", "Incremental"], ("POST", "backup", {"kind": "incremental"})),
        (["list_backups"], ("GET", "list_backups", {})),
        (["delete_backup", "20261207T103000Z-full-3fa2c1"],
         ("POST", "delete_backup", {"id": "20261207T103000Z-full-3fa2c1"})),
        (["delete_backup", "20261207T103000Z-full-3fa2c1", "--with-incrementals"],
         ("POST", "delete_backup", {"id": "20261207T103000Z-full-3fa2c1",
                                    "with_incrementals": True})),
        (["verify_backup", "20261207T103000Z-full-3fa2c1"],
         ("POST", "verify_backup", {"id": "20261207T103000Z-full-3fa2c1"})),
        (["restore_node", "--backup", "20261207T103000Z-full-3fa2c1"],
         ("POST", "restore_node", {"backup": "20261207T103000Z-full-3fa2c1"})),
        (["restore_node", "--time", "2026-12-07 10:00:00"],
         ("POST", "restore_node", {"time": "2026-12-07 10:00:00"})),
        (["restore_node", "--time", "1796637600", "--cloud", "local"],
         ("POST", "restore_node", {"time": "1796637600", "cloud": "local"})),
        (["restore_node", "--backup", "20261207T103000Z-full-3fa2c1", "--cloud", "local"],
         ("POST", "restore_node", {"backup": "20261207T103000Z-full-3fa2c1",
                                   "cloud": "local"})),
        (["sqldump", "shop", "--node", "1815"],
         ("GET", "sqldump", {"database": "shop", "serviceNodeId": 1815})),
    ],
)
def test_command_sends(live: Live, args: list[str], expected: tuple[str, str, Any]) -> None:
    result = live.run(*args)
    assert result.exit_code == 0, result.output
    if expected[1] == "sqldump":
        assert live.sent == sqldump_asks(expected[2])
    else:
        assert live.sent == [expected]
    assert live.recorder.received[0].authorization is None


def test_result_is_pretty_json_in_server_order(live: Live) -> None:
    result = live.run("list_nodes")
    assert result.stdout == '{\n  "serviceNode": [\n    1792\n  ]\n}\n'
    info = live.run("get_service_info").stdout
    assert json.loads(info)["state"] == "RUNNING"
    assert info.index('"type"') < info.index('"state"')  # not sorted


def test_add_node_prints_the_seed_node(live: Live) -> None:
    result = live.run("add_node", "agent")
    assert json.loads(result.stdout) == {"serviceNode": SEED_NODE}
    assert list(json.loads(result.stdout)["serviceNode"]) == ["ip", "state", "id", "name"]


def test_get_log_prints_raw_text(live: Live) -> None:
    result = live.run("getLog")
    assert (result.exit_code, result.stdout) == (0, "first line\nsecond line\n")


def test_options_after_the_method_and_before_host(live: Live) -> None:
    after = live.run("list_nodes", "--timeout", "5", "--table")
    before = live.runner.invoke(cli, ["--table", "--timeout", "5", "127.0.0.1",
                                      str(live.port), "list_nodes"])
    assert after.exit_code == before.exit_code == 0
    assert after.stdout == before.stdout
    assert "1792" in after.stdout and "{" not in after.stdout


# --- errors and exit codes -----------------------------------------------------------


def test_error_reply_exits_1_with_the_servers_text(live: Live) -> None:
    result = live.run("shutdown")
    assert result.exit_code == 1
    assert result.stderr == "Service in wrong state\n"
    assert result.stdout == ""
    assert live.sent == [("POST", "shutdown", {})]


def test_non_digit_id_is_sent_as_given_and_the_server_refuses_it(live: Live) -> None:
    result = live.run("get_node_info", "abc")
    assert live.sent == [("GET", "get_node_info", {"serviceNodeId": "abc"})]
    assert result.exit_code == 1
    assert result.stderr.startswith("Invalid argument: serviceNodeId")


def test_unknown_method_on_the_server_exits_1(live: Live) -> None:
    result = live.run("call", "no_such_method")
    assert result.exit_code == 1
    assert "method not found" in result.stderr


def test_unreachable_manager_exits_3() -> None:
    port = free_port()
    result = CliRunner().invoke(cli, ["127.0.0.1", str(port), "list_nodes"])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Cannot reach the manager at http://127.0.0.1:{port}/")
    assert result.stdout == ""


def test_https_to_a_plain_http_manager_exits_3(live: Live) -> None:
    result = live.run("list_nodes", "--https", "--timeout", "5")
    assert result.exit_code == 3
    assert f"Cannot reach the manager at https://127.0.0.1:{live.port}/" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add_nodes", "x"], "count must be a positive integer"),
        (["add_nodes", "0"], "count must be a positive integer"),
        (["add_nodes", "-3"], "No such option"),
        (["remove_nodes", "--count", "two"], "count must be a positive integer"),
        (["remove_nodes"], "give the node ID to remove, or --count N"),
        (["remove_nodes", "1815", "--count", "2"], "not both"),
        (["delete_nodes"], "give the node ID"),
        (["get_node_info"], "Missing argument 'ID'"),
        (["add_node"], "Missing argument 'FUNCTION'"),
        (["call", "echo", "{bad json"], "params are not valid JSON"),
        (["call", "echo", "[1, 2]"], "params must be a JSON object"),
        (["list_nodes", "--timeout", "0"], "--timeout"),
        (["list_nodes", "extra"], "unexpected extra argument"),
        (["lst_nodes"], "No such command 'lst_nodes'"),
        (["configure_user", "all", " ", "pw"], "USER must not be empty"),
        (["configure_user", "all", "alice", "pw", "--privileges", "SELECT,,INSERT"],
         "--privileges has an empty item"),
        (["configure_user", "all", "alice", "pw", "--privileges", " , "],
         "--privileges must name at least one item"),
        (["configure_user", "all", "alice", "pw", "--host", ""], "--host must not be empty"),
        (["configure_user", "", "alice", "pw"], "a node id must not be empty"),
        (["configure_user", "all"], "Missing argument 'USER'"),
        (["delete_user", "all"], "Missing argument 'USER'"),
        (["set_password"], "Missing argument 'USER'"),
        (["create_database"], "Missing argument 'NAME'"),
        (["create_database", "shop", "--collation", " "], "--collation must not be empty"),
        (["drop_database", ""], "NAME must not be empty"),
        (["get_agent_log"], "Missing argument 'ID'"),
        (["get_agent_log", "1", "--log", "general"], "--log must be one of agent, error, slow"),
        (["get_agent_log", "1", "--lines", "0"], "--lines must be a positive integer"),
        (["send_mysqldump", "all"], "Missing argument 'FILE'"),
        (["load_dump"], "Missing argument 'FILE'"),
        (["sqldump", "shop", "extra"], "unexpected extra argument"),
        (["sqldump", "--node", ""], "a node id must not be empty"),
        (["set_up_replica_master"], "Missing argument 'ID'"),
        (["set_up_replica_slave", ""], "a node id must not be empty"),
        (["get_service_history", "--limit", "0"], "--limit must be a positive integer"),
        (["set_server_configuration"], "Missing argument 'NAME=VALUE...'"),
        (["set_server_configuration", "max_connections"], "options are given as NAME=VALUE"),
        (["set_server_configuration", "=5"], "options are given as NAME=VALUE"),
        (["reset_server_configuration"], "Missing argument 'NAME...'"),
        (["reset_server_configuration", " "], "NAME must not be empty"),
        (["restart_nodes", "1", "2"], "unexpected extra argument"),
        (["backup", "--kind", "differential"], "--kind must be one of full, incremental"),
        (["delete_backup"], "Missing argument 'ID'"),
        (["verify_backup"], "Missing argument 'ID'"),
        (["restore_node"], "give --backup ID"),
        (["restore_node", "--backup", "x", "--time", "1796637600"], "or --time TIME"),
        (["restore_node", "--time", ""], "--time must not be empty"),
        (["restore_node", "--backup", " "], "--backup must not be empty"),
    ],
)
def test_bad_arguments_exit_2_and_send_nothing(live: Live, args: list[str],
                                               message: str) -> None:
    result = live.run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert live.sent == []


def test_bad_port_and_host_exit_2(live: Live) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["127.0.0.1", "http", "list_nodes"]).exit_code == 2
    assert runner.invoke(cli, ["127.0.0.1", "70000", "list_nodes"]).exit_code == 2
    result = runner.invoke(cli, ["127.0.0.1/x", str(live.port), "list_nodes"])
    assert result.exit_code == 2 and "HOST" in result.stderr
    assert live.sent == []


def test_unknown_command_points_to_call(live: Live) -> None:
    result = live.run("migrate_nodes", "3")
    assert result.exit_code == 2
    assert "call migrate_nodes [JSON_PARAMS]" in result.stderr


# --- tokens --------------------------------------------------------------------------


def test_token_from_environment(live: Live) -> None:
    result = live.run("list_nodes", env={"CONPAASSQL_TOKEN": "s3cret-token\n"})
    assert result.exit_code == 0, result.output
    assert live.recorder.received[0].authorization == "Bearer s3cret-token"
    assert "s3cret" not in result.output


def test_token_file_wins_over_environment(live: Live, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    result = live.runner.invoke(
        cli, ["--token-file", str(token_file), "127.0.0.1", str(live.port), "list_nodes"],
        env={"CONPAASSQL_TOKEN": "from-env"})
    assert result.exit_code == 0, result.output
    assert live.recorder.received[0].authorization == "Bearer from-file"


@pytest.mark.parametrize("content", ["", "two words", "tab\there"])
def test_unusable_token_file_exits_2(live: Live, tmp_path: Path, content: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    result = live.run("list_nodes", "--token-file", str(token_file))
    assert result.exit_code == 2
    if content:
        assert content not in result.output  # the token is never echoed
    assert live.sent == []


def test_missing_token_file_exits_2(live: Live, tmp_path: Path) -> None:
    result = live.run("list_nodes", "--token-file", str(tmp_path / "absent"))
    assert result.exit_code == 2
    assert live.sent == []


# --- tables --------------------------------------------------------------------------


def test_table_list_nodes(live: Live) -> None:
    live.run("add_node", "agent")
    result = live.run("list_nodes", "--table")
    assert result.exit_code == 0
    assert "1792" in result.stdout and "1815" in result.stdout
    assert "serviceNode" not in result.stdout


def test_table_get_node_info(live: Live) -> None:
    result = live.run("get_node_info", "1792", "--table")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any("isRunningMySQL" in line and "true" in line for line in lines)
    assert any("ip" in line and "10.1.0.20" in line for line in lines)


def test_table_get_service_info_with_transitions(live: Live) -> None:
    result = live.run("get_service_info", "--table")
    assert result.exit_code == 0
    out = result.stdout
    assert "transitions" in out and "master ready" in out
    assert any("state" in line and "RUNNING" in line for line in out.splitlines())
    assert "reason" in out
    assert "mariadb --ssl --ssl-ca=ca.crt -h 10.1.0.2 -P 3307 -u USER -p" in out
    assert any("writer" in line and "-h 10.1.0.2 -P 3306" in line for line in out.splitlines())


def test_table_get_service_performance(live: Live) -> None:
    result = live.run("get_service_performance", "--table")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "node" in line and "conns" in line)
    assert "qps" in header and "lag s" in header
    assert "role" not in header  # not a figure
    assert any("1792" in line and "40" in line and "7" in line for line in lines)
    assert any("1815" in line and "2.5" in line for line in lines)


def test_table_falls_back_to_json(live: Live) -> None:
    result = live.run("remove_nodes", "1815", "--table")
    assert json.loads(result.stdout) == {"result": "OK"}


# --- help and the renderers on their own ---------------------------------------------


def test_help_lists_every_command_in_one_line() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for command in COMMANDS:
        assert any(line.split()[:1] == [command.name] and command.summary in line
                   for line in lines), command.name
    assert any(line.split()[:1] == ["call"] for line in lines)


def render(tables: Any) -> str:
    assert tables is not None
    buffer = io.StringIO()
    console = Console(file=buffer, width=120)
    for table in tables:
        console.print(table)
    return buffer.getvalue()


def test_nodes_table_with_details() -> None:
    result = {
        "serviceNode": [1792, 1815],
        "nodes": [
            {"id": 1792, "name": "agent-1", "ip": "10.1.0.19", "state": "RUNNING",
             "role": "master", "cloud": "default"},
            {"id": 1815, "name": "agent-2", "ip": "10.1.0.20", "state": "PENDING",
             "cloud": "aws"},
        ],
    }
    text = render(nodes_tables(result))
    header = next(line for line in text.splitlines() if "name" in line)
    assert [word for word in header.replace("┃", " ").split()] == [
        "id", "name", "cloud", "ip", "state", "role"]
    assert "master" in text and "10.1.0.20" in text and "aws" in text


def test_nodes_table_of_several_lists() -> None:
    text = render(nodes_tables({"masters": [1], "slaves": [2, 3]}))
    assert any("3" in line and "slaves" in line for line in text.splitlines())


def test_server_text_is_not_rich_markup() -> None:
    text = render(tables_for("get_node_info", {"serviceNode": {"[b]id": "[/red] [x]"}}))
    assert "[b]id" in text and "[/red] [x]" in text


def test_no_table_for_shapes_without_one() -> None:
    assert tables_for("list_nodes", {"state": "RUNNING"}) is None
    assert tables_for("add_nodes", {"serviceNode": SEED_NODE}) is None
    assert performance_tables({"note": "no figures"}) is None
    assert tables_for("get_node_info", [1, 2]) is None


# --- passwords -----------------------------------------------------------------------


def sent_password(live: Live) -> Any:
    (received,) = live.recorder.received
    return received.params["password"]


@pytest.mark.parametrize("command", [["configure_user", "all", "alice"],
                                     ["set_password", "alice"]])
def test_password_from_the_environment(live: Live, command: list[str]) -> None:
    result = live.run(*command, env={"CONPAASSQL_PASSWORD": "from env pw"})
    assert result.exit_code == 0, result.output
    assert sent_password(live) == "from env pw"
    assert "from env pw" not in result.output


def test_password_argument_wins_over_the_environment(live: Live) -> None:
    result = live.run("set_password", "alice", "given-pw",
                      env={"CONPAASSQL_PASSWORD": "from-env"})
    assert result.exit_code == 0, result.output
    assert sent_password(live) == "given-pw"


def test_password_typed_twice_on_a_terminal(live: Live,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "stdin_is_terminal", lambda: True)
    result = live.runner.invoke(cli, ["127.0.0.1", str(live.port), "configure_user", "all",
                                      "alice"], input="typed-pw\ntyped-pw\n")
    assert result.exit_code == 0, result.output
    assert sent_password(live) == "typed-pw"
    assert "typed-pw" not in result.output
    assert "Password" in result.stderr and "Repeat" in result.stderr
    assert json.loads(result.stdout.strip()) == {"nodes": [1792]}


def test_password_typed_differently_then_nothing_exits_2(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "stdin_is_terminal", lambda: True)
    result = live.runner.invoke(cli, ["127.0.0.1", str(live.port), "set_password", "alice"],
                                input="one-pw\nother-pw\n")
    assert result.exit_code == 2
    assert "no password typed" in result.stderr
    assert "one-pw" not in result.output and "other-pw" not in result.output
    assert live.sent == []


def test_no_password_and_no_terminal_exits_2(live: Live) -> None:
    result = live.run("configure_user", "all", "alice")
    assert result.exit_code == 2
    assert "CONPAASSQL_PASSWORD" in result.stderr and "PASSWORD" in result.stderr
    assert live.sent == []


def test_empty_password_exits_2_and_bad_arguments_come_first(live: Live) -> None:
    result = live.run("set_password", "alice", "")
    assert (result.exit_code, live.sent) == (2, [])
    assert "password must not be empty" in result.stderr
    result = live.run("configure_user", "all", "alice", "--privileges", ",")
    assert result.exit_code == 2 and "--privileges" in result.stderr  # not asked for


def test_password_is_masked_in_the_managers_error(live: Live) -> None:
    result = live.run("configure_user", "all", "weak", "hunter2")
    assert result.exit_code == 1
    assert sent_password(live) == "hunter2"
    assert "hunter2" not in result.output
    assert result.stderr == "Invalid argument: password DETAIL:******** is too weak\n"


# --- uploads -------------------------------------------------------------------------


def write_dump(tmp_path: Path, name: str = "dump.sql", content: bytes = DUMP) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_send_mysqldump_streams_the_file_intact(live: Live, tmp_path: Path) -> None:
    dump = write_dump(tmp_path)
    result = live.run("send_mysqldump", "all", str(dump), "--database", "shop")
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(DUMP).hexdigest()
    assert json.loads(result.stdout) == {"nodes": [1792], "bytes": len(DUMP),
                                         "sha256": digest}
    assert live.manager.uploads == [{"field": "mysqldump", "filename": "dump.sql",
                                     "bytes": len(DUMP), "sha256": digest}]
    # A grant asked first (to send straight to the node): this manager has none to give.
    (grant, received) = live.recorder.received
    assert (grant.method, grant.params) == (
        "grant_load", {"serviceNodeId": "all", "database": "shop", "method": "send_mysqldump"})
    assert (received.method, received.params) == (
        "send_mysqldump", {"serviceNodeId": "all", "database": "shop"})
    assert received.files == {"mysqldump": ("dump.sql", digest)}
    assert result.stderr == ""  # no progress off a terminal


def test_load_dump_sends_gzip_as_it_is(live: Live, tmp_path: Path) -> None:
    packed = gzip.compress(DUMP)
    dump = write_dump(tmp_path, "shop.sql.gz", packed)
    result = live.run("load_dump", str(dump))
    assert result.exit_code == 0, result.output
    assert live.manager.uploads == [{"field": "mysqldump_file", "filename": "shop.sql.gz",
                                     "bytes": len(packed),
                                     "sha256": hashlib.sha256(packed).hexdigest()}]
    assert live.recorder.received[-1].params == {}


def test_upload_node_id_and_standard_input(live: Live) -> None:
    result = live.runner.invoke(cli, ["127.0.0.1", str(live.port), "send_mysqldump", "1792",
                                      "-"], input=DUMP)
    assert result.exit_code == 0, result.output
    assert live.recorder.received[-1].params == {"serviceNodeId": "1792"}
    assert live.manager.uploads[0]["sha256"] == hashlib.sha256(DUMP).hexdigest()
    assert live.manager.uploads[0]["filename"] == "stdin"


@pytest.mark.parametrize("which", ["missing", "directory", "socket"])
def test_unusable_upload_file_exits_2_and_sends_nothing(live: Live, tmp_path: Path,
                                                        which: str) -> None:
    path = tmp_path / "dump.sql"
    if which == "directory":
        path.mkdir()
    elif which == "socket":  # passes the checks, then cannot be opened
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.close()
    result = live.run("load_dump", str(path))
    assert result.exit_code == 2, result.output
    assert "dump.sql" in result.stderr
    assert live.sent == []


def test_upload_to_an_unreachable_manager_exits_3(tmp_path: Path) -> None:
    dump = write_dump(tmp_path)
    result = CliRunner().invoke(cli, ["127.0.0.1", str(free_port()), "load_dump", str(dump)])
    assert result.exit_code == 3
    assert result.stderr.startswith("Cannot reach the manager")


def test_upload_progress_counts_every_byte(live: Live, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "stderr_is_terminal", lambda: True)
    counted: list[int] = []
    original = Meter.advance

    def advance(meter: Any, size: int) -> None:
        counted.append(size)
        original(meter, size)

    monkeypatch.setattr(Meter, "advance", advance)
    dump = write_dump(tmp_path)
    result = live.run("load_dump", str(dump))
    assert result.exit_code == 0, result.output
    assert sum(counted) == len(DUMP) and len(counted) > 1
    assert f"Sent {len(DUMP):,} bytes" in result.stderr and "MB/s" in result.stderr
    assert json.loads(result.stdout)["bytes"] == len(DUMP)  # stdout stays clean


# --- downloads -----------------------------------------------------------------------


def test_sqldump_to_standard_output(live: Live) -> None:
    result = live.run("sqldump", "shop")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == DUMP
    assert result.stderr == ""
    assert live.sent == sqldump_asks({"database": "shop"})


@pytest.mark.parametrize("database", ["shop", "sized"])
def test_sqldump_to_a_file(live: Live, tmp_path: Path, database: str) -> None:
    target = tmp_path / "shop.sql"
    result = live.run("sqldump", database, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == DUMP
    assert [p.name for p in tmp_path.iterdir()] == ["shop.sql"]
    assert result.stdout_bytes == b""


def test_sqldump_progress_and_summary_on_a_terminal(live: Live, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "stderr_is_terminal", lambda: True)
    result = live.run("sqldump", "sized", "--output", str(tmp_path / "d.sql"))
    assert result.exit_code == 0, result.output
    assert f"Received {len(DUMP):,} bytes" in result.stderr and "MB/s" in result.stderr


def test_sqldump_cut_short_removes_the_partial_file(live: Live, tmp_path: Path) -> None:
    target = tmp_path / "shop.sql"
    target.write_bytes(b"-- yesterday's dump\n")
    result = live.run("sqldump", "broken", "-o", str(target))
    assert result.exit_code == 1
    assert "cut short" in result.stderr
    assert target.read_bytes() == b"-- yesterday's dump\n"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["shop.sql"]


def test_sqldump_cut_short_to_standard_output_exits_1(live: Live) -> None:
    result = live.run("sqldump", "broken")
    assert result.exit_code == 1
    assert "cut short" in result.stderr
    assert DUMP.startswith(result.stdout_bytes) and len(result.stdout_bytes) < len(DUMP)


def test_sqldump_error_before_the_stream_exits_1(live: Live, tmp_path: Path) -> None:
    target = tmp_path / "missing.sql"
    result = live.run("sqldump", "missing", "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr == "Invalid argument: database DETAIL:no database missing\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["directory", "no parent"])
def test_sqldump_unusable_output_exits_2_and_sends_nothing(live: Live, tmp_path: Path,
                                                           where: str) -> None:
    target = tmp_path if where == "directory" else tmp_path / "absent" / "d.sql"
    result = live.run("sqldump", "-o", str(target))
    assert result.exit_code == 2, result.output
    assert "--output" in result.stderr
    assert live.sent == []


def test_sqldump_unreachable_manager_exits_3_and_leaves_no_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["127.0.0.1", str(free_port()), "sqldump", "-o",
                                      str(tmp_path / "d.sql")])
    assert result.exit_code == 3
    assert list(tmp_path.iterdir()) == []


# --- timeouts ------------------------------------------------------------------------


def spy_timeouts(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"client": [], "upload": [], "stream": []}
    init, upload, stream = RpcClient.__init__, RpcClient.upload, RpcClient.stream

    def spy_init(self: RpcClient, url: str, **kwargs: Any) -> None:
        seen["client"].append(kwargs["timeout"])
        init(self, url, **kwargs)

    async def spy_upload(self: RpcClient, *args: Any, **kwargs: Any) -> Any:
        seen["upload"].append(kwargs["timeout"])
        return await upload(self, *args, **kwargs)

    def spy_stream(self: RpcClient, *args: Any, **kwargs: Any) -> Any:
        seen["stream"].append(kwargs["timeout"])
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(RpcClient, "__init__", spy_init)
    monkeypatch.setattr(RpcClient, "upload", spy_upload)
    monkeypatch.setattr(RpcClient, "stream", spy_stream)
    return seen


def test_transfers_wait_as_long_as_the_data_unless_told(
        live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = spy_timeouts(monkeypatch)
    dump = write_dump(tmp_path)
    assert live.run("list_nodes").exit_code == 0
    assert live.run("load_dump", str(dump)).exit_code == 0
    assert live.run("sqldump").exit_code == 0
    assert seen == {"client": [30.0, 30.0, 30.0], "upload": [None], "stream": [None]}
    assert live.run("load_dump", str(dump), "--timeout", "600").exit_code == 0
    assert live.runner.invoke(cli, ["--timeout", "7", "127.0.0.1", str(live.port),
                                    "sqldump"]).exit_code == 0
    assert seen["upload"][-1] == 600.0 and seen["stream"][-1] == 7.0


# --- logs and tables of the new methods ----------------------------------------------


def test_get_agent_log_prints_raw_text(live: Live) -> None:
    result = live.run("get_agent_log", "1792", "--log", "error")
    assert (result.exit_code, result.stdout) == (0, "agent started\nmysqld running\n")


def test_table_get_users(live: Live) -> None:
    result = live.run("get_users", "--table")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "user" in line and "grants" in line)
    assert [w for w in header.replace("┃", " ").split()] == [
        "node", "user", "host", "can_login", "grants"]
    assert any("alice" in line and "true" in line and "GRANT SELECT" in line
               for line in lines)
    assert any("GRANT INSERT" in line and "alice" not in line for line in lines)
    assert any("bob" in line and "10.0.0.%" in line and "false" in line for line in lines)
    assert any("1815" in line for line in lines)  # a node without users has a row


def test_table_list_databases(live: Live) -> None:
    result = live.run("list_databases", "--table")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any("shop" in line and "12.3 MB" in line and "7" in line for line in lines)
    assert any("empty" in line and "0 B" in line for line in lines)


def test_user_and_database_tables_fall_back_to_json() -> None:
    assert users_tables({"users": []}) is None
    assert users_tables({"nodes": [{"id": 1, "users": "none"}]}) is None
    assert databases_tables([1, 2]) is None
    text = render(databases_tables({"nodes": [{"id": 2, "databases": [
        {"name": "[b]x", "size_bytes": "?", "tables": None}]}]}))
    assert "[b]x" in text and "?" in text


def test_history_table(live: Live) -> None:
    result = live.run("get_service_history", "--table")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "2012-02-26" in line]
    assert len(rows) == 2
    assert "PROLOGUE" in rows[0] and "1 node(s) added" in rows[0]
    assert "1792" in rows[1] and "is the master" in rows[1]


def test_configuration_table(live: Live) -> None:
    result = live.run("get_server_configuration", "--table")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "innodb_flush_method" in line]
    assert any("MASTER" in row and "O_DIRECT" in row and "yes" in row for row in rows), rows
    assert any("SLAVE" in row and "fsync" in row and "yes" not in row for row in rows), rows
    assert "done" in result.stdout


def test_backups_table(live: Live) -> None:
    result = live.run("list_backups", "--table", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("full-3fa2c1" in line and "done" in line and "0-1-57" in line
               and "12.3 MB" in line and "2026-12-07" in line
               and "ok, 17 tables" in line for line in lines), lines
    assert any("incremental-0b1c2d" in line and "running" in line for line in lines)
    assert sum("restorable" in line for line in lines) == 1
    assert backups_tables({"backups": "none"}) is None
