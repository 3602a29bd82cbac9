"""The manager's backup methods: ``backup``, ``list_backups``, ``delete_backup`` and
``restore_node``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from conpaassql.errors import InvalidArgumentError, MissingArgumentError
from conpaassql.manager import point_in_time, views
from conpaassql.manager.backups import Backups
from conpaassql.manager.schedule import BackupScheduler
from conpaassql.manager.service import NodeService
from conpaassql.manager.verification import Verifications
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import Flag, NoParams, Params, Text


class BackupParams(Params):
    kind: Literal["full", "incremental"] = "full"


class DeleteBackupParams(Params):
    id: Text
    with_incrementals: Flag = False  # delete the incrementals built on it too


#: A backup's id as ``list_backups`` shows it (``20261207T103000Z-full-3fa2c1``).
BackupId = Annotated[str, Field(pattern=r"^\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{6}$", max_length=60)]


class VerifyBackupParams(Params):
    id: BackupId


class RestoreNodeParams(Params):
    backup: Text | None = None
    time: Text | float | int | None = None  # ISO 8601 (UTC when naive) or epoch seconds
    cloud: Text | None = None


class BackupApi:
    def __init__(self, nodes: NodeService) -> None:
        self.backups = Backups(nodes)
        self.verifications = Verifications(self.backups)
        self.scheduler = BackupScheduler(self.backups)

    async def start(self) -> None:
        """After the manager's start: restores resumed, the scheduler running."""
        await self.backups.resume()
        self.scheduler.start()

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.backups.close()

    def register(self, registry: Registry) -> None:
        registry.add("backup", "POST", self.backup, BackupParams)
        registry.add("list_backups", "GET", self.list_backups, NoParams)
        registry.add("delete_backup", "POST", self.delete_backup, DeleteBackupParams)
        registry.add("restore_node", "POST", self.restore_node, RestoreNodeParams)
        registry.add("verify_backup", "POST", self.verify_backup, VerifyBackupParams)

    async def backup(self, params: BackupParams, ctx: CallContext) -> dict[str, Any]:
        """Start a backup; it goes on in the background (``list_backups`` follows it)."""
        record = await self.backups.start(params.kind)
        return {"id": record.id, "kind": record.kind, "state": record.state,
                "node": record.node, "parent": record.parent}

    async def list_backups(self, params: NoParams, ctx: CallContext) -> dict[str, Any]:
        return await self.backups.listing()

    async def delete_backup(self, params: DeleteBackupParams,
                            ctx: CallContext) -> dict[str, Any]:
        deleted = await self.backups.delete(params.id, params.with_incrementals)
        return {"result": "OK", "deleted": deleted}

    async def verify_backup(self, params: VerifyBackupParams,
                            ctx: CallContext) -> dict[str, Any]:
        """Restore a backup on a scratch server and check its tables, in the background
        (``list_backups`` shows the result, as ``verified``)."""
        return await self.verifications.start(params.id)

    async def restore_node(self, params: RestoreNodeParams, ctx: CallContext) -> dict[str, Any]:
        """A new node holding a backup's data, apart from replication."""
        if params.time is not None:
            if params.backup is not None:
                raise InvalidArgumentError("backup", detail="give a backup or a time, not both")
            target = point_in_time.parse_time(params.time)
            node = await self.backups.restore_node_at(target, params.cloud)
        elif params.backup is None:
            raise MissingArgumentError("backup", detail="give a backup id (list_backups) or "
                                       "a time (ISO 8601, UTC when no zone is given, or "
                                       "epoch seconds)")
        else:
            node = await self.backups.restore_node(params.backup, params.cloud)
        shown = views.node_summary(node)
        return {"serviceNode": shown, "nodes": [shown],
                "backup": node.details["restore"]["backup"]}
