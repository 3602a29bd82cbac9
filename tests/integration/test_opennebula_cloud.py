"""A service on OpenNebula, end to end: the manager's OpenNebula driver (pyone, over
XML-RPC) asks the stand-in OpenNebula for VMs from the seed's agent template; the
stand-in "boots" each VM by starting a node with the context it finds in the VM's
CONTEXT (as a prepared image's boot script would); the agents register over mutual
TLS; the manager makes a master and a slave; a removed node's VM is terminated."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.standins.machines import Machines
from testbed.standins.opennebula import SEED_TEMPLATE, OpenNebulaStandIn
from tests.integration import workload
from tests.integration.harness import Manager, claim_subnet, rpc_error, wait_until
from tests.integration.test_node_certificates import verified_sql

pytestmark = pytest.mark.integration


@dataclass
class Cloud:
    standin: OpenNebulaStandIn
    manager: Manager


@pytest.fixture
def cloud(template_cache: Path) -> Iterator[Cloud]:
    machines = Machines(Path(tempfile.mkdtemp(prefix="cq-one-", dir="/tmp")), template_cache,
                        claim_subnet())
    standin = OpenNebulaStandIn(user="oneadmin", password="one-Pa55",
                                boot=machines.boot_opennebula_vm,
                                destroy=machines.stop_opennebula_vm)
    template = machines.root / "agent.template"
    template.write_text(SEED_TEMPLATE)
    manager = Manager(
        template_cache, iaas=(
            "[iaas]\nDRIVER = OPENNEBULA_XMLRPC\n"
            f"OPENNEBULA_URL = {standin.url}\nOPENNEBULA_USER = oneadmin\n"
            "OPENNEBULA_PASSWORD = one-Pa55\nOPENNEBULA_IMAGE_ID = 12\n"
            "OPENNEBULA_SIZE_ID = 1\nOPENNEBULA_NETWORK_ID = 3\n"),
        sections=(
            f"[onevm_agent_template]\nFILENAME = {template}\nNAME = conpaassql_server\n"
            "CPU = 0.2\nMEM_SIZE = 256\nDISK = bus=scsi,readonly=no\n"
            "OS = arch=x86_64,boot = hd\nIMAGE_ID = 12\nNETWORK_ID = 3\n"
            "CONTEXT = vmid=$VMID,ip_private=\"$NIC[IP]\"\n"))
    try:
        manager.start()
        yield Cloud(standin, manager)
    finally:
        manager.close()
        machines.close()
        standin.close()


def test_a_master_and_a_slave_on_opennebula(cloud: Cloud) -> None:
    manager, standin = cloud.manager, cloud.standin
    manager.post("add_nodes", count=2)
    master, slaves = manager.wait_topology(2)
    assert len(standin.vms) == 2 and "one.vm.allocate" in standin.calls
    for node_id in (master, *slaves):
        node = manager.node(node_id)
        vm = next(vm for vm in standin.vms.values()
                  if vm.template.get("CONPAASSQL_NODE") == str(node_id))
        assert node["ip"] == vm.ip  # the address came from OpenNebula's VM record
        assert node["cloud"] == "default" and node["cloud_ref"] == str(vm.id)
        assert vm.name == f"conpaassql_server-{manager.service_id}-{node_id}"
        assert vm.template["CONTEXT"]["VMID"] == "$VMID"  # the seed's own context kept
    info = manager.get("get_service_info")
    assert info["writer"]["id"] == master
    # Verified TLS to every node by the address OpenNebula gave it: its certificate is
    # issued again, naming that address, once its agent registered from it.
    manager.post("configure_user", username=workload.APP_USER, password=workload.APP_PASSWORD)
    for node in manager.get("list_nodes")["nodes"]:
        wait_until(lambda n=node: verified_sql(manager, n["ip"], n["port"]).returncode == 0,
                   60, 0.5, f"a verified connection to node {node['id']}")
    # OpenNebula's refusal reaches the user in its own words; nothing is left behind.
    standin.max_vms = 2
    error = rpc_error(lambda: manager.post("add_nodes", count=1))
    assert error == ("Cloud error: OpenNebula refused to create a VM: [one.vm.allocate] "
                     "User [0] : limit of 2 reached for VMS quota in default group.")
    assert len(standin.vms) == 2 and len(manager.nodes()) == 2
    # A node removed: its VM is terminated in OpenNebula.
    manager.post("remove_nodes", serviceNodeId=slaves[0])
    wait_until(lambda: any(vm.state == 6 for vm in standin.vms.values()), 60, 0.2,
               "the VM terminated")
    assert "one.vm.action" in standin.calls
    wait_until(lambda: manager.node(slaves[0])["state"] == "TERMINATED", 60, 0.2,
               "node terminated")


def test_a_restarted_manager_re_adopts_its_vms_and_a_lost_vm_is_replaced(cloud: Cloud) -> None:
    manager, standin = cloud.manager, cloud.standin
    manager.post("add_nodes", count=2)
    master, slaves = manager.wait_topology(2)
    allocated = standin.calls.count("one.vm.allocate")
    # The manager dies and comes back: it finds its VMs in OpenNebula and keeps them.
    manager.kill()
    manager.start()
    assert manager.wait_topology(2) == (master, slaves)
    assert standin.calls.count("one.vm.allocate") == allocated
    assert "one.vmpool.info" in standin.calls
    # An administrator deletes the master's VM: the slave takes over, and a new VM
    # takes the lost one's place.
    lost = next(vm for vm in standin.vms.values()
                if vm.template.get("CONPAASSQL_NODE") == str(master))
    standin.vanish(lost.id)
    wait_until(lambda: manager.node(master)["state"] == "TERMINATED", 60, 0.2,
               "the lost node terminated")
    history = manager.node(master)["history"]
    assert any(entry.get("to") == "TERMINATED" and "gone from the cloud" in entry["message"]
               for entry in history), history
    new_master, new_slaves = manager.wait_topology(2)
    assert new_master == slaves[0]
    replacement = new_slaves[0]
    assert replacement > max(master, *slaves)
    assert manager.node(replacement)["cloud"] == "default"
    assert standin.calls.count("one.vm.allocate") == allocated + 1
    messages = [entry["message"] for entry in manager.get("get_service_info")["transitions"]]
    assert f"node {master} was lost by cloud default; node {replacement} replaces it" in \
        messages
