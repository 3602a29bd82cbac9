"""The manager's side of the agent RPC: one client per node, authenticated."""

from __future__ import annotations

import ssl
from typing import Any

from conpaassql.domain.node import Node
from conpaassql.errors import UnreachableError
from conpaassql.rpc.client import ClientVerb, RpcClient
from conpaassql.rpc.tls import dns_name, node_name


class AgentLink:
    """Calls the agents of the service over mutual TLS, with the service's credential.

    Each node is reached at its address and must present the certificate issued
    to that very node (``node-N.<service id>.conpaassql``).
    """

    def __init__(self, secret: str, tls: ssl.SSLContext, service_id: str,
                 timeout: float = 10.0) -> None:
        self._secret = secret
        self._tls = tls
        self._service_id = service_id
        self._timeout = timeout
        self._clients: dict[str, RpcClient] = {}

    def client(self, node: Node) -> RpcClient:
        url = node.agent_url
        if url is None:
            raise UnreachableError(f"node {node.id}", detail="its address is not known yet")
        key = f"{node.id} {url}"
        if key not in self._clients:
            self._clients[key] = RpcClient(
                url, token=self._secret, timeout=self._timeout, verify=self._tls,
                server_name=dns_name(self._service_id, node_name(node.id)))
        return self._clients[key]

    async def call(self, node: Node, method: str, params: dict[str, Any] | None = None,
                   *, verb: ClientVerb = "POST", timeout: float | None = None) -> Any:
        return await self.client(node).call(method, params, verb=verb, timeout=timeout)

    async def server_state(self, node: Node, timeout: float) -> dict[str, Any]:
        """The agent's ``get_server_state`` report (the liveness probe)."""
        result = await self.call(node, "get_server_state", verb="GET", timeout=timeout)
        report = result.get("return") if isinstance(result, dict) else None
        if not isinstance(report, dict):
            raise UnreachableError(f"node {node.id}", detail="malformed state report")
        return report

    async def forget(self, node: Node) -> None:
        key = f"{node.id} {node.agent_url}"
        if key in self._clients:
            await self._clients.pop(key).aclose()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
