"""The manager's ``register_router`` and what ``get_service_info`` tells of routers."""

from __future__ import annotations

from typing import Any

from conpaassql.manager.certificates import Certificates
from conpaassql.manager.routers import RegisterRouterParams, Routers
from conpaassql.manager.service import NodeService
from conpaassql.rpc.registry import CallContext, Registry

UNCHANGED = ("name", "writer", "readers", "hosts")


class RouterApi:
    def __init__(self, nodes: NodeService) -> None:
        self.nodes = nodes
        self.routers = Routers(nodes.rt.store, nodes.rt.config.router)
        self.certificates = Certificates(nodes, self.routers)

    def register(self, registry: Registry) -> None:
        registry.add("register_router", "POST", self.register_router, RegisterRouterParams)

    async def register_router(self, params: RegisterRouterParams,
                              ctx: CallContext) -> dict[str, Any]:
        """A router says where it listens (again: its record is updated); every node's
        certificate is issued again if it adds names or addresses."""
        before = {r.get("name"): r for r in self.routers.registered()}.get(params.name)
        record, new_names = self.routers.register(params)
        if before is None or any(before.get(key) != record[key] for key in UNCHANGED):
            done = "registered" if before is None else "updated"
            writer, readers = _address(record["writer"]), _address(record["readers"])
            self.nodes.rt.store.record_event(
                f"router {params.name} {done}: writer {writer}, readers {readers}")
        pushed: dict[str, Any] = {"installed": [], "failed": {}}
        if new_names:
            pushed = await self.certificates.push_all()
        return {"result": "OK", "router": record, "endpoints": self.routers.endpoints(),
                "certificates": pushed}

    def service_info(self) -> dict[str, Any]:
        """``endpoints`` (the writer and readers addresses, or None) and ``routers``."""
        return {"endpoints": self.routers.endpoints(), "routers": self.routers.known()}


def _address(endpoint: dict[str, Any]) -> str:
    host = str(endpoint["host"])
    return f"[{host}]:{endpoint['port']}" if ":" in host else f"{host}:{endpoint['port']}"
