"""The Backups page: the backups on a timeline, the restorable window, and its
actions (back up now, verify, delete, restore to a time or a backup), each one call
of the manager's API. A started backup, verification or restore is followed by the
page's script through ``/api/backup``, ``/api/verify`` and ``/api/restore`` until it
is done or failed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conpaassql.errors import ConpaasSQLError, RemoteError
from conpaassql.gui import backup_view
from conpaassql.gui.context import InputError, whole_number
from conpaassql.gui.pages import gui_of
from conpaassql.rpc.client import RpcClient

Fields = Mapping[str, str]
KINDS = ("full", "incremental")
#: The restore form's time: what ``<input type="datetime-local" step="1">`` sends.
PICKER_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


# -- what the page reads ------------------------------------------------------------


async def _restores(client: RpcClient) -> list[dict[str, Any]]:
    """The restored nodes, each with its ``get_node_info`` record and progress."""
    listed = await client.get("list_nodes")
    ids = [n["id"] for n in listed.get("nodes", [])
           if isinstance(n, Mapping) and n.get("role") == "restored"]
    answers = await asyncio.gather(
        *(client.get("get_node_info", serviceNodeId=i) for i in ids), return_exceptions=True)
    found = []
    for node_id, answer in zip(ids, answers, strict=True):
        if isinstance(answer, ConpaasSQLError):
            continue  # gone meanwhile
        if isinstance(answer, BaseException):
            raise answer
        node = dict(answer.get("serviceNode") or {"id": node_id})
        settled, ok, text = backup_view.restore_text(node)
        found.append({"node": node, "settled": settled, "ok": ok, "text": text})
    return found


async def _backups(client: RpcClient) -> Mapping[str, Any]:
    listed, info = await asyncio.gather(client.get("list_backups"),
                                        client.get("get_service_info"))
    records = backup_view.backups(listed)
    restorable = listed.get("restorable") if isinstance(listed.get("restorable"),
                                                        Mapping) else {}
    done = [b for b in records if b.restorable]
    return {
        "backups": list(reversed(records)), "done_backups": list(reversed(done)),
        "dependents": {b.id: backup_view.descendants(b.id, records) for b in records},
        "picture": backup_view.timeline(records, restorable),
        "window_from": backup_view.utc(restorable.get("from")),
        "window_to": backup_view.utc(restorable.get("to")),
        "picker_min": backup_view.picker(restorable.get("from")),
        "picker_max": backup_view.picker(restorable.get("to")),
        "archive": backup_view.archive(info),
        "running": any(b.state == "running" for b in records),
        "restores": await _restores(client),
    }


async def page(request: Request) -> Response:
    return await gui_of(request).page(request, "backups.html", "backups", "Backups",
                                      _backups)


async def part(request: Request) -> Response:
    return await gui_of(request).part(request, "_backups.html", _backups)


async def follow_backup(request: Request) -> Response:
    """How a backup goes: ``settled`` once done or failed, ``text`` to show."""
    backup_id = request.query_params.get("id", "")

    async def load(client: RpcClient) -> Mapping[str, Any]:
        listed = backup_view.backups(await client.get("list_backups"))
        found = next((b for b in listed if b.id == backup_id), None)
        if found is None:
            return {"settled": True, "ok": False, "text": f"backup {backup_id} is gone"}
        if found.state == "running":
            progress = found.progress
            return {"settled": False, "ok": False,
                    "text": f"{found.kind} backup {found.id} running on node {found.node} "
                            f"for {found.took}" + (f": {progress.text()}" if progress else ""),
                    "percent": progress.percent if progress else None}
        ok = found.state == "done"
        error = found.extra.get("error")
        text = (f"{found.kind.capitalize()} backup {found.id} done: {found.size} from node "
                f"{found.node} in {found.took}" if ok else
                f"Backup {found.id} {found.state}" + (f": {error}" if error else ""))
        return {"settled": True, "ok": ok, "text": text}

    return await gui_of(request).data(request, load)


async def follow_verify(request: Request) -> Response:
    """How a backup's verification goes: ``settled`` once it is ok or failed."""
    backup_id = request.query_params.get("id", "")

    async def load(client: RpcClient) -> Mapping[str, Any]:
        listed = backup_view.backups(await client.get("list_backups"))
        found = next((b for b in listed if b.id == backup_id), None)
        if found is None:
            return {"settled": True, "ok": False, "text": f"backup {backup_id} is gone"}
        shown = found.verified
        return {"settled": shown.settled, "ok": shown.state == "ok",
                "text": f"backup {found.id}: {shown.text}"}

    return await gui_of(request).data(request, load)


