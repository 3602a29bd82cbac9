"""The pages (GET): overview, nodes, logs, users and databases, data; the pieces
of them that refresh on their own; the JSON their script polls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conpaassql.gui import timeline, topology, views
from conpaassql.gui.context import Gui, InputError, whole_number
from conpaassql.rpc.client import RpcClient

LOGS = ("agent", "error", "slow")
DEFAULT_LINES = 200
MAX_LINES = 10_000


def gui_of(request: Request) -> Gui:
    gui: Gui = request.app.state.gui
    return gui


# -- what each page reads -----------------------------------------------------


async def _summary(client: RpcClient) -> Mapping[str, Any]:
    info = await client.get("get_service_info")
    readers = [r for r in info.get("readers") or [] if isinstance(r, Mapping)]
    nodes = await views.node_states(client)
    return {"info": info, "writer": info.get("writer"), "readers": readers,
            "picture": topology.picture(nodes, readers),
            "endpoint_commands": views.endpoint_commands(info.get("endpoints")),
            "writer_command": views.connect_command(info.get("writer")),
            "reader_commands": [(r, views.connect_command(r)) for r in readers]}


async def _timeline(client: RpcClient) -> Mapping[str, Any]:
    history = await views.history(client)
    return {"events": timeline.events(history)[:80], "band": timeline.band(history),
            "kinds": timeline.KINDS, "marked": timeline.MARKED}


async def _overview(client: RpcClient) -> Mapping[str, Any]:
    return {**(await _summary(client)), **(await _timeline(client))}


async def _nodes(client: RpcClient) -> Mapping[str, Any]:
    return {"nodes": await views.node_rows(client)}


async def _nodes_page(client: RpcClient) -> Mapping[str, Any]:
    info = await client.get("get_service_info")
    return {"clouds": views.clouds(info), **(await _nodes(client))}


async def _users(client: RpcClient) -> Mapping[str, Any]:
    return {"users": await views.users(client)}


async def _databases(client: RpcClient) -> Mapping[str, Any]:
    return {"databases": await views.databases(client)}


async def _users_page(client: RpcClient) -> Mapping[str, Any]:
    return {**(await _users(client)), **(await _databases(client))}


async def _status(client: RpcClient) -> Mapping[str, Any]:
    return {"info": await client.get("get_service_info")}


async def _metrics(client: RpcClient) -> Mapping[str, Any]:
    return await views.metrics(client)


async def _node_states(client: RpcClient) -> Mapping[str, Any]:
    info = await client.get("get_service_info")
    return {"state": info.get("state"), "nodes": await views.watched_states(client)}


# -- pages --------------------------------------------------------------------


async def overview(request: Request) -> Response:
    return await gui_of(request).page(request, "overview.html", "overview", "Overview",
                                      _overview)


async def nodes(request: Request) -> Response:
    return await gui_of(request).page(request, "nodes.html", "nodes", "Nodes", _nodes_page)


async def users(request: Request) -> Response:
    return await gui_of(request).page(request, "users.html", "users", "Users & databases",
                                      _users_page)


async def data(request: Request) -> Response:
    return await gui_of(request).page(request, "data.html", "data", "Data", _databases)


def _lines(text: str | None) -> int:
    """How many lines of a log: the default when not given; ``InputError`` if not a
    whole number."""
    if not (text or "").strip():
        return DEFAULT_LINES
    return max(1, min(whole_number(text, "lines"), MAX_LINES))


def _node(text: str | None) -> int | None:
    """The node whose log is asked for, or None for the manager's."""
    if (text or "").strip() in ("", "manager"):
        return None
    try:
        return whole_number(text, "node")
    except InputError:
        raise InputError("node must be a node's number, or manager") from None


async def logs(request: Request) -> Response:
    """The manager's log, or a node's agent, error or slow log."""
    query = request.query_params
    which = query.get("which", "agent")
    which = which if which in LOGS else "agent"
    try:
        lines = _lines(query.get("lines"))
        node_id = _node(query.get("node"))
    except InputError as exc:
        return gui_of(request).render(request, "failed.html", 400, error=str(exc),
                                      title="Logs", active="nodes", failed=True,
                                      back="/nodes")

    async def load(client: RpcClient) -> Mapping[str, Any]:
        if node_id is None:
            answer = await client.get("getLog", lines=lines)
        else:
            answer = await client.get("get_agent_log", serviceNodeId=node_id, log=which,
                                      lines=lines)
        listed = await client.get("list_nodes")
        return {"log": str(answer.get("log", "")),
                "node_ids": [n.get("id") for n in listed.get("nodes", [])]}

    title = "Manager log" if node_id is None else f"Node {node_id}: {which} log"
    return await gui_of(request).page(
        request, "logs.html", "nodes", title, load, node=node_id, which=which, lines=lines,
        logs=LOGS)


# -- pieces and data ----------------------------------------------------------


def _part(template: str, load: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        return await gui_of(request).part(request, template, load)

    return endpoint


def _json(load: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        return await gui_of(request).data(request, load)

    return endpoint


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/nodes", nodes),
        Route("/logs", logs),
        Route("/users", users),
        Route("/data", data),
        Route("/part/status", _part("_status.html", _status)),
        Route("/part/summary", _part("_summary.html", _summary)),
        Route("/part/timeline", _part("_timeline.html", _timeline)),
        Route("/part/nodes", _part("_nodes.html", _nodes)),
        Route("/part/users", _part("_users.html", _users)),
        Route("/part/databases", _part("_databases.html", _databases)),
        Route("/api/metrics", _json(_metrics)),
        Route("/api/nodes", _json(_node_states)),
    ]
