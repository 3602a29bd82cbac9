"""Dumps straight to and from a node with the manager's transfer grant (``rpc.transfer``),
against a stand-in agent served over real TLS with the agent's own gate and
authorizer, and a stand-in manager that grants, relays, or predates grants."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from conpaassql.agent.web import TransferGrants, manager_gate, manager_only
from conpaassql.errors import (
    ForbiddenError,
    InvalidArgumentError,
    MySQLError,
    RemoteError,
    UnreachableError,
)
from conpaassql.manager.authority import Authority
from conpaassql.rpc import bulk, transfer
from conpaassql.rpc.client import RpcClient, form_fields
from conpaassql.rpc.grants import make_transfer_grant
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.streams import ByteStreamResponse, sql_failure_line
from conpaassql.rpc.tls import TlsFiles, dns_name, node_name, server_options
from conpaassql.rpc.types import NoParams, Params, Text
from tests.integration.harness import free_port
from tests.unit.served import served

SERVICE = "aa11bb22"
NODE = 7
BLOCK = b"0123456789abcdef" * 4096  # 64 KiB


class DatabaseParams(Params):
    database: Text | None = None


@dataclass
class Seen:
    """What the stand-ins were asked."""

    agent: list[tuple[str, str | None, Any]] = field(default_factory=list)
    manager: list[str] = field(default_factory=list)


def agent_registry(seen: Seen) -> Registry:
    async def load_dump(params: DatabaseParams, ctx: CallContext) -> dict[str, Any]:
        size = 0
        async for chunk in ctx.files["mysqldump_file"].chunks():
            size += len(chunk)
            if params.database == "early" and size >= 2 * len(BLOCK):
                raise MySQLError("ERROR 1064 (42000) at line 1")
        seen.agent.append(("load_dump", ctx.principal, params.database))
        if params.database == "broken":
            raise RemoteError("MySQL reported an error: ERROR 1064 (42000) at line 3")
        return {"return": "OK", "bytes": size, "sql_bytes": size, "seconds": 0.5,
                "gzip": False}

    async def sqldump(params: DatabaseParams, ctx: CallContext) -> ByteStreamResponse:
        seen.agent.append(("sqldump", ctx.principal, params.database))
        if params.database == "missing":
            raise InvalidArgumentError("database", detail="no database 'missing' on node 7")

        async def chunks() -> AsyncIterator[bytes]:
            for index in range(16):
                if index == 3 and params.database == "cut":
                    raise MySQLError("the dump failed part-way")
                yield BLOCK

        return ByteStreamResponse(chunks(), media_type="application/sql",
                                  failure_line=sql_failure_line)

    async def get_server_state(params: NoParams, ctx: CallContext) -> str:
        return "answered"

    registry = Registry()
    registry.add("load_dump", "UPLOAD", load_dump, DatabaseParams, files=("mysqldump_file",),
                 access="granted")
    registry.add("sqldump", "GET", sqldump, DatabaseParams, access="granted")
    registry.add("get_server_state", "GET", get_server_state, access="manager")
    return registry


@dataclass
class World:
    authority: Authority
    agent_url: str
    seen: Seen
    link_url: str = ""  # where the manager says the agent is
    ca: str = ""  # the CA the manager names (else the service's)
    grants: bool = True  # False: a manager that predates grants
    refuse: bool = False  # True: a manager that refuses the grant (not the call)

    def link(self, method: str) -> dict[str, Any]:
        return {"node": NODE, "url": self.link_url, "method": method,
                "server_name": dns_name(SERVICE, node_name(NODE)),
                "ca": self.ca or self.authority.ca_pem,
                "grant": make_transfer_grant(self.authority.grant_key, NODE, method),
                "headers": {"Content-Disposition": 'attachment; filename="x.sql"'}}

    def grant(self, method: str) -> str:
        return make_transfer_grant(self.authority.grant_key, NODE, method)


def manager_registry(world: World) -> Registry:
    class GrantLoad(DatabaseParams):
        method: Text = "load_dump"

    async def grant_load(params: GrantLoad, ctx: CallContext) -> dict[str, Any]:
        if world.refuse:
            raise ForbiddenError(detail="not grant_load")
        return world.link(params.method)

    async def grant_sqldump(params: DatabaseParams, ctx: CallContext) -> dict[str, Any]:
        if world.refuse:
            raise ForbiddenError(detail="not grant_sqldump")
        return world.link("sqldump")

    async def load_dump(params: DatabaseParams, ctx: CallContext) -> dict[str, Any]:
        await ctx.files["mysqldump_file"].discard()
        world.seen.manager.append("load_dump")
        return {"nodes": [NODE], "via": "manager"}

    async def sqldump(params: DatabaseParams, ctx: CallContext) -> ByteStreamResponse:
        world.seen.manager.append("sqldump")

        async def chunks() -> AsyncIterator[bytes]:
            yield b"-- through the manager\n"

        return ByteStreamResponse(chunks(), media_type="application/sql")

    registry = Registry()
    if world.grants:
        registry.add("grant_load", "POST", grant_load, GrantLoad)
        registry.add("grant_sqldump", "GET", grant_sqldump, DatabaseParams)
    registry.add("load_dump", "UPLOAD", load_dump, DatabaseParams, files=("mysqldump_file",))
    registry.add("sqldump", "GET", sqldump, DatabaseParams)
    return registry


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Authority, str, Seen]]:
    """The stand-in agent of node 7, over TLS, with the agent's gate and authorizer."""
    root = tmp_path_factory.mktemp("pki")
    authority = Authority.load_or_create(root / "ca", SERVICE)
    issued = authority.issue_node(NODE, "127.0.0.1")
    files = TlsFiles(root / "node.crt", root / "node.key", authority.ca_file)
    files.cert.write_text(issued.cert_pem)
    files.key.write_text(issued.key_pem)
    files.key.chmod(0o600)
    seen = Seen()
    grants = TransferGrants(NODE, authority.grant_public_pem)
    app = RpcApp(agent_registry(seen), authorizer=manager_only("s3cret", SERVICE, grants),
                 gate=manager_gate("s3cret", SERVICE, grants)).asgi()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", lifespan="off",
        **server_options(files, client_cert_optional=True)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield authority, f"https://127.0.0.1:{port}/", seen
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def world(agent: tuple[Authority, str, Seen]) -> World:
    authority, url, seen = agent
    seen.agent.clear()
    seen.manager.clear()
    return World(authority, url, seen, link_url=url)