async def follow_restore(request: Request) -> Response:
    """How a restored node's restore goes: ``settled`` once done or failed."""
    try:
        node_id = whole_number(request.query_params.get("node"), "node")
    except InputError as exc:
        return await gui_of(request).data(request, _said(False, str(exc)))

    async def load(client: RpcClient) -> Mapping[str, Any]:
        try:
            answer = await client.get("get_node_info", serviceNodeId=node_id)
        except RemoteError as exc:
            if exc.http_status in (401, 403):
                raise
            return {"settled": True, "ok": False, "text": f"node {node_id}: {exc}"}
        node = dict(answer.get("serviceNode") or {})
        settled, ok, text = backup_view.restore_text(node)
        restore = node.get("restore") if isinstance(node.get("restore"), Mapping) else {}
        progress = backup_view.progress_of((restore or {}).get("progress"))
        return {"settled": settled, "ok": ok, "text": text,
                "percent": progress.percent if progress and not settled else None}

    return await gui_of(request).data(request, load)


def _said(ok: bool, text: str) -> Any:
    async def load(client: RpcClient) -> Mapping[str, Any]:
        return {"settled": True, "ok": ok, "text": text}

    return load


# -- actions ------------------------------------------------------------------------


def restore_time(text: str) -> str:
    """The picker's value (UTC) as ISO 8601 with its zone; ``InputError`` otherwise."""
    value = text.strip()
    for shape in PICKER_FORMATS:
        try:
            moment = datetime.strptime(value, shape).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment.isoformat()
    raise InputError("give the time to restore as YYYY-MM-DDTHH:MM:SS (UTC)")


async def backup(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    kind = fields.get("kind", "full")
    if kind not in KINDS:
        raise InputError("kind must be full or incremental")
    answer = await client.post("backup", kind=kind)
    backup_id = str(answer.get("id"))
    return {"message": f"{kind} backup {backup_id} started on node {answer.get('node')}",
            "follow": {"url": f"/api/backup?id={backup_id}",
                       "busy": f"Backing up ({kind}) into the store"}}


async def verify_backup(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    backup_id = fields.get("id", "").strip()
    if not backup_id:
        raise InputError("id is empty")
    answer = await client.post("verify_backup", id=backup_id)
    return {"message": f"verification of backup {backup_id} started on node "
                       f"{answer.get('node')}",
            "follow": {"url": f"/api/verify?id={backup_id}",
                       "busy": f"Verifying backup {backup_id}"}}


async def delete_backup(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    backup_id = fields.get("id", "").strip()
    if not backup_id:
        raise InputError("id is empty")
    params: dict[str, Any] = {"id": backup_id}
    if fields.get("with_incrementals") in ("on", "true", "1"):
        params["with_incrementals"] = True
    answer = await client.post("delete_backup", **params)
    deleted = [str(d) for d in answer.get("deleted") or [backup_id]]
    return {"message": f"backup{'s' if len(deleted) > 1 else ''} {', '.join(deleted)} "
                       "deleted"}


async def restore_node(client: RpcClient, fields: Fields) -> Mapping[str, Any]:
    when = fields.get("time", "").strip()
    chosen = fields.get("backup", "").strip()
    if bool(when) == bool(chosen):
        raise InputError("choose a time or a backup to restore")
    moment = restore_time(when) if when else None
    params: dict[str, Any] = {"time": moment} if moment else {"backup": chosen}
    answer = await client.post("restore_node", **params)
    node = answer.get("serviceNode") or {}
    node_id = node.get("id", "?")
    # To the second, as the restore shows it: a picker leaves ":00" seconds out.
    what = f"{moment[:19].replace('T', ' ')} UTC" if moment else f"backup {chosen}"
    return {"message": f"node {node_id} added to hold {what} (from backup "
                       f"{answer.get('backup', chosen)})",
            "follow": {"url": f"/api/restore?node={node_id}",
                       "busy": f"Restoring node {node_id} to {what}"}}


ACTIONS = {"backup": backup, "verify_backup": verify_backup, "delete_backup": delete_backup,
           "restore_node": restore_node}


def _action(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await gui_of(request).act(request, name, ACTIONS[name])

    return endpoint


def routes() -> list[Route]:
    return [
        Route("/backups", page),
        Route("/part/backups", part),
        Route("/api/backup", follow_backup),
        Route("/api/verify", follow_verify),
        Route("/api/restore", follow_restore),
        *(Route(f"/act/{name}", _action(name), methods=["POST"]) for name in ACTIONS),
    ]
