"""conpaassql-client against a real HTTP server speaking the ConPaaS dialect.

The server is the project's own ``RpcApp`` served by uvicorn on 127.0.0.1, with
fake manager handlers returning the seed's results. A recorder in front of it
keeps what arrived on the wire (HTTP method, RPC method, params as sent, the
Authorization header), so the tests check what the client really sends.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from click.testing import CliRunner, Result
from pydantic import ConfigDict
from rich.console import Console

from conpaassql.client.cli import cli
from conpaassql.client.commands import COMMANDS
from conpaassql.client.render import nodes_tables, performance_tables, tables_for
from conpaassql.errors import WrongStateError
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.types import Params

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run-manager-client.sh"
SEED_NODE = {"ip": "10.1.0.20", "state": "PENDING", "id": 1815, "name": "conpaassql-agent"}


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


class FakeManager:
    """Seed-shaped answers; the node list changes as in the seed's session."""

    def __init__(self) -> None:
        self.nodes = [1792]

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
        registry.add("get_users", "GET", self.get_users)
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
        }

    async def get_service_performance(self, params: Params, context: CallContext) -> Any:
        return {
            "queries_per_second": 42.5,
            "nodes": {
                "1792": {"role": "master", "queries_per_second": 40.0, "connections": 7},
                "1815": {"role": "slave", "queries_per_second": 2.5, "lag_seconds": 0},
            },
        }

    async def get_log(self, params: Params, context: CallContext) -> Any:
        return {"log": "first line\nsecond line\n"}

    async def shutdown(self, params: Params, context: CallContext) -> Any:
        raise WrongStateError()

    async def echo(self, params: AnyParams, context: CallContext) -> Any:
        return params.model_dump()

    async def get_users(self, params: Params, context: CallContext) -> Any:
        return {"users": []}


# --- the server and its recorder ----------------------------------------------------


@dataclass
class Received:
    http_method: str
    method: str | None
    params: Any
    authorization: str | None


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
        if scope["method"] == "GET":
            query = parse_qs(scope["query_string"].decode())
            method = query.get("method", [None])[0]
            params = json.loads(query["params"][0]) if "params" in query else {}
        else:
            data = json.loads(body)
            method, params = data.get("method"), data.get("params")
        self.received.append(
            Received(scope["method"], method, params, headers.get("authorization"))
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
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(recorder, log_level="warning", lifespan="off", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Live(port, recorder, manager)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def live(server: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    monkeypatch.delenv("CONPAASSQL_TOKEN", raising=False)
    server.recorder.received.clear()
    server.manager.nodes = [1792]
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
        (["call", "echo", '{"serviceNodeId": 5, "username": "u"}'],
         ("POST", "echo", {"serviceNodeId": 5, "username": "u"})),
        (["call", "echo"], ("POST", "echo", {})),
        (["call", "get_users", "--get"], ("GET", "get_users", {})),
    ],
)
def test_command_sends(live: Live, args: list[str], expected: tuple[str, str, Any]) -> None:
    result = live.run(*args)
    assert result.exit_code == 0, result.output
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
    result = live.run("set_up_replica_master", "3")
    assert result.exit_code == 2
    assert "call set_up_replica_master [JSON_PARAMS]" in result.stderr


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
             "role": "master"},
            {"id": 1815, "name": "agent-2", "ip": "10.1.0.20", "state": "PENDING"},
        ],
    }
    text = render(nodes_tables(result))
    header = next(line for line in text.splitlines() if "name" in line)
    assert [word for word in header.replace("┃", " ").split()] == [
        "id", "name", "ip", "state", "role"]
    assert "master" in text and "10.1.0.20" in text


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