@contextlib.contextmanager
def manager_of(world: World) -> Iterator[str]:
    with served(RpcApp(manager_registry(world)).asgi()) as port:
        yield f"http://127.0.0.1:{port}/"


async def chunks(count: int, taken: list[int] | None = None) -> AsyncIterator[bytes]:
    for _ in range(count):
        if taken is not None:
            taken.append(len(BLOCK))
        yield BLOCK


def load(url: str, database: str | None = None, *, count: int = 10,
         size: int | None = None) -> Any:
    async def once() -> Any:
        params = {} if database is None else {"database": database}
        async with RpcClient(url) as manager:
            return await transfer.upload(manager, "load_dump", params, "mysqldump_file",
                                         "d.sql", chunks(count), size=size)

    return asyncio.run(once())


def export(url: str, database: str = "src") -> tuple[bytes, str | None]:
    async def once() -> tuple[bytes, str | None]:
        async with RpcClient(url) as manager, \
                transfer.stream(manager, "sqldump", {"database": database}) as stream:
            body = b"".join([chunk async for chunk in stream.chunks()])
            return body, stream.headers.get("content-disposition")

    return asyncio.run(once())


def test_a_dump_goes_straight_to_the_node(world: World) -> None:
    with manager_of(world) as url:
        reply = load(url, "db1")
        body, disposition = export(url)
    assert reply == {"nodes": [NODE], "bytes": 10 * len(BLOCK), "sql_bytes": 10 * len(BLOCK),
                     "gzip": False, "seconds": 0.5}
    assert body == 16 * BLOCK
    assert disposition == 'attachment; filename="x.sql"'
    assert world.seen.agent == [("load_dump", "granted", "db1"), ("sqldump", "granted", "src")]
    assert world.seen.manager == []


@pytest.mark.parametrize("known", [True, False])
def test_a_dump_of_known_or_unknown_size(world: World, known: bool) -> None:
    count = 100  # 6.4 MB: many blocks of the sender
    with manager_of(world) as url:
        reply = load(url, "db2", count=count, size=count * len(BLOCK) if known else None)
    assert reply["bytes"] == count * len(BLOCK)
    assert world.seen.agent == [("load_dump", "granted", "db2")]
    assert world.seen.manager == []


def test_an_error_of_the_node_mid_upload_is_its_own(world: World) -> None:
    with manager_of(world) as url, pytest.raises(RemoteError) as raised:
        load(url, "early", count=400)
    assert str(raised.value) == f"MySQL reported an error: ERROR 1064 (42000) at line 1 " \
                                f"(node {NODE})"
    assert world.seen.manager == []


