"""The front-end's manager clients under concurrent requests: a client replaced
while requests use it (the token file changed, a session's client pushed out) stays
open until they are done, and no client is left open behind.

The manager is a stand-in speaking the ConPaaS dialect (the project's own
``RpcApp``) on 127.0.0.1, served by uvicorn in a thread; it can hold the calls made
with one token until the test lets them go, so that they are in flight for sure.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conpaassql.gui.app import create_app
from conpaassql.gui.config import GuiConfig
from conpaassql.gui.link import MAX_SESSION_CLIENTS, ManagerLink
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.server import RpcApp
from conpaassql.rpc.types import Params
from tests.unit.served import served


class Gate:
    """Holds the ``get_service_info`` calls made with one token until opened."""

    def __init__(self) -> None:
        self.token: str | None = None
        self.arrived = 0
        self.opened = threading.Event()
        self._lock = threading.Lock()

    def hold(self, token: str) -> None:
        self.token, self.arrived = token, 0
        self.opened.clear()

    async def pass_through(self, token: str | None) -> None:
        if token is None or token != self.token:
            return
        with self._lock:
            self.arrived += 1
        while not self.opened.is_set():
            await asyncio.sleep(0.005)

    async def wait_for(self, count: int) -> None:
        """Until ``count`` calls are held (the test's side)."""
        while self.arrived < count:
            await asyncio.sleep(0.005)


class StandIn:
    """A manager's ``get_service_info`` and ``list_nodes``, each telling the token
    it was called with."""

    def __init__(self) -> None:
        self.gate = Gate()

    @staticmethod
    def _token(ctx: CallContext) -> str | None:
        header = ctx.headers.get("authorization", "")
        return header.removeprefix("Bearer ") or None

    async def get_service_info(self, params: Params, ctx: CallContext) -> Any:
        token = self._token(ctx)
        await self.gate.pass_through(token)
        return {"state": "RUNNING", "token": token}

    async def list_nodes(self, params: Params, ctx: CallContext) -> Any:
        return {"nodes": [{"id": 1, "state": "RUNNING", "role": "master",
                           "token": self._token(ctx)}]}

    def registry(self) -> Registry:
        registry = Registry()
        registry.add("get_service_info", "GET", self.get_service_info)
        registry.add("list_nodes", "GET", self.list_nodes)
        return registry


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[StandIn, int]]:
    manager = StandIn()
    with served(RpcApp(manager.registry()).asgi()) as port:
        try:
            yield manager, port
        finally:
            manager.gate.opened.set()  # nothing held when the server stops


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingLink(ManagerLink):
    """The link, keeping every client it made (to see that none is left open)."""

    def __init__(self, config: GuiConfig) -> None:
        super().__init__(config)
        self.made: list[RpcClient] = []

    def _new(self, token: str | None) -> RpcClient:
        client = super()._new(token)
        self.made.append(client)
        return client


def is_closed(client: RpcClient) -> bool:
    return client._http.is_closed


def new_token(path: Path, token: str) -> None:
    """The token file replaced (a new inode, as ``conpaassql token rotate`` does)."""
    spare = path.with_suffix(".new")
    spare.write_text(token + "\n", encoding="utf-8")
    os.replace(spare, path)


def with_token_file(port: int, directory: Path, token: str) -> GuiConfig:
    """A front-end's configuration for the stand-in, with a token file."""
    token_file = directory / "api_token"
    new_token(token_file, token)
    return GuiConfig(manager_host="127.0.0.1", manager_port=port, token_file=token_file)


@pytest.mark.anyio
async def test_pages_in_flight_keep_their_client_across_a_token_file_change(
        standin: tuple[StandIn, int], tmp_path: Path) -> None:
    manager, port = standin
    config = with_token_file(port, tmp_path, "first-token")
    app = create_app(config)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5000",
                                 timeout=60) as browser:
        manager.gate.hold("first-token")
        # /api/nodes makes two calls on one client: get_service_info (held), list_nodes
        early = [asyncio.create_task(browser.get("/api/nodes")) for _ in range(6)]
        await manager.gate.wait_for(6)
        new_token(tmp_path / "api_token", "second-token")
        late = await asyncio.gather(*(browser.get("/api/nodes") for _ in range(3)))
        manager.gate.opened.set()
        answers = await asyncio.gather(*early)
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert answer.json()["nodes"][0]["token"] == "first-token"
        for answer in late:
            assert answer.status_code == 200, answer.text
            assert answer.json()["nodes"][0]["token"] == "second-token"
    await app.state.gui.link.aclose()


@pytest.mark.anyio
async def test_concurrent_rebuilds_make_one_client_and_leave_none_open(
        standin: tuple[StandIn, int], tmp_path: Path) -> None:
    manager, port = standin
    link = CountingLink(with_token_file(port, tmp_path, "one"))

    async def page() -> tuple[str, str]:
        async with link.client() as client:
            info = await client.get("get_service_info")
            listed = await client.get("list_nodes")
        return info["token"], listed["nodes"][0]["token"]

    manager.gate.hold("one")
    first = [asyncio.create_task(page()) for _ in range(4)]
    await manager.gate.wait_for(4)
    new_token(tmp_path / "api_token", "two")
    second = await asyncio.gather(*(page() for _ in range(8)))
    assert not is_closed(link.made[0])  # four pages still use it
    manager.gate.opened.set()
    assert await asyncio.gather(*first) == [("one", "one")] * 4
    assert second == [("two", "two")] * 8
    assert len(link.made) == 2  # eight requests saw the change: one new client
    assert is_closed(link.made[0]) and not is_closed(link.made[1])
    await link.aclose()
    assert all(is_closed(client) for client in link.made)


@pytest.mark.anyio
async def test_a_session_client_pushed_out_stays_open_while_in_use(
        standin: tuple[StandIn, int]) -> None:
    manager, port = standin
    link = CountingLink(GuiConfig(manager_host="127.0.0.1", manager_port=port))

    async def page(token: str) -> tuple[str, str]:
        async with link.client(token) as client:
            info = await client.get("get_service_info")
            listed = await client.get("list_nodes")
        return info["token"], listed["nodes"][0]["token"]

    manager.gate.hold("user-0")
    held = asyncio.create_task(page("user-0"))
    await manager.gate.wait_for(1)
    others = [f"user-{n}" for n in range(1, MAX_SESSION_CLIENTS + 3)]
    assert await asyncio.gather(*(page(token) for token in others)) == \
        [(token, token) for token in others]
    assert not is_closed(link.made[0])  # pushed out, in use
    manager.gate.opened.set()
    assert await held == ("user-0", "user-0")
    assert is_closed(link.made[0])
    assert sum(not is_closed(client) for client in link.made) == MAX_SESSION_CLIENTS
    await link.aclose()
    assert all(is_closed(client) for client in link.made)
