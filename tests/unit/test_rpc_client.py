"""``RpcClient`` against a real ``RpcApp`` through httpx's ASGI transport.

A recorder in front of the application keeps what arrived (HTTP method, path,
query, headers), so the tests check what the client puts on the wire as well as
how it reads the replies.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import AliasChoices, Field
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse

from conpaassql.errors import AuthError, RemoteError, UnreachableError, WrongStateError
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.registry import CallContext, Method, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.types import Flag, NodeId, NodeIdOrAll, Params, PositiveInt, Text

URL = "http://manager.test:50000/"
TOKEN = "tok-123"


class NodeParams(Params):
    serviceNodeId: NodeId = Field(
        validation_alias=AliasChoices("serviceNodeId", "serviceNameId", "serviceName"))


class UserParams(Params):
    serviceNodeId: NodeIdOrAll
    username: Text


class DumpParams(Params):
    note: Text = ""
    count: PositiveInt = 1
    replace: Flag = False


async def get_node_info(params: NodeParams, ctx: CallContext) -> Any:
    return {"serviceNode": {"id": params.serviceNodeId, "state": "RUNNING"}}


async def configure_user(params: UserParams, ctx: CallContext) -> Any:
    return {"node": params.serviceNodeId, "user": params.username}


async def load_dump(params: DumpParams, ctx: CallContext) -> Any:
    data = await ctx.files["mysqldump"].read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "note": params.note, "count": params.count, "replace": params.replace}


async def wrong_state(params: Params, ctx: CallContext) -> Any:
    raise WrongStateError()


async def whoami(params: Params, ctx: CallContext) -> Any:
    return {"principal": ctx.principal}


async def jsonrpc2_style(params: Params, ctx: CallContext) -> Any:
    """A peer that answers in JSON-RPC 2.0 form with an error object."""
    return JSONResponse({"jsonrpc": "2.0", "error": {"code": -32099, "message": "boom"},
                         "id": 1})


async def not_json(params: Params, ctx: CallContext) -> Any:
    return PlainTextResponse("<html>proxy error</html>", status_code=502)


class DumpOut(Params):
    size: PositiveInt = 10
    fail: Flag = False


async def sqldump(params: DumpOut, ctx: CallContext) -> Any:
    """A streamed result; with ``fail`` it breaks off after the first chunk."""
    if params.size > 10**6:
        raise WrongStateError(detail="too big")

    async def body() -> Any:
        yield b"x" * params.size
        if params.fail:
            raise RuntimeError("broken off")
        yield b"\n-- done\n"

    return StreamingResponse(body(), media_type="application/sql")


def make_registry() -> Registry:
    registry = Registry()
    registry.add("get_node_info", "GET", get_node_info, NodeParams)
    registry.add("configure_user", "POST", configure_user, UserParams)
    registry.add("load_dump", "UPLOAD", load_dump, DumpParams, files=("mysqldump",))
    registry.add("wrong_state", "POST", wrong_state)
    registry.add("whoami", "POST", whoami, access="manager")
    registry.add("jsonrpc2_style", "POST", jsonrpc2_style)
    registry.add("not_json", "POST", not_json)
    registry.add("sqldump", "GET", sqldump, DumpOut)
    return registry


async def authorizer(request: Any, method: Method) -> str | None:
    if method.access == "user":
        return None
    if request.headers.get("authorization") == f"Bearer {TOKEN}":
        return "manager"
    raise AuthError()


@dataclass
class Recorder:
    """ASGI middleware that remembers each HTTP request's method, query and headers."""

    app: Any
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append({
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            })
        await self.app(scope, receive, send)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(RpcApp(make_registry(), authorizer=authorizer).asgi())


def client_for(recorder: Recorder, token: str | None = None) -> RpcClient:
    return RpcClient(URL, token=token, transport=httpx.ASGITransport(app=recorder))


