"""The Libcloud driver, with Libcloud's own EC2 driver against a stand-in EC2 (moto's
EC2 API in server mode, answering as AWS does): create with the node's context as
cloud-init user data, list this service's nodes, destroy, reboot, the provider's
errors, and the configuration checks."""

from __future__ import annotations

import asyncio
import base64
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from libcloud.compute.types import NodeState

from conpaassql.cloud.base import CloudNodeState, NodeRequest
from conpaassql.cloud.cloud_init import CONTEXT_PATH, PLACEHOLDER, render_user_data
from conpaassql.cloud.libcloud_driver import NODE_TAG, SERVICE_TAG, LibcloudDriver
from conpaassql.config import LibcloudConfig
from conpaassql.context import NodeContext
from conpaassql.errors import CloudError, ConfigError
from testbed.standins.cloudinit import cloud_config, write_files
from testbed.standins.ec2 import KEY, SECRET, Ec2StandIn
from tests.integration.harness import REPO, claim_subnet


@pytest.fixture(scope="module")
def ec2() -> Iterator[Ec2StandIn]:
    standin = Ec2StandIn(subnet=claim_subnet())
    try:
        yield standin
    finally:
        standin.close()


def settings(ec2: Ec2StandIn, **changes: object) -> LibcloudConfig:
    config = LibcloudConfig(
        provider="EC2", key=KEY, secret=SECRET, image=ec2.image, size="t3.micro",
        region="us-east-1", endpoint=ec2.url, driver_options={"signature_version": "4"},
        network=(ec2.subnet,), security_groups=(ec2.security_group,), key_name="operators",
        origin="m.cnf [iaas_aws]")
    return replace(config, **changes)  # type: ignore[arg-type]


def context(node_id: int, service: str = "svc1") -> NodeContext:
    return NodeContext(manager_url="https://10.0.0.1:50001/", service_id=service,
                       node_id=node_id, secret="agent-Secret-1", root_password="root-Pw-1",
                       tls_key="-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")


def test_a_node_is_created_with_its_context_as_user_data(ec2: Ec2StandIn,
                                                         tmp_path: Path) -> None:
    driver = LibcloudDriver(settings(ec2), "svc1", cloud_name="aws")
    made = asyncio.run(driver.create_node(NodeRequest(7, "conpaassql-agent-7", context(7))))
    assert made.node_id == 7 and made.name == "conpaassql-svc1-7"
    assert made.state is CloudNodeState.PENDING and made.ip is not None
    assert made.ip.startswith("127.0.")  # an address of the stand-in's subnet
    instance = ec2.instance(made.ref)
    assert instance.private_ip == made.ip
    assert instance.tags[SERVICE_TAG] == "svc1" and instance.tags[NODE_TAG] == "7"
    described = next(i for i in ec2.instances() if i["InstanceId"] == made.ref)
    assert described["SubnetId"] == ec2.subnet and described["KeyName"] == "operators"
    assert described["InstanceType"] == "t3.micro" and described["ImageId"] == ec2.image
    assert [g["GroupId"] for g in described["SecurityGroups"]] == [ec2.security_group]
    # What cloud-init makes of the user data on the node: the agent's context, 0600.
    written = write_files(instance.user_data, tmp_path)
    assert written == [tmp_path / CONTEXT_PATH.lstrip("/")]
    assert NodeContext.parse(written[0].read_text()) == context(7)
    assert stat.S_IMODE(written[0].stat().st_mode) == 0o600
    assert cloud_config(instance.user_data)["runcmd"] == [
        ["systemctl", "enable", "--now", "conpaassql-agent.service"]]


