"""The state-changing requests of the pages (POST, CSRF-checked by the guard), each
one call of the manager's API; the answer is JSON for the page's script.

A password is typed twice or generated here (``secrets.token_urlsafe``); a
generated one is in the answer once, for the page to show, and never logged.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conpaassql.gui.context import InputError, whole_number
from conpaassql.gui.pages import gui_of
from conpaassql.rpc.client import RpcClient

Fields = Mapping[str, str]
Action = Callable[[RpcClient, Fields], Awaitable[Mapping[str, Any]]]
#: A switchover waits for the new master to apply everything; a re-copy is quick to ask.
SWITCHOVER_TIMEOUT = 300.0
GENERATED_BYTES = 18


def _text(fields: Fields, name: str, *, required: bool = True) -> str | None:
    value = fields.get(name, "").strip()
    if not value:
        if required:
            raise InputError(f"{name} is empty")
        return None
    return value


def _number(fields: Fields, name: str) -> int:
    return whole_number(fields.get(name), name)


def _password(fields: Fields) -> tuple[str, bool]:
    """The password typed twice, or a generated one (and whether it was generated)."""
    if fields.get("generate") in ("on", "true", "1"):
        return secrets.token_urlsafe(GENERATED_BYTES), True
    password = fields.get("password", "")
    if not password:
        raise InputError("type the password (twice), or have one generated")
    if password != fields.get("password2", ""):
        raise InputError("the two passwords differ")
    return password, False


def _shown_once(generated: bool, password: str, who: str) -> dict[str, Any]:
    return {"secret": {"label": f"password of {who}", "value": password}} if generated else {}


def _user_at(username: str, host: str | None) -> str:
    return f"{username}@{host or '%'}"


# -- nodes --------------------------------------------------------------------


async def add_nodes(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    count = _number(fields, "count")
    params: dict[str, Any] = {"count": count}
    cloud = _text(fields, "cloud", required=False)
    if cloud is not None:
        params["cloud"] = cloud
    answer = await client.post("add_nodes", **params)
    ids = [n["id"] for n in answer.get("nodes", []) if isinstance(n, Mapping)]
    named = ", ".join(str(i) for i in ids)
    return {"message": f"node{'s' if len(ids) > 1 else ''} {named} requested",
            "watch": {"nodes": ids, "until": "RUNNING"}}


async def remove_node(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    node = _number(fields, "id")
    await client.post("remove_nodes", serviceNodeId=node)
    return {"message": f"node {node} is being removed",
            "watch": {"nodes": [node], "until": "gone"}}


async def promote(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    node = _number(fields, "id")
    answer = await client.call("set_up_replica_master", {"id": node},
                               timeout=SWITCHOVER_TIMEOUT)
    return {"message": f"node {answer.get('master', node)} is the master (was node "
                       f"{answer.get('previous', '?')}); writes were blocked for "
                       f"{answer.get('write_block_seconds', '?')} s"}


async def recopy(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    node = _number(fields, "id")
    await client.post("set_up_replica_slave", id=node)
    return {"message": f"node {node} is being copied anew from the master",
            "watch": {"nodes": [node], "until": "RUNNING"}}


async def shutdown(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    answer = await client.post("shutdown")
    return {"message": f"the service is {answer.get('state', 'shutting down')}: every "
                       "node is being destroyed", "watch": {"service": "STOPPED"}}


# -- users --------------------------------------------------------------------


async def create_user(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    username = _text(fields, "username") or ""
    password, generated = _password(fields)
    params: dict[str, Any] = {"serviceNodeId": "all", "username": username,
                              "password": password}
    host = _text(fields, "host", required=False)
    if host is not None:
        params["host"] = host
    database = _text(fields, "database", required=False)
    if database is not None:
        params["database"] = database
    privileges = _text(fields, "privileges", required=False)
    if privileges is not None:
        params["privileges"] = privileges
    answer = await client.post("configure_user", **params)
    who = _user_at(username, answer.get("host", host))
    on = f" on {database}" if database else ""
    verb = "created" if answer.get("created") else "updated"
    return {"message": f"user {who} {verb}{on}", **_shown_once(generated, password, who)}


async def delete_user(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    username = _text(fields, "username") or ""
    host = _text(fields, "host", required=False) or "%"
    await client.post("delete_user", serviceNodeId="all", username=username, host=host)
    return {"message": f"user {_user_at(username, host)} deleted"}


async def set_password(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    username = _text(fields, "username") or ""
    host = _text(fields, "host", required=False) or "%"
    password, generated = _password(fields)
    await client.post("set_password", user=username, password=password, host=host)
    who = _user_at(username, host)
    return {"message": f"new password set for {who}", **_shown_once(generated, password, who)}


async def root_password(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    answer = await client.get("get_password")
    note = answer.get("note") or ""
    return {"message": f"the MySQL root password is shown below ({note})",
            "secret": {"label": "MySQL root password", "value": str(answer.get("password"))}}


# -- databases ----------------------------------------------------------------


async def create_database(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    database = _text(fields, "database") or ""
    params: dict[str, Any] = {"database": database}
    for name in ("character_set", "collation"):
        value = _text(fields, name, required=False)
        if value is not None:
            params[name] = value
    answer = await client.post("create_database", **params)
    charset = answer.get("character_set")
    return {"message": f"database {database} created" + (f" ({charset})" if charset else "")}


async def drop_database(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    database = _text(fields, "database") or ""
    await client.post("drop_database", database=database)
    return {"message": f"database {database} dropped"}


ACTIONS: dict[str, Action] = {
    "add_nodes": add_nodes,
    "remove_node": remove_node,
    "promote": promote,
    "recopy": recopy,
    "shutdown": shutdown,
    "create_user": create_user,
    "delete_user": delete_user,
    "set_password": set_password,
    "root_password": root_password,
    "create_database": create_database,
    "drop_database": drop_database,
}


def _endpoint(name: str, action: Action) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await gui_of(request).act(request, name, action)

    return endpoint


def routes() -> list[Route]:
    return [Route(f"/act/{name}", _endpoint(name, action), methods=["POST"])
            for name, action in ACTIONS.items()]
