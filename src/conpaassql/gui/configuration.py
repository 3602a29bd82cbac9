"""The configuration page: the service's server options, their values on each node,
and the forms that set, reset and roll them out (the manager's configuration API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conpaassql.gui.actions import Fields, _endpoint
from conpaassql.gui.context import InputError, whole_number
from conpaassql.gui.pages import gui_of
from conpaassql.rpc.client import RpcClient

MAX_LINES = 200


def parse_options(text: str) -> dict[str, str]:
    """``NAME=VALUE`` lines (blank ones and ``#`` comments skipped) as options."""
    options: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines()[:MAX_LINES], 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            raise InputError(f"line {number}: give NAME=VALUE, not {line[:60]!r}")
        options[name.strip()] = value.strip()
    if not options:
        raise InputError("give at least one NAME=VALUE line")
    return options


def rows(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per option: its value for the service, then each node's."""
    options = answer.get("options") or {}
    nodes = [n for n in answer.get("nodes") or [] if isinstance(n, Mapping)]
    found = []
    for name in sorted(options):
        found.append({"name": name, "value": options[name], "nodes": [
            {"id": n.get("id"), "value": (n.get("effective") or {}).get(name),
             "pending": name in (n.get("pending_restart") or [])} for n in nodes]})
    return found


async def _configuration(client: RpcClient) -> Mapping[str, Any]:
    answer = await client.get("get_server_configuration")
    nodes = [n for n in answer.get("nodes") or [] if isinstance(n, Mapping)]
    return {"options": rows(answer), "config_nodes": nodes,
            "pending": [n.get("id") for n in nodes if n.get("restart_pending")],
            "restart": answer.get("restart"), "unreachable": answer.get("unreachable") or []}


async def page(request: Request) -> Response:
    return await gui_of(request).page(request, "configuration.html", "configuration",
                                      "Server configuration", _configuration)


async def part(request: Request) -> Response:
    return await gui_of(request).part(request, "_configuration.html", _configuration)


def _apply(fields: Fields) -> str:
    return "next-restart" if fields.get("later") in ("on", "true", "1") else "immediate"


def _restart_note(answer: Mapping[str, Any]) -> str:
    if answer.get("restart") == "started":
        return "; a rolling restart applies the others (see the history)"
    pending = answer.get("pending_restart") or {}
    return f"; a restart is pending on node(s) {', '.join(pending)}" if pending else ""


async def set_configuration(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    options = parse_options(fields.get("options", ""))
    answer = await client.post("set_server_configuration", options=options,
                               apply=_apply(fields))
    applied = answer.get("applied") or []
    return {"message": f"{len(options)} option(s) set; {len(applied)} applied at once"
                       + _restart_note(answer)}


async def reset_option(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    name = (fields.get("name") or "").strip()
    if not name:
        raise InputError("name is empty")
    answer = await client.post("reset_server_configuration", options=[name])
    return {"message": f"{name} reset to the server's default" + _restart_note(answer)}


async def restart_nodes(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    node = fields.get("id", "").strip()
    params = {"serviceNodeId": whole_number(node, "id")} if node else {}
    answer = await client.post("restart_nodes", **params)
    nodes = ", ".join(str(n) for n in answer.get("nodes") or [])
    note = answer.get("note")
    return {"message": f"rolling restart of node(s) {nodes} started"
                       + (f": {note}" if note else "")}


def routes() -> list[Route]:
    actions = {"set_configuration": set_configuration, "reset_option": reset_option,
               "restart_nodes": restart_nodes}
    return [Route("/configuration", page), Route("/part/configuration", part),
            *(Route(f"/act/{name}", _endpoint(name, action), methods=["POST"])
              for name, action in actions.items())]
