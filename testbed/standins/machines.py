"""The stand-in clouds' machines: every VM they run is a real node on this host, started
the way the VM's image starts it.

- An OpenNebula VM: OpenNebula writes the VM's CONTEXT as shell variables; the
  image's boot script (``contrib/conpaassql-agent-boot.sh``) turns ours into the
  agent's context file; the agent starts with it. The VM's address is one of
  ``127.0.<subnet>.10-60``.
- An EC2 instance: cloud-init writes the files of the user data (``write_files``);
  the agent's unit starts the agent with the context among them, on the instance's
  own private address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from conpaassql.cloud.base import NodeRequest
from conpaassql.cloud.cloud_init import CONTEXT_PATH
from conpaassql.cloud.local import LocalDriver, stop_node_processes
from conpaassql.config import LocalCloudConfig
from conpaassql.context import NodeContext
from testbed.standins.cloudinit import write_files
from testbed.standins.ec2 import Instance
from testbed.standins.opennebula import VirtualMachine

REPO = Path(__file__).resolve().parents[2]
BOOT_SCRIPT = REPO / "contrib" / "conpaassql-agent-boot.sh"


class Machines:
    """Nodes on this host for the VMs of the stand-in clouds, under ``root``."""

    def __init__(self, root: Path, template_cache: Path, subnet: int,
                 buffer_pool: str = "32M") -> None:
        self.root = root
        self.template_cache = template_cache
        self.subnet = subnet
        self.buffer_pool = buffer_pool
        self.booted: dict[str, tuple[str, str]] = {}  # VM id -> (its address, node ref)

    def _host(self, first: str, last: str) -> LocalDriver:
        return LocalDriver(self.root, LocalCloudConfig(
            first_address=ipaddress.IPv4Address(first),
            last_address=ipaddress.IPv4Address(last), template_cache=self.template_cache,
            mysql_options={"innodb_buffer_pool_size": self.buffer_pool}))

    def _start(self, vm_id: str, context: NodeContext, first: str, last: str) -> str:
        made = asyncio.run(self._host(first, last).create_node(
            NodeRequest(context.node_id, vm_id, context)))
        assert made.ip is not None
        self.booted[vm_id] = (made.ip, made.ref)
        return made.ip

    def boot_opennebula_vm(self, vm: VirtualMachine) -> str:
        """Boot an OpenNebula VM through the image's boot script; its address."""
        directory = self.root / f"vm-{vm.id}"
        directory.mkdir(parents=True)
        context_sh = directory / "context.sh"
        context_sh.write_text("".join(f"{key}={shlex.quote(value)}\n"
                                      for key, value in vm.template["CONTEXT"].items()))
        subprocess.run([str(BOOT_SCRIPT), "--no-start"], check=True, timeout=30,
                       env={**os.environ, "CONTEXT_SH": str(context_sh),
                            "CONTEXT_OUT": str(directory / "context")})
        context = NodeContext.parse((directory / "context").read_text())
        return self._start(f"vm-{vm.id}", context, f"127.0.{self.subnet}.10",
                           f"127.0.{self.subnet}.60")

    def stop_opennebula_vm(self, vm: VirtualMachine) -> None:
        self.stop(f"vm-{vm.id}")

    def boot_ec2_instance(self, instance: Instance) -> None:
        """Boot an EC2 instance from its user data, on its private address."""
        root = self.root / instance.id
        write_files(instance.user_data, root)
        context = NodeContext.parse((root / CONTEXT_PATH.lstrip("/")).read_text())
        self._start(instance.id, context, instance.private_ip, instance.private_ip)

    def stop_ec2_instance(self, instance: Instance) -> None:
        self.stop(instance.id)

    def stop(self, vm_id: str) -> None:
        ip, ref = self.booted.pop(vm_id)
        asyncio.run(self._host(ip, ip).destroy_node(ref))

    def close(self) -> None:
        """Stop every node and remove the machines' directories."""
        nodes = self.root / "nodes"
        if nodes.exists():
            for directory in nodes.iterdir():
                stop_node_processes(directory, grace=5)
        shutil.rmtree(self.root, ignore_errors=True)
