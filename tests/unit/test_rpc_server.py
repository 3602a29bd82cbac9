"""The RPC server (``RpcApp``) against the ConPaaS dialect of docs/protocol.md.

A small registry of our own is served through Starlette's ``TestClient``; the
tests send real HTTP requests (GET query, POST JSON, multipart UPLOAD) and read
the status code and the JSON reply, with the error texts of the original service.
``raise_server_exceptions`` stays on, so an exception escaping the application
fails the test instead of hiding behind a generic reply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AliasChoices, Field
from starlette.requests import Request
from starlette.testclient import TestClient

from conpaassql.errors import AuthError, ForbiddenError, WrongStateError
from conpaassql.rpc.registry import CallContext, Method, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.types import MAX_TEXT, Flag, NodeId, NodeIdOrAll, Params, PositiveInt, Text

NODE_ID_ALIASES = AliasChoices("serviceNodeId", "serviceNameId", "serviceName")
AGENT_TOKEN = "agent-secret"
USER_TOKEN = "user-token"
SEED_GET = "/?params=%7B%22serviceNameId%22%3A+%221%22%7D&method=get_node_info&id=1"


# --- the registry under test --------------------------------------------------------


class NodeParams(Params):
    serviceNodeId: NodeId = Field(validation_alias=NODE_ID_ALIASES)


class AddNodesParams(Params):
    function: Text = "agent"
    count: PositiveInt = 1


class ConfigureParams(Params):
    serviceNodeId: NodeIdOrAll = Field(validation_alias=NODE_ID_ALIASES)
    username: Text
    enabled: Flag = True
    count: PositiveInt = 1


class DumpParams(Params):
    note: Text = ""


async def get_node_info(params: NodeParams, ctx: CallContext) -> Any:
    return {"serviceNodeId": params.serviceNodeId}


async def add_nodes(params: AddNodesParams, ctx: CallContext) -> Any:
    return {"function": params.function, "count": params.count}


async def configure_user(params: ConfigureParams, ctx: CallContext) -> Any:
    return {
        "serviceNodeId": params.serviceNodeId,
        "username": params.username,
        "enabled": params.enabled,
        "count": params.count,
    }


async def load_dump(params: DumpParams, ctx: CallContext) -> Any:
    data = await ctx.files["mysqldump"].read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "note": params.note}


async def wrong_state(params: Params, ctx: CallContext) -> Any:
    raise WrongStateError()


async def crash(params: Params, ctx: CallContext) -> Any:
    raise RuntimeError("secret-xyz")


async def register_agent(params: Params, ctx: CallContext) -> Any:
    return {"principal": ctx.principal}


def make_registry() -> Registry:
    registry = Registry()
    registry.add("get_node_info", "GET", get_node_info, NodeParams)
    registry.add("add_nodes", "POST", add_nodes, AddNodesParams)
    registry.add("configure_user", "POST", configure_user, ConfigureParams)
    registry.add("load_dump", "UPLOAD", load_dump, DumpParams, files=("mysqldump",))
    registry.add("wrong_state", "POST", wrong_state)
    registry.add("crash", "POST", crash)
    registry.add("register_agent", "POST", register_agent, access="agent")
    return registry


async def authorizer(request: Request, method: Method) -> str | None:
    """Agent methods need the agent's bearer token; user methods are open."""
    header = request.headers.get("authorization", "")
    if method.access != "agent":
        return "user"
    if header == f"Bearer {AGENT_TOKEN}":
        return "agent"
    if header == f"Bearer {USER_TOKEN}":
        raise ForbiddenError()
    raise AuthError()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = RpcApp(make_registry(), authorizer=authorizer, max_body=4096).asgi()
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def big_client() -> Iterator[TestClient]:
    """The same app with a 1 MiB body limit."""
    app = RpcApp(make_registry(), authorizer=authorizer, max_body=1 << 20).asgi()
    with TestClient(app) as test_client:
        yield test_client