def test_only_this_services_nodes_are_listed(ec2: Ec2StandIn) -> None:
    ours = LibcloudDriver(settings(ec2), "svc2", cloud_name="aws")
    theirs = LibcloudDriver(settings(ec2), "svc3", cloud_name="aws")
    mine = asyncio.run(ours.create_node(NodeRequest(1, "n1", context(1, "svc2"))))
    other = asyncio.run(theirs.create_node(NodeRequest(1, "n1", context(1, "svc3"))))
    ec2.ec2.run_instances(ImageId=ec2.image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                          SubnetId=ec2.subnet)  # somebody else's instance, untagged
    listed = asyncio.run(ours.list_nodes())
    assert [(n.ref, n.node_id) for n in listed] == [(mine.ref, 1)]
    assert listed[0].state is CloudNodeState.RUNNING and listed[0].ip == mine.ip
    assert [n.ref for n in asyncio.run(theirs.list_nodes())] == [other.ref]


def test_destroy_and_reboot(ec2: Ec2StandIn) -> None:
    driver = LibcloudDriver(settings(ec2), "svc4", cloud_name="aws")
    made = asyncio.run(driver.create_node(NodeRequest(2, "n2", context(2, "svc4"))))
    asyncio.run(driver.reboot_node(made.ref))
    assert "RebootInstances" in ec2.actions
    asyncio.run(driver.destroy_node(made.ref))
    listed = asyncio.run(driver.list_nodes())
    assert [(n.ref, n.state) for n in listed] == [(made.ref, CloudNodeState.TERMINATED)]
    asyncio.run(driver.destroy_node(made.ref))  # gone already: not an error
    asyncio.run(driver.destroy_node("i-0123456789abcdef0"))  # never was: not an error either
    with pytest.raises(CloudError, match=f"no node {made.ref}"):
        asyncio.run(driver.reboot_node(made.ref))


@pytest.mark.parametrize(("changes", "message"), [
    ({"image": "ami-00000000"}, "EC2 refused to create a node: InvalidAMIID.NotFound"),
    ({"size": "zz.huge"}, "InvalidInstanceType.NotFound: The instance type 'zz.huge'"),
    ({"network": ("subnet-nope",)}, "InvalidSubnetID.NotFound"),
    ({"security_groups": ("sg-nope",)}, "InvalidGroup.NotFound"),
    ({"endpoint": "http://127.0.0.1:9"}, "cannot reach EC2 at http://127.0.0.1:9: "
                                         "Connection refused"),
])
def test_the_providers_errors_are_clear(ec2: Ec2StandIn, changes: dict[str, object],
                                        message: str) -> None:
    driver = LibcloudDriver(settings(ec2, **changes), "svc5", cloud_name="aws")
    before = len(ec2.instances())
    with pytest.raises(CloudError) as caught:
        asyncio.run(driver.create_node(NodeRequest(3, "n3", context(3, "svc5"))))
    assert message in str(caught.value)
    assert len(ec2.instances()) == before  # nothing was made


def test_the_providers_words_carry_no_secret(ec2: Ec2StandIn) -> None:
    """A provider that repeats a credential in its error (some echo the request)."""
    class Echoing:
        def create_node(self, name: str, size: object, image: object,
                        ex_userdata: str, ex_metadata: dict[str, str]) -> None:
            raise Exception(f"SignatureDoesNotMatch for {SECRET} and token tok-12345")

    config = settings(ec2, network=(), security_groups=(), key_name=None,
                      driver_options={"ex_token": "tok-12345", "signature_version": "4"})
    driver = LibcloudDriver(config, "svc8", connect=lambda _: Echoing())  # type: ignore[arg-type,return-value]
    with pytest.raises(CloudError) as caught:
        asyncio.run(driver.create_node(NodeRequest(5, "n5", context(5, "svc8"))))
    assert str(caught.value) == ("Cloud error: EC2 refused to create a node: "
                                 "SignatureDoesNotMatch for <secret> and token <secret>")


