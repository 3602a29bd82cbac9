"""A service across two clouds, end to end: the local cloud (``[iaas]``) and EC2
through Apache Libcloud (``[iaas_aws]``), against a stand-in EC2 (moto's EC2 API in
server mode). The stand-in's hypervisor boots each instance from its user data the
way cloud-init would (``write_files``) and starts a node with the context it finds,
on the instance's private address. The agents register over mutual TLS; the master
on one cloud replicates to a slave on the other; an instance the cloud loses is
replaced; a removed node's instance is terminated."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.standins.ec2 import KEY, SECRET, Ec2StandIn
from testbed.standins.machines import Machines
from tests.integration.harness import Manager, claim_subnet, rpc_error, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Clouds:
    manager: Manager
    ec2: Ec2StandIn


@pytest.fixture
def clouds(template_cache: Path) -> Iterator[Clouds]:
    subnet = claim_subnet()
    machines = Machines(Path(tempfile.mkdtemp(prefix="cq-ec2-", dir="/tmp")), template_cache,
                        subnet)
    ec2 = Ec2StandIn(subnet=subnet, boot=machines.boot_ec2_instance,
                     destroy=machines.stop_ec2_instance)
    manager = Manager(template_cache, sections=(
        "[iaas_aws]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\n"
        f"KEY = {KEY}\nSECRET = {SECRET}\nREGION = us-east-1\nENDPOINT = {ec2.url}\n"
        "DRIVER_OPTIONS = signature_version=4\n"
        f"IMAGE = {ec2.image}\nSIZE = t3.micro\nNETWORK = {ec2.subnet}\n"
        f"SECURITY_GROUPS = {ec2.security_group}\nKEY_NAME = operators\n"))
    try:
        manager.start()
        yield Clouds(manager, ec2)
    finally:
        manager.close()
        ec2.close()
        machines.close()


def instance_of(ec2: Ec2StandIn, node_id: int) -> dict[str, object]:
    return next(item for item in ec2.instances()
                if {"Key": "conpaassql-node", "Value": str(node_id)} in item.get("Tags", [])
                and item["State"]["Name"] != "terminated")


def test_a_master_on_one_cloud_and_its_slaves_on_ec2(clouds: Clouds) -> None:
    manager, ec2 = clouds.manager, clouds.ec2
    assert manager.get("get_service_info")["clouds"] == ["default", "aws"]
    manager.post("add_nodes", count=1)
    master, _ = manager.wait_topology(1)
    added = manager.post("add_nodes", count=1, cloud="aws")["serviceNode"]
    assert added["cloud"] == "aws" and added["state"] == "PENDING"
    _, slaves = manager.wait_topology(2)
    assert slaves == [added["id"]]
    assert {n["id"]: n["cloud"] for n in manager.nodes()} == {master: "default",
                                                              added["id"]: "aws"}
    slave = manager.node(added["id"])
    instance = instance_of(ec2, added["id"])
    assert slave["cloud"] == "aws" and slave["cloud_ref"] == instance["InstanceId"]
    assert slave["ip"] == instance["PrivateIpAddress"]  # the address EC2 gave it
    assert instance["InstanceType"] == "t3.micro" and instance["SubnetId"] == ec2.subnet

    # A write on the local master reaches the slave on EC2 (over TLS both ways).
    manager.post("create_database", database="shop")
    manager.post("configure_user", username="clerk", password="Clerk-Pw-1",
                 database="shop")
    master_ip = manager.node(master)["ip"]
    wrote = manager.sql(master, "CREATE TABLE shop.t (n INT PRIMARY KEY); "
                        "INSERT INTO shop.t VALUES (42)", user="clerk",
                        password="Clerk-Pw-1", tcp=(master_ip, 3306))
    assert wrote.returncode == 0, wrote.stderr
    read = wait_until(lambda: (answer := manager.sql(
        added["id"], "SELECT n FROM shop.t", user="clerk", password="Clerk-Pw-1",
        tcp=(slave["ip"], 3306))).stdout.strip() == "42" and answer, 60, 0.3,
        "the row on the EC2 slave")
    assert read.returncode == 0

    # A cloud that is not configured: a clear error, nothing made.
    error = rpc_error(lambda: manager.post("add_nodes", count=1, cloud="azure"))
    assert error == "Invalid argument: cloud DETAIL:no cloud named 'azure' " \
                    "(known: default, aws)"
    assert len(manager.nodes()) == 2 and len(ec2.instances()) == 1

    # EC2 loses the slave's instance: the node is gone, a new one takes its place.
    ec2.terminate_behind_the_managers_back(str(instance["InstanceId"]))
    wait_until(lambda: manager.node(added["id"])["state"] == "TERMINATED", 60, 0.2,
               "the lost node terminated")
    _, slaves = manager.wait_topology(2)
    replacement = slaves[0]
    assert replacement != added["id"] and manager.node(replacement)["cloud"] == "aws"
    messages = [entry["message"] for entry in manager.get("get_service_info")["transitions"]]
    assert f"node {added['id']} was lost by cloud aws; node {replacement} replaces it" in \
        messages

    # Removing the node terminates its instance.
    replaced = str(instance_of(ec2, replacement)["InstanceId"])
    manager.post("remove_nodes", serviceNodeId=replacement)
    wait_until(lambda: manager.node(replacement)["state"] == "TERMINATED", 60, 0.2,
               "the node removed")
    states = {item["InstanceId"]: item["State"]["Name"] for item in ec2.instances()}
    assert states[replaced] == "terminated"
    assert "TerminateInstances" in ec2.actions
    assert ec2.errors == []
