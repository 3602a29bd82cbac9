"""Every node's certificate names the addresses clients reach its server by.

A node is created with a certificate that names only the node (its address is
not known yet on most clouds). Once it registers, and whenever the routers'
names change, the manager issues it again with the node's address and every
router's names and addresses, and pushes it (``install_certificate``): the agent
serves it at once, in mysqld and on its own port. Each heartbeat tells which
names the node's certificate holds, so a node that missed a push (it was down,
or its agent started again with its first certificate) gets it at its next one.
The certificate's subject and its DNS name ``node-N.<service id>.conpaassql`` are
the node's identity for the manager's mutual TLS, and never change.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any

from conpaassql.domain.node import Node
from conpaassql.errors import ConpaasSQLError
from conpaassql.manager.routers import Routers
from conpaassql.manager.service import NodeService
from conpaassql.protocol.agent import CertificateRequest
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.certificates import name_set
from conpaassql.rpc.tls import dns_name, node_name

log = logging.getLogger(__name__)

#: Seconds before a node whose heartbeat shows other names is sent a certificate
#: again (its agent may have failed to take the last, or reported before it did).
RETRY_AFTER = 30.0
PUSH_TIMEOUT = 15.0


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Certificates:
    def __init__(self, nodes: NodeService, routers: Routers) -> None:
        self.nodes = nodes
        self.rt = nodes.rt
        self.routers = routers
        self._locks: dict[int, asyncio.Lock] = {}
        self._pushed: dict[int, frozenset[str]] = {}  # the names last installed
        self._tried: dict[int, float] = {}  # when a heartbeat last led to a push

    def wanted(self, node: Node) -> frozenset[str]:
        """The names node ``node``'s certificate should hold."""
        own = dns_name(self.rt.store.service_id, node_name(node.id))
        return name_set([own, *([node.ip] if node.ip else []), *self.routers.names()])

    def check(self, node: Node, report: StateReport) -> None:
        """On a heartbeat: push the node a certificate if its own lacks a name (in the
        background; at most once per ``RETRY_AFTER`` seconds)."""
        wanted = self.wanted(node)
        if report.tls_names is not None and name_set(report.tls_names) == wanted:
            self._pushed[node.id] = wanted
            return
        lock = self._locks.get(node.id)
        if node.ip is None or not node.state.is_live or (lock is not None and lock.locked()):
            return
        if time.monotonic() - self._tried.get(node.id, -RETRY_AFTER) < RETRY_AFTER:
            return
        self._tried[node.id] = time.monotonic()
        self.nodes.spawn(self.push(node.id, again=True), f"certificate of node {node.id}")

    async def push(self, node_id: int, *, again: bool = False) -> str | None:
        """Issue node ``node_id``'s certificate with the names it lacks and install it;
        the reason on failure (None: installed, or nothing to do)."""
        lock = self._locks.setdefault(node_id, asyncio.Lock())
        async with lock:
            node = self.rt.store.get_node(node_id)
            if node is None or not node.state.is_live:
                return None  # removed meanwhile
            wanted = self.wanted(node)
            if node.ip is None or (not again and self._pushed.get(node_id) == wanted):
                return None
            own = dns_name(self.rt.store.service_id, node_name(node.id))
            issued = self.rt.authority.issue_node(
                node.id, ips=tuple(sorted(n for n in wanted if _is_ip(n))),
                hosts=tuple(sorted(n for n in wanted if not _is_ip(n) and n != own)))
            try:
                reply = await self.rt.agents.install_certificate(
                    node, CertificateRequest(cert=issued.cert_pem, key=issued.key_pem),
                    timeout=PUSH_TIMEOUT)
            except ConpaasSQLError as exc:
                log.warning("node %d did not take its new certificate: %s", node_id, exc)
                return str(exc)[:300]
            self._pushed[node_id] = wanted
            self._tried[node_id] = time.monotonic()  # a heartbeat made before is no news
            names = ", ".join(sorted(wanted - {own}))
            later = "" if reply.mysqld_reloaded else " (mysqld takes it at its next start)"
            self.rt.store.record_event(
                f"node {node_id}: certificate issued again, naming {names}{later}", node_id)
            return None

    async def push_all(self) -> dict[str, Any]:
        """Every registered node's certificate with the names it lacks, pushed now."""
        nodes = [n for n in self.nodes.live_nodes() if n.ip and n.registered_at is not None]
        answers = await asyncio.gather(*(self.push(n.id) for n in nodes))
        return {"installed": [n.id for n, a in zip(nodes, answers, strict=True) if a is None],
                "failed": {str(n.id): a for n, a in zip(nodes, answers, strict=True)
                           if a is not None}}