@pytest.mark.anyio
async def test_call_with_get(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        result = await client.call("get_node_info", {"serviceNameId": "1"}, verb="GET")
    assert result == {"serviceNode": {"id": 1, "state": "RUNNING"}}
    assert recorder.seen[0]["method"] == "GET"
    assert "method=get_node_info" in recorder.seen[0]["query"]
    assert "params=" in recorder.seen[0]["query"]


@pytest.mark.anyio
async def test_get_helper_without_params_reports_missing(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.get("get_node_info")
    assert str(caught.value) == "Missing argument: serviceNodeId"
    assert caught.value.http_status == 200
    assert "params=" not in recorder.seen[0]["query"]


@pytest.mark.anyio
async def test_call_with_post(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        result = await client.call("configure_user", {"serviceNodeId": "all",
                                                      "username": "bob"})
        assert await client.post("configure_user", serviceNodeId=3, username="x") == {
            "node": 3, "user": "x"}
    assert result == {"node": "all", "user": "bob"}
    assert [seen["method"] for seen in recorder.seen] == ["POST", "POST"]
    assert recorder.seen[0]["headers"]["content-type"].startswith("application/json")


@pytest.mark.anyio
async def test_url_without_trailing_slash(recorder: Recorder) -> None:
    client = RpcClient(URL.rstrip("/"), transport=httpx.ASGITransport(app=recorder))
    async with client:
        assert await client.get("get_node_info", serviceNodeId=2)
    assert recorder.seen[0]["path"] == "/"


@pytest.mark.anyio
async def test_error_reply_raises_remote_error(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.post("wrong_state")
    assert str(caught.value) == "Service in wrong state"
    assert caught.value.message == "Service in wrong state"
    assert caught.value.http_status == 200


@pytest.mark.anyio
async def test_protocol_error_carries_http_status(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as unknown:
            await client.post("no_such_method")
        with pytest.raises(RemoteError) as wrong_verb:
            await client.call("configure_user", {"serviceNodeId": 1, "username": "u"},
                              verb="GET")
        with pytest.raises(RemoteError) as unexpected:
            await client.post("configure_user", serviceNodeId=1, username="u", b=1, a=2)
    assert str(unknown.value) == "method not found"
    assert unknown.value.http_status == 404
    assert wrong_verb.value.http_status == 405
    assert str(unexpected.value) == "Unexpected arguments ['a', 'b']"


@pytest.mark.anyio
async def test_jsonrpc2_error_object_is_read(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.post("jsonrpc2_style")
    assert str(caught.value) == "boom"
    assert caught.value.code == -32099


@pytest.mark.anyio
async def test_reply_that_is_not_json(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.post("not_json")
    assert caught.value.http_status == 502
    assert "502" in str(caught.value)


@pytest.mark.anyio
async def test_unreachable_url() -> None:
    async with RpcClient("http://127.0.0.1:1/", timeout=5) as client:
        with pytest.raises(UnreachableError) as caught:
            await client.post("anything")
        with pytest.raises(UnreachableError):
            await client.get("anything")
        with pytest.raises(UnreachableError):
            await client.upload_file("anything", {}, "f", io.BytesIO(b"x"), "f")
        with pytest.raises(UnreachableError):
            async with client.stream("sqldump"):
                pass
    assert "127.0.0.1:1" in str(caught.value)


@pytest.mark.anyio
async def test_bearer_token_is_sent(recorder: Recorder) -> None:
    async with client_for(recorder, token=TOKEN) as client:
        assert await client.post("whoami") == {"principal": "manager"}
        assert await client.get("get_node_info", serviceNodeId=1)
    for seen in recorder.seen:
        assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_no_token_no_header_and_401(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.post("whoami")
    assert caught.value.http_status == 401
    assert str(caught.value) == "Not authorized"
    assert "authorization" not in recorder.seen[0]["headers"]


@pytest.mark.anyio
async def test_upload_sends_the_file_intact(recorder: Recorder) -> None:
    dump = b"-- dump\nCREATE TABLE t (a INT);\n" + bytes(range(256)) * 1000
    async with client_for(recorder, token=TOKEN) as client:
        sent: list[int] = []
        result = await client.upload_file(
            "load_dump", {"note": "first load", "count": 7, "replace": True},
            "mysqldump", io.BytesIO(dump), "dump.sql", progress=sent.append)
    assert result == {"size": len(dump), "sha256": hashlib.sha256(dump).hexdigest(),
                      "note": "first load", "count": 7, "replace": True}
    assert sum(sent) == len(dump)
    seen = recorder.seen[0]
    assert seen["method"] == "POST"
    assert seen["headers"]["content-type"].startswith("multipart/form-data")
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_upload_error_is_raised(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.upload_file("load_dump", {}, "other", io.BytesIO(b"x"), "x")
    assert str(caught.value) == "Missing argument: mysqldump"


@pytest.mark.anyio
async def test_request_ids_increase(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        await client.get("get_node_info", serviceNodeId=1)
        await client.get("get_node_info", serviceNodeId=1)
    assert "id=1" in recorder.seen[0]["query"].split("&")
    assert "id=2" in recorder.seen[1]["query"].split("&")


@pytest.mark.anyio
async def test_download_writes_the_stream(recorder: Recorder) -> None:
    out = io.BytesIO()
    seen: list[int] = []
    async with client_for(recorder) as client:
        written = await client.download("sqldump", {"size": 5000}, out, progress=seen.append)
    assert out.getvalue() == b"x" * 5000 + b"\n-- done\n"
    assert written == sum(seen) == len(out.getvalue())


@pytest.mark.anyio
async def test_stream_error_reply_raises_before_any_byte(recorder: Recorder) -> None:
    out = io.BytesIO()
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError) as caught:
            await client.download("sqldump", {"size": 10**7}, out)
        with pytest.raises(RemoteError) as bad:
            await client.download("sqldump", {"size": "many"}, out)
    assert str(caught.value) == "Service in wrong state DETAIL:too big"
    assert str(bad.value).startswith("Invalid argument: size")
    assert out.getvalue() == b""


@pytest.mark.anyio
async def test_stream_of_a_plain_result_is_an_error(recorder: Recorder) -> None:
    async with client_for(recorder) as client:
        with pytest.raises(RemoteError, match="not a stream"):
            async with client.stream("get_node_info", {"serviceNodeId": 1}):
                pass