def test_configuration_checks(ec2: Ec2StandIn, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[iaas_aws\] PROVIDER.*not a Libcloud"):
        LibcloudDriver(settings(ec2, provider="NEBULOUS"), "s")
    with pytest.raises(ConfigError, match=r"\[iaas_aws\] ENDPOINT"):
        LibcloudDriver(settings(ec2, endpoint="ftp://x"), "s")
    with pytest.raises(ConfigError, match=r"ENDPOINT DETAIL:https:// only"):
        LibcloudDriver(settings(ec2, endpoint="http://ec2.example.com:8773"), "s")
    no_placeholder = tmp_path / "user-data.yaml"
    no_placeholder.write_text("#cloud-config\nruncmd: []\n")
    with pytest.raises(ConfigError, match="has no"):
        LibcloudDriver(settings(ec2, user_data=no_placeholder), "s")
    with pytest.raises(ConfigError, match="USER_DATA"):
        LibcloudDriver(settings(ec2, user_data=tmp_path / "missing.yaml"), "s")
    with pytest.raises(ConfigError, match="at most"):
        render_user_data(PLACEHOLDER, "X" * 20000)


def test_the_contrib_cloud_init_installs_and_starts_the_agent(ec2: Ec2StandIn,
                                                               tmp_path: Path) -> None:
    """contrib/cloud-init/conpaassql-agent.yaml as USER_DATA, on a plain image."""
    template = REPO / "contrib" / "cloud-init" / "conpaassql-agent.yaml"
    driver = LibcloudDriver(settings(ec2, user_data=template), "svc6", cloud_name="aws")
    made = asyncio.run(driver.create_node(NodeRequest(4, "n4", context(4, "svc6"))))
    user_data = ec2.instance(made.ref).user_data
    config = cloud_config(user_data)
    assert {"mariadb-server", "mariadb-backup", "python3-venv"} <= set(config["packages"])
    written = write_files(user_data, tmp_path)
    context_file = tmp_path / CONTEXT_PATH.lstrip("/")
    assert context_file in written and NodeContext.parse(context_file.read_text()) == \
        context(4, "svc6")
    unit = tmp_path / "etc/systemd/system/conpaassql-agent.service"
    assert unit in written
    assert unit.read_text() == (REPO / "contrib/systemd/conpaassql-agent.service").read_text()
    commands = " ".join(" ".join(c) if isinstance(c, list) else c for c in config["runcmd"])
    assert "pip install" in commands and "systemctl enable --now conpaassql-agent" in commands


@pytest.mark.parametrize(("state", "expected"), [
    (NodeState.RUNNING, CloudNodeState.RUNNING), (NodeState.PENDING, CloudNodeState.PENDING),
    (NodeState.STARTING, CloudNodeState.PENDING), (NodeState.REBOOTING, CloudNodeState.PENDING),
    (NodeState.STOPPED, CloudNodeState.STOPPED), (NodeState.SUSPENDED, CloudNodeState.STOPPED),
    (NodeState.TERMINATED, CloudNodeState.TERMINATED), (NodeState.ERROR, CloudNodeState.UNKNOWN),
    (NodeState.UNKNOWN, CloudNodeState.UNKNOWN), ("something-new", CloudNodeState.UNKNOWN),
])
def test_libcloud_states_map_to_node_states(state: object, expected: CloudNodeState) -> None:
    assert LibcloudDriver.map_state(state) is expected


def test_user_data_holds_the_context_base64() -> None:
    text = render_user_data(f"a {PLACEHOLDER} b", "CONPAASSQL_NODE_ID=1\n")
    assert text == "a " + base64.b64encode(b"CONPAASSQL_NODE_ID=1\n").decode() + " b"


def test_an_openstack_cloud_is_built_from_its_options() -> None:
    """Libcloud's OpenStack driver takes the Keystone options and user data (nothing is
    asked of OpenStack until a node is made)."""
    config = LibcloudConfig(provider="OPENSTACK", key="demo", secret="pw", image="img-1",
                            size="2", network=("databases",), security_groups=("sql",),
                            driver_options={"ex_force_auth_url": "https://keystone:5000",
                                            "ex_force_auth_version": "3.x_password",
                                            "ex_tenant_name": "db"})
    driver = LibcloudDriver(config, "svc7", cloud_name="openstack")
    assert driver.describe()["provider"] == "OPENSTACK"
    with pytest.raises(ConfigError, match="Libcloud's EC2 driver: Invalid region: mars-1"):
        LibcloudDriver(replace(config, provider="EC2", region="mars-1", driver_options={}),
                       "s")