@pytest.mark.parametrize("known", [True, False])
def test_a_refusal_before_the_body_stops_the_sending(world: World, known: bool) -> None:
    link, taken = world.link("load_dump"), []
    size = 4000 * len(BLOCK)  # 256 MiB, if it were all sent

    async def once() -> Any:
        return await bulk.post_form(
            link["url"], form_fields("load_dump", 1, {}), "mysqldump_file", "d.sql",
            chunks(4000, taken), size=size if known else None, token="forged",
            verify=transfer._tls(link), server_name=link["server_name"])

    # The agent answers 401 and hangs up on the body: its reply, or the reset of a
    # connection closed on unread bytes (as with httpx), whichever the client meets first.
    with pytest.raises((RemoteError, UnreachableError)):
        asyncio.run(once())
    assert sum(taken) < size
    assert world.seen.agent == []


def test_the_nodes_error_names_the_node(world: World) -> None:
    with manager_of(world) as url, pytest.raises(RemoteError) as raised:
        load(url, "broken")
    assert str(raised.value) == f"MySQL reported an error: ERROR 1064 (42000) at line 3 " \
                                f"(node {NODE})"


def test_through_the_manager_when_the_node_is_out_of_reach(world: World) -> None:
    world.link_url = f"https://127.0.0.1:{free_port()}/"  # nobody listens there
    with manager_of(world) as url:
        assert load(url)["via"] == "manager"
        assert export(url)[0] == b"-- through the manager\n"
    assert world.seen.manager == ["load_dump", "sqldump"]
    assert world.seen.agent == []


@pytest.mark.parametrize("older", [True, False])
def test_through_the_manager_when_it_grants_nothing(world: World, older: bool) -> None:
    world.grants, world.refuse = not older, not older
    with manager_of(world) as url:
        assert load(url)["via"] == "manager"
        assert export(url)[0] == b"-- through the manager\n"
    assert world.seen.manager == ["load_dump", "sqldump"]


def call_agent(world: World, token: str | None, method: str = "sqldump") -> Any:
    """``method`` of the agent called with ``token`` and no client certificate."""
    link = world.link(method)
    link["grant"] = token

    async def once() -> Any:
        async with transfer.agent_client(link) as agent:
            if method == "sqldump":
                async with agent.stream("sqldump") as stream:
                    return len(b"".join([chunk async for chunk in stream.chunks()]))
            return await agent.call(method, verb="GET")

    return asyncio.run(once())


def test_a_grant_is_taken_once_for_its_method_only(world: World) -> None:
    grant = world.grant("sqldump")
    assert call_agent(world, grant) == 16 * len(BLOCK)
    refused = [grant,  # again
               world.grant("load_dump"),  # another method's
               make_transfer_grant(world.authority.grant_key, NODE + 1, "sqldump"),  # node
               make_transfer_grant(world.authority.grant_key, NODE, "sqldump", ttl=-5),
               grant.replace(":sqldump:", ":load_dump:"),  # forged
               None, "", "s3cret"]
    for token in refused:
        with pytest.raises(RemoteError, match="this agent answers its manager only"):
            call_agent(world, token)
    # A grant opens no method that is not ``granted``.
    with pytest.raises(RemoteError, match="this agent answers its manager only"):
        call_agent(world, world.grant("get_server_state"), "get_server_state")
    assert world.seen.agent == [("sqldump", "granted", None)]


def test_an_export_refused_or_cut_short_is_an_error(world: World) -> None:
    with manager_of(world) as url:
        with pytest.raises(RemoteError) as refused:
            export(url, "missing")
        with pytest.raises(RemoteError, match="was cut short"):
            export(url, "cut")
    assert str(refused.value) == "Invalid argument: database DETAIL:no database 'missing' " \
                                 "on node 7"
    assert world.seen.agent == [("sqldump", "granted", "missing"),
                                ("sqldump", "granted", "cut")]


def test_the_client_checks_the_nodes_certificate(world: World, tmp_path: Path) -> None:
    other = Authority.load_or_create(tmp_path / "other", "cc33dd44")
    world.ca = other.ca_pem  # not the node's CA: nothing is sent there
    with manager_of(world) as url:
        assert load(url)["via"] == "manager"
        assert export(url)[0] == b"-- through the manager\n"
    link = world.link("sqldump")

    async def once() -> None:
        async with transfer.agent_client(link) as agent, agent.stream("sqldump"):
            pass

    with pytest.raises(Exception, match="certificate verify failed"):
        asyncio.run(once())
    assert world.seen.agent == []
