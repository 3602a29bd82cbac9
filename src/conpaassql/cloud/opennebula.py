"""OpenNebula through its XML-RPC API (pyone), the seed's DRIVER=OPENNEBULA_XMLRPC.

create = ``one.vm.allocate`` of the seed's agent template filled for the node
(``one_template``); list = ``one.vmpool.info`` filtered to this service's VMs
(the ``CONPAASSQL_SERVICE`` attribute); destroy = ``terminate-hard``; reboot =
``reboot-hard``. OpenNebula's errors (authentication, authorization, quota, a
bad template) come back as ``CloudError`` with OpenNebula's own message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pyone

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.cloud.one_template import NODE_ATTRIBUTE, SERVICE_ATTRIBUTE, render_template
from conpaassql.config import OpenNebulaConfig
from conpaassql.errors import CloudError, ConfigError

log = logging.getLogger(__name__)

#: VM states (OpenNebula's VM_STATE) and, for ACTIVE, its LCM_STATE.
_ACTIVE = 3
_LCM_RUNNING = 3
_PENDING_STATES = {0, 1, 2}  # INIT, PENDING, HOLD
_STOPPED_STATES = {4, 5, 8, 9}  # STOPPED, SUSPENDED, POWEROFF, UNDEPLOYED
_GONE_STATES = {6}  # DONE
_FAILED_LCM = {14, 36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61}  # *_FAILURE


def vm_state(state: int, lcm_state: int) -> CloudNodeState:
    """OpenNebula's (state, LCM state) as a node state; anything else is UNKNOWN."""
    if state in _PENDING_STATES:
        return CloudNodeState.PENDING
    if state == _ACTIVE:
        if lcm_state == _LCM_RUNNING:
            return CloudNodeState.RUNNING
        if lcm_state in _FAILED_LCM:
            return CloudNodeState.UNKNOWN
        return CloudNodeState.PENDING  # PROLOG, BOOT, MIGRATE...: on its way
    if state in _STOPPED_STATES:
        return CloudNodeState.STOPPED
    if state in _GONE_STATES:
        return CloudNodeState.TERMINATED
    return CloudNodeState.UNKNOWN


def _first_ip(template: Any) -> str | None:
    nic = template.get("NIC") if isinstance(template, dict) else None
    if isinstance(nic, list):
        nic = nic[0] if nic else None
    ip = nic.get("IP") if isinstance(nic, dict) else None
    return str(ip) if ip else None


class OpenNebulaDriver(CloudDriver):
    """One OpenNebula endpoint, with the service's credentials."""

    def __init__(self, config: OpenNebulaConfig, service_id: str,
                 cloud_name: str = "opennebula",
                 server: Callable[..., Any] = pyone.OneServer) -> None:
        super().__init__(cloud_name)
        self.config = config
        self.service_id = service_id
        # The session is "user:password", in that order (the seed swapped them).
        self._one = server(config.url, session=f"{config.user}:{config.password}")
        try:
            self._template = config.template_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"[onevm_agent_template] FILENAME {config.template_file}",
                              detail=exc.strerror or str(exc)) from None

    async def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)
        except pyone.OneException as exc:
            raise CloudError(f"OpenNebula refused to {what}: {exc}") from None
        except OSError as exc:
            raise CloudError(f"cannot reach OpenNebula at {self.config.url}: "
                             f"{exc.strerror or exc}") from None

    async def create_node(self, request: NodeRequest) -> CloudNode:
        template = render_template(
            self._template, self.config.template_values,
            origin=str(self.config.template_file), service_id=self.service_id,
            node_id=request.node_id, node_context=request.context.render())
        vm_id = await self._call("create a VM", lambda: self._one.vm.allocate(template, False))
        log.info("OpenNebula VM %s allocated for node %d", vm_id, request.node_id)
        return CloudNode(str(vm_id), request.node_id, request.name, None, CloudNodeState.PENDING)

    async def list_nodes(self) -> list[CloudNode]:
        # -2: every VM the user may see; -1, -1: the whole id range; -1: any state but DONE.
        pool = await self._call("list VMs", lambda: self._one.vmpool.info(-2, -1, -1, -1))
        nodes = []
        for vm in getattr(pool, "VM", None) or []:
            attributes = vm.USER_TEMPLATE if isinstance(vm.USER_TEMPLATE, dict) else {}
            if str(attributes.get(SERVICE_ATTRIBUTE, "")) != self.service_id:
                continue
            node = str(attributes.get(NODE_ATTRIBUTE, ""))
            nodes.append(CloudNode(
                ref=str(vm.ID), node_id=int(node) if node.isdigit() else None,
                name=str(vm.NAME), ip=_first_ip(vm.TEMPLATE),
                state=vm_state(int(vm.STATE), int(vm.LCM_STATE)),
                extra={"state": int(vm.STATE), "lcm_state": int(vm.LCM_STATE)}))
        return nodes

    async def destroy_node(self, ref: str) -> None:
        def terminate() -> None:
            try:
                self._one.vm.action("terminate-hard", int(ref))
            except pyone.OneNoExistsException:
                log.info("OpenNebula VM %s is gone already", ref)

        await self._call(f"terminate VM {ref}", terminate)

    async def reboot_node(self, ref: str) -> None:
        await self._call(f"reboot VM {ref}",
                         lambda: self._one.vm.action("reboot-hard", int(ref)))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "url": self.config.url, "user": self.config.user}
