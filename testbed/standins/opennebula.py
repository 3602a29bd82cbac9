"""A stand-in OpenNebula: its XML-RPC API (``one.vm.allocate``, ``one.vm.info``,
``one.vmpool.info``, ``one.vm.action``) as the OpenNebula XML-RPC reference gives it:
the session string first, replies ``[success, result-or-message, error code, ...]``,
VMs as OpenNebula's VM XML, the error codes of the reference (0x0100 authentication,
0x0400 no such object, 0x0800 action, 0x4000 allocate). Templates are parsed with
OpenNebula's attribute syntax; a VM goes PENDING at allocation and RUNNING when the
test ``deploy``s it (with an address from its network)."""

from __future__ import annotations

import re
import threading
import xmlrpc.server
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

AUTHENTICATION, AUTHORIZATION, NO_EXISTS, ACTION, ALLOCATE = 0x0100, 0x0200, 0x0400, 0x0800, \
    0x4000
#: Attributes OpenNebula keeps in TEMPLATE; any other goes to USER_TEMPLATE.
TEMPLATE_ATTRIBUTES = {"NAME", "CPU", "VCPU", "MEMORY", "OS", "DISK", "NIC", "GRAPHICS",
                       "CONTEXT", "RANK", "REQUIREMENTS"}
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|(\[)|(\])|(=)|(,)|([^\s=,\[\]"]+))')


def parse_template(text: str) -> dict[str, Any]:
    """OpenNebula's template syntax: KEY = value, KEY = "value", KEY = [ K = v, ... ]."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            raise ValueError(f"syntax error near {text[position:position + 20]!r}")
        position = match.end()
        comment, quoted, opening, closing, equals, comma, word = match.groups()
        if comment:
            continue
        if quoted is not None:
            tokens.append(("value", bytes(quoted[1:-1], "utf-8").decode("unicode_escape")))
        elif word is not None:
            tokens.append(("value", word))
        else:
            tokens.append(("mark", opening or closing or equals or comma))
    result: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        key = tokens[index][1].upper()
        if tokens[index][0] != "value" or index + 2 >= len(tokens) + 1 or \
                tokens[index + 1] != ("mark", "="):
            raise ValueError(f"syntax error at {key!r}")
        index += 2
        if tokens[index] == ("mark", "["):
            vector: dict[str, str] = {}
            index += 1
            while tokens[index] != ("mark", "]"):
                if tokens[index] == ("mark", ","):
                    index += 1
                    continue
                name, value = tokens[index][1].upper(), tokens[index + 2][1]
                if tokens[index + 1] != ("mark", "="):
                    raise ValueError(f"syntax error in {key}")
                vector[name] = value
                index += 3
            index += 1
            result[key] = vector
        else:
            result[key] = tokens[index][1]
            index += 1
    return result


#: The seed's agent template file (section 3 of the seed document).
SEED_TEMPLATE = """
NAME      = $NAME
CPU       = $CPU
MEMORY    = $MEM_SIZE
  OS      = [
    $OS
  ]
DISK      = [
  IMAGE_ID = $IMAGE_ID,
  $DISK
]
NIC       = [ NETWORK_ID = $NETWORK_ID ]
GRAPHICS  = [
  type="vnc"
]
CONTEXT   = [
  $CONTEXT
]
RANK      = "- RUNNING_VMS"
"""
#: The seed's [onevm_agent_template] section (its $AGENT_* filled in).
SEED_SECTION = {
    "NAME": "conpaassql_server", "CPU": "0.2", "MEM_SIZE": "256",
    "DISK": "bus=scsi,readonly=no", "OS": "arch=i686,boot = hd, root = hda",
    "IMAGE_ID": "12", "NETWORK_ID": "3",
    "CONTEXT": 'vmid=$VMID,vmname=$NAME,ip_private="$NIC[IP, NETWORK=$NETWORK]",'
               'ip_gateway="10.0.0.1",netmask="255.255.255.0",nameserver="10.0.0.2",'
               'target=sd',
}


@dataclass
class VirtualMachine:
    id: int
    name: str
    template: dict[str, Any]
    state: int = 1  # PENDING
    lcm_state: int = 0
    ip: str | None = None

    def xml(self) -> str:
        def section(values: dict[str, Any]) -> str:
            parts = []
            for key, value in values.items():
                if isinstance(value, dict):
                    parts.append(f"<{key}>{section(value)}</{key}>")
                else:
                    parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
            return "".join(parts)

        template = {k: v for k, v in self.template.items() if k in TEMPLATE_ATTRIBUTES}
        user = {k: v for k, v in self.template.items() if k not in TEMPLATE_ATTRIBUTES}
        if self.ip:
            template["NIC"] = {**template.get("NIC", {}), "IP": self.ip}
        permissions = "".join(f"<{p}>{1 if p.startswith('OWNER') else 0}</{p}>" for p in (
            "OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A", "OTHER_U",
            "OTHER_M", "OTHER_A"))
        return (f"<VM><ID>{self.id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME>"
                f"<GNAME>oneadmin</GNAME><NAME>{escape(self.name)}</NAME>"
                f"<PERMISSIONS>{permissions}</PERMISSIONS><LAST_POLL>0</LAST_POLL>"
                f"<STATE>{self.state}</STATE><LCM_STATE>{self.lcm_state}</LCM_STATE>"
                f"<PREV_STATE>{self.state}</PREV_STATE>"
                f"<PREV_LCM_STATE>{self.lcm_state}</PREV_LCM_STATE><RESCHED>0</RESCHED>"
                f"<STIME>0</STIME><ETIME>0</ETIME><DEPLOY_ID></DEPLOY_ID><MONITORING/>"
                f"<TEMPLATE>{section(template)}</TEMPLATE>"
                f"<USER_TEMPLATE>{section(user)}</USER_TEMPLATE><HISTORY_RECORDS/></VM>")


#: Boots a VM from its template (returns its address) and destroys it.
Booter = Callable[[VirtualMachine], str]
Destroyer = Callable[[VirtualMachine], None]


@dataclass
class OpenNebulaStandIn:
    user: str
    password: str
    max_vms: int = 100
    network: str = "10.11.12"
    vms: dict[int, VirtualMachine] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    boot: Booter | None = None  # set: every VM boots at allocation (a real node)
    destroy: Destroyer | None = None

    def __post_init__(self) -> None:
        self._server = xmlrpc.server.SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False,
                                                        allow_none=True)
        for name in ("one.vm.allocate", "one.vm.info", "one.vmpool.info", "one.vm.action"):
            self._server.register_function(self._method(name), name)
        self._next = 40
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/RPC2"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _method(self, name: str) -> Any:
        def call(session: str, *args: Any) -> list[Any]:
            self.calls.append(name)
            if session != f"{self.user}:{self.password}":
                return [False, f"[{name}] User couldn't be authenticated, aborting call.",
                        AUTHENTICATION, 0]
            handler = getattr(self, "_" + name.split(".", 1)[1].replace(".", "_"))
            return handler(*args)
        return call

    def _vm_allocate(self, text: str, hold: bool) -> list[Any]:
        try:
            template = parse_template(text)
        except (ValueError, IndexError) as exc:
            return [False, f"[one.vm.allocate] Error parsing VM template: {exc}", ALLOCATE, 0]
        if "MEMORY" not in template or "CPU" not in template:
            return [False, "[one.vm.allocate] No MEMORY or CPU in the template", ALLOCATE, 0]
        live = [vm for vm in self.vms.values() if vm.state != 6]
        if len(live) >= self.max_vms:
            return [False, f"[one.vm.allocate] User [0] : limit of {self.max_vms} reached for "
                           "VMS quota in default group.", ALLOCATE, 0]
        vm_id = self._next
        self._next += 1
        vm = VirtualMachine(vm_id, str(template.get("NAME", f"one-{vm_id}")), template)
        self.vms[vm_id] = vm
        if self.boot is not None:
            vm.ip = self.boot(vm)
            vm.state, vm.lcm_state = 3, 3
        return [True, vm_id, 0]

    def _vm_info(self, vm_id: int, decrypt: bool = False) -> list[Any]:
        vm = self.vms.get(vm_id)
        if vm is None:
            return [False, f"[one.vm.info] Error getting virtual machine [{vm_id}].",
                    NO_EXISTS, 0]
        return [True, vm.xml(), 0]

    def _vmpool_info(self, who: int, start: int, end: int, state: int) -> list[Any]:
        chosen = [vm for vm in self.vms.values()
                  if (state == -2 or (state == -1 and vm.state != 6) or vm.state == state)
                  and (start == -1 or vm.id >= start) and (end == -1 or vm.id <= end)]
        return [True, "<VM_POOL>" + "".join(vm.xml() for vm in chosen) + "</VM_POOL>", 0]

    def _vm_action(self, action: str, vm_id: int) -> list[Any]:
        vm = self.vms.get(vm_id)
        if vm is None or vm.state == 6:
            return [False, f"[one.vm.action] Error getting virtual machine [{vm_id}].",
                    NO_EXISTS, 0]
        if action in ("terminate", "terminate-hard"):
            vm.state, vm.lcm_state = 6, 0
            if self.destroy is not None:
                self.destroy(vm)
        elif action in ("reboot", "reboot-hard"):
            if (vm.state, vm.lcm_state) != (3, 3):
                return [False, f"[one.vm.action] Wrong state to perform action {action}",
                        ACTION, 0]
        else:
            return [False, f"[one.vm.action] Unknown action {action}", ACTION, 0]
        return [True, vm_id, 0]

    def vanish(self, vm_id: int) -> None:
        """An administrator deletes the VM (``onevm recover --delete``): it stops and is
        gone from the pool at once, with no action of the manager's."""
        vm = self.vms.pop(vm_id)
        if self.destroy is not None:
            self.destroy(vm)

    def deploy(self, vm_id: int) -> VirtualMachine:
        """The VM boots: ACTIVE/RUNNING, with an address on its network."""
        vm = self.vms[vm_id]
        vm.state, vm.lcm_state, vm.ip = 3, 3, f"{self.network}.{vm_id}"
        return vm