def reply_of(response: Any) -> dict[str, Any]:
    """The JSON body, which must be an object shaped like a ConPaaS reply."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def ok(response: Any) -> Any:
    body = reply_of(response)
    assert response.status_code == 200, body
    assert body["error"] is None, body
    assert set(body) == {"result", "error", "id"}
    return body["result"]


def error_of(response: Any, status: int = 200) -> str:
    body = reply_of(response)
    assert response.status_code == status, (response.status_code, body)
    assert body["result"] is None
    assert isinstance(body["error"], str)
    return str(body["error"])


def post(client: TestClient, method: str, params: Any = None, request_id: Any = 1,
         **extra: Any) -> Any:
    body: dict[str, Any] = {"method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    body.update(extra)
    return client.post("/", json=body)


# --- GET ----------------------------------------------------------------------------


def test_seed_get_request_verbatim(client: TestClient) -> None:
    response = client.get(SEED_GET)
    assert response.status_code == 200
    assert response.json() == {"result": {"serviceNodeId": 1}, "error": None, "id": "1"}


@pytest.mark.parametrize("alias", ["serviceNodeId", "serviceNameId", "serviceName"])
def test_get_accepts_every_node_id_alias(client: TestClient, alias: str) -> None:
    response = client.get("/", params={"method": "get_node_info", "id": "7",
                                       "params": json.dumps({alias: 12})})
    assert ok(response) == {"serviceNodeId": 12}
    assert response.json()["id"] == "7"


def test_get_method_may_also_be_posted(client: TestClient) -> None:
    assert ok(post(client, "get_node_info", {"serviceNodeId": 3})) == {"serviceNodeId": 3}


def test_get_without_params_is_missing_argument(client: TestClient) -> None:
    response = client.get("/", params={"method": "get_node_info", "id": "1"})
    assert error_of(response) == "Missing argument: serviceNodeId"


# --- POST ---------------------------------------------------------------------------


def test_seed_post_body(client: TestClient) -> None:
    body = b'{"params": {"function": "agent"}, "method": "add_nodes", "id": "1"}'
    response = client.post("/", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json() == {"result": {"function": "agent", "count": 1}, "error": None,
                               "id": "1"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json-rpc", "application/jsonrequest",
     "application/json; charset=utf-8", None],
)
def test_post_content_types(client: TestClient, content_type: str | None) -> None:
    body = json.dumps({"method": "add_nodes", "params": {"count": 2}, "id": 5}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/", content=body, headers=headers)
    assert ok(response) == {"function": "agent", "count": 2}
    assert response.json()["id"] == 5


def test_post_without_params_uses_defaults(client: TestClient) -> None:
    assert ok(post(client, "add_nodes")) == {"function": "agent", "count": 1}
    response = client.post("/", json={"method": "add_nodes", "params": None, "id": 1})
    assert ok(response) == {"function": "agent", "count": 1}


def test_id_is_echoed_whatever_its_json_type(client: TestClient) -> None:
    for request_id in ["abc", 42, None, [1, 2], {"a": 1}, 1.5]:
        response = post(client, "add_nodes", {}, request_id)
        ok(response)
        assert response.json()["id"] == request_id


# --- parameter validation -----------------------------------------------------------


def test_decimal_string_is_accepted_as_id(client: TestClient) -> None:
    result = ok(post(client, "configure_user", {"serviceNodeId": "12", "username": "u"}))
    assert result["serviceNodeId"] == 12
    assert isinstance(result["serviceNodeId"], int)


@pytest.mark.parametrize("value", ["all", "ALL", " all "])
def test_all_is_accepted_for_node_id_or_all(client: TestClient, value: str) -> None:
    result = ok(post(client, "configure_user", {"serviceName": value, "username": "u"}))
    assert result["serviceNodeId"] == "all"


def test_all_is_refused_where_only_an_id_fits(client: TestClient) -> None:
    text = error_of(post(client, "get_node_info", {"serviceNodeId": "all"}))
    assert text.startswith("Invalid argument: serviceNodeId DETAIL:")


@pytest.mark.parametrize("value", [True, False, 0, -1, 2**31, "abc", "1.5", 1.5, "", None,
                                   [1], {"a": 1}, "0x10", "١٢"])
def test_bad_node_ids_are_refused(client: TestClient, value: Any) -> None:
    text = error_of(post(client, "get_node_info", {"serviceNodeId": value}))
    assert text.startswith("Invalid argument: serviceNodeId DETAIL:"), text
    assert len(text) > len("Invalid argument: serviceNodeId DETAIL:")


def test_largest_id_is_accepted(client: TestClient) -> None:
    assert ok(post(client, "get_node_info", {"serviceNodeId": 2**31 - 1})) == {
        "serviceNodeId": 2**31 - 1}


def test_missing_argument(client: TestClient) -> None:
    assert error_of(post(client, "get_node_info", {})) == "Missing argument: serviceNodeId"
    assert error_of(post(client, "configure_user", {"serviceNodeId": 1})) == (
        "Missing argument: username")


def test_unexpected_arguments_are_named_sorted(client: TestClient) -> None:
    response = post(client, "get_node_info", {"serviceNodeId": 1, "b": 1, "a": 2})
    assert error_of(response) == "Unexpected arguments ['a', 'b']"


def test_missing_wins_over_unexpected(client: TestClient) -> None:
    response = post(client, "get_node_info", {"zzz": 1})
    assert error_of(response) == "Missing argument: serviceNodeId"


def test_wrong_type_names_the_argument(client: TestClient) -> None:
    text = error_of(post(client, "configure_user", {"serviceNodeId": 1, "username": 5}))
    assert text.startswith("Invalid argument: username DETAIL:")


def test_nul_in_text_is_refused(client: TestClient) -> None:
    text = error_of(post(client, "configure_user",
                         {"serviceNodeId": 1, "username": "ro\x00ot"}))
    assert text.startswith("Invalid argument: username DETAIL:")
    assert "NUL" in text


def test_text_length_bound(client: TestClient) -> None:
    longest = "x" * MAX_TEXT
    result = ok(post(client, "configure_user", {"serviceNodeId": 1, "username": longest}))
    assert result["username"] == longest
    text = error_of(post(client, "configure_user",
                         {"serviceNodeId": 1, "username": longest + "x"}))
    assert text.startswith("Invalid argument: username DETAIL:")


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), ("true", True), ("false", False), ("yes", True),
    ("off", False), ("1", True), ("0", False),
])
def test_flag_values(client: TestClient, value: Any, expected: bool) -> None:
    params = {"serviceNodeId": 1, "username": "u", "enabled": value}
    assert ok(post(client, "configure_user", params))["enabled"] is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, None])
def test_bad_flag_values(client: TestClient, value: Any) -> None:
    params = {"serviceNodeId": 1, "username": "u", "enabled": value}
    assert error_of(post(client, "configure_user", params)).startswith(
        "Invalid argument: enabled DETAIL:")


@pytest.mark.parametrize("params", [[1, 2], "serviceNodeId=1", 12, True])
def test_params_not_an_object_post(client: TestClient, params: Any) -> None:
    text = error_of(post(client, "get_node_info", params))
    assert text.startswith("Invalid argument: params")


@pytest.mark.parametrize("params", ["[1, 2]", '"x"', "12"])
def test_params_not_an_object_get(client: TestClient, params: str) -> None:
    response = client.get("/", params={"method": "get_node_info", "params": params})
    assert error_of(response).startswith("Invalid argument: params")


def test_get_params_that_are_not_json(client: TestClient) -> None:
    response = client.get("/", params={"method": "get_node_info", "params": "{nope"})
    assert error_of(response, 400)


# --- protocol errors ----------------------------------------------------------------


def test_get_without_method(client: TestClient) -> None:
    assert error_of(client.get("/?id=1"), 400) == "Did not specify method"
    assert error_of(client.get("/?method=&id=1"), 400) == "Did not specify method"


def test_post_without_method(client: TestClient) -> None:
    response = client.post("/", json={"params": {}, "id": 9})
    assert error_of(response, 400) == "Did not specify method"
    assert response.json()["id"] == 9


def test_unknown_method(client: TestClient) -> None:
    assert error_of(post(client, "no_such_method", {}), 404) == "method not found"
    assert error_of(client.get("/?method=no_such_method&id=1"), 404) == "method not found"


def test_method_that_is_not_a_string(client: TestClient) -> None:
    assert error_of(post(client, 12, {}), 400)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/nope", "/api/", "/index.html"])
def test_unknown_path_is_404_json(client: TestClient, path: str) -> None:
    assert error_of(client.get(path), 404)
    assert error_of(client.post(path, json={"method": "add_nodes"}), 404)


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_verbs_are_405_json(client: TestClient, verb: str) -> None:
    response = client.request(verb, "/", content=b'{"method": "add_nodes"}')
    assert error_of(response, 405)


@pytest.mark.parametrize("verb", ["TRACE", "PROPFIND"])
def test_unlisted_verbs_are_405_json(client: TestClient, verb: str) -> None:
    assert error_of(client.request(verb, "/"), 405)


def test_post_method_via_get_is_405(client: TestClient) -> None:
    text = error_of(client.get("/?method=add_nodes&id=1"), 405)
    assert "POST" in text


def test_upload_method_via_json_is_405(client: TestClient) -> None:
    assert "UPLOAD" in error_of(post(client, "load_dump", {}), 405)
    assert error_of(client.get("/?method=load_dump&id=1"), 405)


def test_post_method_via_upload_is_405(client: TestClient) -> None:
    response = client.post("/", data={"method": "add_nodes"},
                           files={"mysqldump": ("d.sql", b"x")})
    assert error_of(response, 405)


@pytest.mark.parametrize("body", [b"{", b'{"method": "add_nodes",}', b"", b"nul",
                                  b"{'method': 'add_nodes'}"])
def test_malformed_json_is_400_json(client: TestClient, body: bytes) -> None:
    response = client.post("/", content=body, headers={"Content-Type": "application/json"})
    assert error_of(response, 400)


@pytest.mark.parametrize("body", [b"[]", b"[1]", b'"add_nodes"', b"12", b"null"])
def test_body_not_an_object_is_400(client: TestClient, body: bytes) -> None:
    assert error_of(client.post("/", content=body), 400)


@pytest.mark.parametrize("body", [b'{"method": "add_nodes", "id": "\xff\xfe"}', b"\xff\xfe\xfd",
                                  b'{"method": "add\xc3"}'])
def test_non_utf8_body_is_400(client: TestClient, body: bytes) -> None:
    assert error_of(client.post("/", content=body), 400)


def test_body_over_max_body_is_413(client: TestClient) -> None:
    body = json.dumps({"method": "add_nodes", "params": {"function": "x" * 5000}}).encode()
    assert error_of(client.post("/", content=body), 413)


def test_chunked_body_over_max_body_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"method": "add_nodes", "params": {"function": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    assert error_of(client.post("/", content=chunks()), 413)


def test_body_just_under_max_body_is_served(client: TestClient) -> None:
    body = json.dumps({"method": "add_nodes", "params": {"function": "x" * 1000}}).encode()
    assert len(body) <= 4096
    assert ok(client.post("/", content=body))["function"] == "x" * 1000


def test_deeply_nested_json_body_is_400(client: TestClient, big_client: TestClient) -> None:
    assert error_of(client.post("/", content=b"[" * 4000), 400)
    assert error_of(big_client.post("/", content=b"[" * 100000), 400)
    body = b'{"method": "add_nodes", "params": ' + b"[" * 100000
    assert error_of(big_client.post("/", content=body), 400)
    closed = b'{"method": "add_nodes", "params": ' + b"[" * 50000 + b"]" * 50000 + b"}"
    assert error_of(big_client.post("/", content=closed), 400)


def test_deeply_nested_json_in_get_params_is_400(client: TestClient) -> None:
    response = client.get("/", params={"method": "get_node_info", "params": "[" * 15000})
    assert error_of(response, 400)


def test_huge_integer_literal_is_refused_with_json(big_client: TestClient) -> None:
    digits = "1" * 5000  # over Python's 4300-digit limit for int()
    response = big_client.post("/", content=f'{{"method": "add_nodes", "id": {digits}}}'.encode())
    assert error_of(response, 400)
    response = big_client.get("/", params={"method": "get_node_info",
                                           "params": f'{{"serviceNodeId": {digits}}}'})
    assert error_of(response, 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_id_gets_a_400_reply(client: TestClient, literal: str) -> None:
    body = f'{{"method": "add_nodes", "params": {{}}, "id": {literal}}}'.encode()
    assert error_of(client.post("/", content=body), 400)


def test_lone_surrogate_id_gets_a_reply(client: TestClient) -> None:
    body = b'{"method": "add_nodes", "params": {}, "id": "\\ud800"}'
    response = client.post("/", content=body)
    assert response.status_code in {200, 400}
    reply_of(response)


# --- handler errors and authorization -----------------------------------------------


def test_wrong_state_error(client: TestClient) -> None:
    assert error_of(post(client, "wrong_state", {})) == "Service in wrong state"


def test_unexpected_exception_is_unknown_error_without_its_text(client: TestClient) -> None:
    response = post(client, "crash", {})
    assert error_of(response) == "Unknown error."
    assert "secret-xyz" not in response.text
    assert "RuntimeError" not in response.text


def test_authorizer_refusal_is_401_json(client: TestClient) -> None:
    assert error_of(post(client, "register_agent", {}), 401) == "Not authorized"
    response = client.post("/", json={"method": "register_agent", "id": 1},
                           headers={"Authorization": "Bearer wrong"})
    assert error_of(response, 401) == "Not authorized"


def test_authorizer_forbidden_is_403_json(client: TestClient) -> None:
    response = client.post("/", json={"method": "register_agent", "id": 1},
                           headers={"Authorization": f"Bearer {USER_TOKEN}"})
    assert error_of(response, 403) == "Forbidden"


def test_authorizer_principal_reaches_handler(client: TestClient) -> None:
    response = client.post("/", json={"method": "register_agent", "id": 1},
                           headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
    assert ok(response) == {"principal": "agent"}


# --- UPLOAD -------------------------------------------------------------------------


def test_upload_reads_the_file_intact(client: TestClient) -> None:
    dump = b"CREATE TABLE t (a INT);\nINSERT INTO t VALUES (1);\n" + bytes(range(256)) * 4
    response = client.post("/", data={"method": "load_dump", "id": "3", "note": "hello"},
                           files={"mysqldump": ("dump.sql", dump, "application/sql")})
    assert ok(response) == {"size": len(dump), "sha256": hashlib.sha256(dump).hexdigest(),
                            "note": "hello"}
    assert response.json()["id"] == "3"


def test_upload_params_field_as_json(client: TestClient) -> None:
    response = client.post("/", data={"method": "load_dump", "params": '{"note": "n"}'},
                           files={"mysqldump": ("dump.sql", b"")})
    assert ok(response)["note"] == "n"
    assert ok(response)["size"] == 0


def test_upload_larger_than_max_body_is_fine(client: TestClient) -> None:
    dump = b"x" * 100_000
    response = client.post("/", data={"method": "load_dump"},
                           files={"mysqldump": ("dump.sql", dump)})
    assert ok(response)["sha256"] == hashlib.sha256(dump).hexdigest()


def test_upload_over_max_upload_is_413() -> None:
    app = RpcApp(make_registry(), max_upload=1000).asgi()
    with TestClient(app) as small:
        response = small.post("/", data={"method": "load_dump"},
                              files={"mysqldump": ("dump.sql", b"x" * 1001)})
        assert error_of(response, 413)
        response = small.post("/", data={"method": "load_dump"},
                              files={"mysqldump": ("dump.sql", b"x" * 1000)})
        assert ok(response)["size"] == 1000


@pytest.mark.parametrize("content_type", ["multipart/form-data",
                                          "multipart/form-data; boundary=b"])
def test_malformed_multipart_is_400_json(client: TestClient, content_type: str) -> None:
    response = client.post("/", content=b"garbage", headers={"Content-Type": content_type})
    assert error_of(response, 400)


def test_registering_a_name_twice_is_refused() -> None:
    registry = make_registry()
    with pytest.raises(ValueError):
        registry.add("add_nodes", "POST", add_nodes, AddNodesParams)


def test_upload_without_the_file(client: TestClient) -> None:
    response = client.post("/", data={"method": "load_dump"},
                           files={"other": ("x", b"x")})
    # The missing file is reported before the unexpected one.
    assert error_of(response) == "Missing argument: mysqldump"


def test_upload_with_no_file_at_all(client: TestClient) -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nload_dump\r\n"
            b"--b--\r\n")
    response = client.post("/", content=body,
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert error_of(response) == "Missing argument: mysqldump"


def test_upload_with_an_extra_file(client: TestClient) -> None:
    response = client.post("/", data={"method": "load_dump"},
                           files={"mysqldump": ("d.sql", b"x"), "zeta": ("z", b"z"),
                                  "alpha": ("a", b"a")})
    assert error_of(response) == ("Unexpected arguments ['alpha', 'zeta'] DETAIL:the file "
                                  "must be the last part of the form")


def test_upload_with_a_stray_file_first(client: TestClient) -> None:
    response = client.post("/", data={"method": "load_dump"},
                           files={"zeta": ("z", b"z"), "mysqldump": ("d.sql", b"x")})
    assert error_of(response) == "Unexpected arguments ['zeta']"


def test_upload_file_before_method(client: TestClient) -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"mysqldump\"; filename=\"d\"\r\n"
            b"\r\nxyz\r\n--b\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\n"
            b"load_dump\r\n--b--\r\n")
    response = client.post("/", content=body,
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert error_of(response, 400) == "Did not specify method"


def test_upload_cut_short_is_400(client: TestClient) -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nload_dump\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"mysqldump\"; filename=\"d\"\r\n"
            b"\r\nCREATE TABLE")
    response = client.post("/", content=body,
                           headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert "ended early" in error_of(response, 400)


def test_upload_with_an_extra_plain_field(client: TestClient) -> None:
    response = client.post("/", data={"method": "load_dump", "bogus": "1"},
                           files={"mysqldump": ("d.sql", b"x")})
    assert error_of(response) == "Unexpected arguments ['bogus']"


def test_upload_without_method(client: TestClient) -> None:
    response = client.post("/", data={"note": "x"}, files={"mysqldump": ("d.sql", b"x")})
    assert error_of(response, 400) == "Did not specify method"


# --- JSON-RPC 2.0 -------------------------------------------------------------------


def test_jsonrpc2_success_shape(client: TestClient) -> None:
    response = client.post("/", json={"jsonrpc": "2.0", "method": "add_nodes",
                                      "params": {"count": 3}, "id": 11})
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "result": {"function": "agent", "count": 3},
                               "id": 11}


def jsonrpc2_error(response: Any) -> dict[str, Any]:
    body = reply_of(response)
    assert body["jsonrpc"] == "2.0"
    assert "result" not in body
    error = body["error"]
    assert isinstance(error, dict)
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    return error


def test_jsonrpc2_unknown_method(client: TestClient) -> None:
    response = client.post("/", json={"jsonrpc": "2.0", "method": "nope", "id": 1})
    error = jsonrpc2_error(response)
    assert error["code"] == -32601
    assert error["message"] == "method not found"
    assert response.json()["id"] == 1


@pytest.mark.parametrize(("params", "message"), [
    ({}, "Missing argument: serviceNodeId"),
    ({"serviceNodeId": 1, "x": 1}, "Unexpected arguments ['x']"),
    ({"serviceNodeId": "x"}, None),
    ([1], None),
])
def test_jsonrpc2_bad_params(client: TestClient, params: Any, message: str | None) -> None:
    response = client.post("/", json={"jsonrpc": "2.0", "method": "get_node_info",
                                      "params": params, "id": "a"})
    error = jsonrpc2_error(response)
    assert error["code"] == -32602
    if message is not None:
        assert error["message"] == message
    else:
        assert error["message"].startswith("Invalid argument: ")


def test_jsonrpc2_handler_errors_have_codes(client: TestClient) -> None:
    error = jsonrpc2_error(client.post("/", json={"jsonrpc": "2.0", "method": "wrong_state",
                                                  "id": 1}))
    assert error["message"] == "Service in wrong state"
    crashed = client.post("/", json={"jsonrpc": "2.0", "method": "crash", "id": 1})
    error = jsonrpc2_error(crashed)
    assert error["message"] == "Unknown error."
    assert "secret-xyz" not in crashed.text


def test_jsonrpc2_missing_method(client: TestClient) -> None:
    response = client.post("/", json={"jsonrpc": "2.0", "id": 4})
    assert response.status_code == 400
    error = jsonrpc2_error(response)
    assert error["message"] == "Did not specify method"


# --- property: whatever arrives, a JSON reply comes back ----------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
FIELD_NAMES = ["serviceNodeId", "serviceNameId", "serviceName", "function", "count",
               "username", "enabled", "note"]
PARAMS = JSON_VALUES | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8),
                                       JSON_VALUES, max_size=5)
METHOD_NAMES = st.sampled_from([m.name for m in make_registry()]) | st.text(max_size=20)


@pytest.fixture(scope="module")
def open_client() -> Iterator[TestClient]:
    with TestClient(RpcApp(make_registry()).asgi()) as test_client:
        yield test_client


@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHOD_NAMES, params=PARAMS, request_id=JSON_SCALARS, as_get=st.booleans(),
       version=st.sampled_from([None, "2.0", "1.0"]))
def test_any_request_gets_a_json_reply(open_client: TestClient, method: str, params: Any,
                                       request_id: Any, as_get: bool,
                                       version: str | None) -> None:
    if as_get:
        query = {"method": method, "params": json.dumps(params)}
        response = open_client.get("/", params=query)
    else:
        body: dict[str, Any] = {"method": method, "params": params, "id": request_id}
        if version is not None:
            body["jsonrpc"] = version
        response = open_client.post("/", json=body)
    assert response.status_code in {200, 400, 404, 405, 413}
    body = reply_of(response)
    assert ("result" in body) or ("error" in body)
    if body.get("error") is not None:
        assert body.get("result") is None
        error = body["error"]
        assert isinstance(error, str | dict)
    else:
        assert response.status_code == 200


def test_upload_with_too_many_or_too_big_fields_is_413(client: TestClient) -> None:
    many = {f"f{i}": "x" for i in range(70)}
    response = client.post("/", data={"method": "load_dump", **many},
                           files={"mysqldump": ("d.sql", b"x")})
    assert "more than 64 parts" in error_of(response, 413)
    # Every field within the limit, all of them together over it (max_body is 4096).
    wide = {f"f{i}": "y" * 1000 for i in range(6)}
    response = client.post("/", data={"method": "load_dump", **wide},
                           files={"mysqldump": ("d.sql", b"x")})
    assert "Form fields larger than 4096 bytes" in error_of(response, 413)
