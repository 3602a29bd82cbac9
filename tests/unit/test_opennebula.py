"""The OpenNebula driver: the real pyone client against the XML-RPC stand-in, and the
seed's agent template filled for a node."""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conpaassql.cloud.base import CloudNodeState, NodeRequest
from conpaassql.cloud.one_template import CONTEXT_KEY, decode_context, render_template
from conpaassql.cloud.opennebula import OpenNebulaDriver, vm_state
from conpaassql.config import IniFile, ManagerConfig, OpenNebulaConfig
from conpaassql.context import NodeContext
from conpaassql.errors import CloudError, ConfigError
from testbed.standins.opennebula import (
    SEED_SECTION,
    SEED_TEMPLATE,
    OpenNebulaStandIn,
    parse_template,
)
from tests.unit.test_config import ENV, SEED_CONFIG_INDENTED


#: The seed's agent template file, verbatim.
def node_context(node_id: int) -> NodeContext:
    return NodeContext(manager_url="https://10.0.0.9:50001/", service_id="svc1",
                       node_id=node_id, secret="s3cr3t", root_password="r00t",
                       ca_cert="-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[OpenNebulaStandIn, OpenNebulaConfig]]:
    standin = OpenNebulaStandIn(user="oneuser", password="onepass", max_vms=3)
    template = tmp_path / "agent.template"
    template.write_text(SEED_TEMPLATE)
    config = OpenNebulaConfig(url=standin.url, user="oneuser", password="onepass",
                              template_file=template, template_values=dict(SEED_SECTION))
    yield standin, config
    standin.close()


def test_the_seed_template_is_filled_and_carries_the_context() -> None:
    context = node_context(4)
    text = render_template(SEED_TEMPLATE, SEED_SECTION, origin="agent.template",
                           service_id="svc1", node_id=4, node_context=context.render())
    parsed = parse_template(text)  # OpenNebula's syntax, as the stand-in parses it
    assert parsed["NAME"] == "conpaassql_server-svc1-4"
    assert parsed["MEMORY"] == "256" and parsed["DISK"]["IMAGE_ID"] == "12"
    assert parsed["CONTEXT"]["VMID"] == "$VMID"  # OpenNebula's own, left to it
    assert NodeContext.parse(decode_context(parsed["CONTEXT"][CONTEXT_KEY])) == context
    assert parsed["CONPAASSQL_SERVICE"] == "svc1" and parsed["CONPAASSQL_NODE"] == "4"
    with pytest.raises(ConfigError, match=r"unknown variable\(s\) \$SWAP"):
        render_template(SEED_TEMPLATE + "SWAP = $SWAP\n", SEED_SECTION, origin="t",
                        service_id="s", node_id=1, node_context="")


def test_create_list_destroy_through_pyone(
        cloud: tuple[OpenNebulaStandIn, OpenNebulaConfig]) -> None:
    standin, config = cloud

    async def scenario() -> None:
        driver = OpenNebulaDriver(config, "svc1")
        other = OpenNebulaDriver(config, "svc2")
        made = [await driver.create_node(NodeRequest(n, f"node-{n}", node_context(n)))
                for n in (1, 2)]
        await other.create_node(NodeRequest(1, "node-1", node_context(1)))
        assert [m.state for m in made] == [CloudNodeState.PENDING] * 2
        listed = {n.ref: n for n in await driver.list_nodes()}
        assert set(listed) == {m.ref for m in made}  # only this service's VMs
        assert {n.node_id for n in listed.values()} == {1, 2}
        assert all(n.state is CloudNodeState.PENDING and n.ip is None
                   for n in listed.values())
        # The VM got the template and the node's context the way OpenNebula keeps it.
        vm = standin.deploy(int(made[0].ref))
        got = NodeContext.parse(decode_context(vm.template["CONTEXT"][CONTEXT_KEY]))
        assert got == node_context(1)
        listed = {n.ref: n for n in await driver.list_nodes()}
        assert listed[made[0].ref].state is CloudNodeState.RUNNING
        assert listed[made[0].ref].ip == vm.ip
        await driver.reboot_node(made[0].ref)
        await driver.destroy_node(made[1].ref)
        await driver.destroy_node(made[1].ref)  # gone already: fine
        assert {n.ref for n in await driver.list_nodes()} == {made[0].ref}
        # Errors come back with OpenNebula's own words.
        await driver.create_node(NodeRequest(3, "node-3", node_context(3)))  # the third VM
        with pytest.raises(CloudError, match="limit of 3 reached for VMS quota"):
            await driver.create_node(NodeRequest(4, "node-4", node_context(4)))
        with pytest.raises(CloudError, match="Wrong state to perform action"):
            await driver.reboot_node(str(sorted(standin.vms)[2]))

    asyncio.run(scenario())
    assert "one.vm.allocate" in standin.calls and "one.vm.action" in standin.calls


def test_credentials_go_user_first_and_failures_are_clear(
        cloud: tuple[OpenNebulaStandIn, OpenNebulaConfig], tmp_path: Path) -> None:
    _, config = cloud

    async def scenario() -> None:
        swapped = OpenNebulaConfig(url=config.url, user=config.password,
                                   password=config.user, template_file=config.template_file,
                                   template_values=config.template_values)
        with pytest.raises(CloudError, match="User couldn't be authenticated"):
            await OpenNebulaDriver(swapped, "svc1").list_nodes()
        bad = tmp_path / "bad.template"
        bad.write_text("NAME = $NAME\nMEMORY = [ broken\n")
        broken = OpenNebulaConfig(url=config.url, user=config.user, password=config.password,
                                  template_file=bad, template_values=config.template_values)
        with pytest.raises(CloudError, match="Error parsing VM template"):
            await OpenNebulaDriver(broken, "svc1").create_node(
                NodeRequest(1, "n", node_context(1)))
        gone = OpenNebulaConfig(url="http://127.0.0.1:9/RPC2", user="u", password="p",
                                template_file=config.template_file, template_values={})
        with pytest.raises(CloudError, match=r"cannot reach OpenNebula|refused to list"):
            await OpenNebulaDriver(gone, "svc1").list_nodes()
        assert "onepass" not in repr(config)

    asyncio.run(scenario())
    with pytest.raises(ConfigError, match="FILENAME"):
        OpenNebulaDriver(OpenNebulaConfig(url=config.url, user="u", password="p",
                                          template_file=tmp_path / "none",
                                          template_values={}), "svc1")


@pytest.mark.parametrize(("state", "lcm", "expected"), [
    (0, 0, CloudNodeState.PENDING), (1, 0, CloudNodeState.PENDING),
    (3, 1, CloudNodeState.PENDING), (3, 3, CloudNodeState.RUNNING),
    (3, 36, CloudNodeState.UNKNOWN), (8, 0, CloudNodeState.STOPPED),
    (6, 0, CloudNodeState.TERMINATED), (7, 0, CloudNodeState.UNKNOWN),
    (99, 0, CloudNodeState.UNKNOWN),
])
def test_vm_states_map_to_node_states(state: int, lcm: int, expected: CloudNodeState) -> None:
    assert vm_state(state, lcm) is expected


def test_the_seed_configuration_is_read_verbatim(tmp_path: Path) -> None:
    """The seed's example (section 3), user and password in the order they are named
    (the original read them swapped)."""
    (tmp_path / "agent.template").write_text(SEED_TEMPLATE)
    text = SEED_CONFIG_INDENTED.replace("/root/conpaassql/bin/agent.template",
                                        str(tmp_path / "agent.template"))
    config = ManagerConfig.from_ini(IniFile.from_text(text, env=ENV, name="manager.cnf"))
    one = config.default_cloud.settings
    assert config.default_cloud.driver == "OPENNEBULA_XMLRPC"
    assert isinstance(one, OpenNebulaConfig)
    assert (one.url, one.user, one.password) == (ENV["ONE_URL"], ENV["ONE_USERNAME"],
                                                 ENV["ONE_PASSWORD"])
    assert (one.image_id, one.size_id, one.network_id) == ("193", "1", "205")
    assert (one.gateway, one.nameserver) == (ENV["IP_GATEWAY"], ENV["NAMESERVER"])
    assert one.template_values["IMAGE_ID"] == "193"
    assert "$VMID" in one.template_values["CONTEXT"]  # left for OpenNebula
    rendered = render_template(one.template_file.read_text(), one.template_values,
                               origin="t", service_id="s", node_id=1, node_context="X=1\n")
    assert "IMAGE_ID = 193" in rendered and ENV["ONE_PASSWORD"] not in repr(one)
    missing = text.replace("OPENNEBULA_PASSWORD=$ONE_PASSWORD\n", "")
    with pytest.raises(ConfigError, match="OPENNEBULA_PASSWORD"):
        ManagerConfig.from_ini(IniFile.from_text(missing, env=ENV, name="manager.cnf"))


def test_the_boot_script_writes_the_agents_context(tmp_path: Path) -> None:
    """contrib/conpaassql-agent-boot.sh, on a context.sh as OpenNebula writes it."""
    context = node_context(5)
    text = render_template(SEED_TEMPLATE, SEED_SECTION, origin="t", service_id="svc1",
                           node_id=5, node_context=context.render())
    values = parse_template(text)["CONTEXT"]
    context_sh = tmp_path / "context.sh"
    context_sh.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
    out = tmp_path / "etc" / "context"
    script = Path(__file__).resolve().parents[2] / "contrib" / "conpaassql-agent-boot.sh"
    env = {**os.environ, "CONTEXT_SH": str(context_sh), "CONTEXT_OUT": str(out)}
    subprocess.run([str(script), "--no-start"], check=True, env=env, timeout=30)
    assert NodeContext.parse(out.read_text()) == context
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    context_sh.write_text("OTHER=1\n")
    failed = subprocess.run([str(script), "--no-start"], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert failed.returncode == 1 and "has no CONPAASSQL_CONTEXT" in failed.stderr


def test_the_example_manager_configuration_reads() -> None:
    example = Path(__file__).resolve().parents[2] / "contrib" / "opennebula" / "manager.cnf"
    env = {"ONE_URL": "http://one:2633/RPC2", "ONE_USERNAME": "u", "ONE_PASSWORD": "p",
           "AGENT_IMAGE_ID": "1", "AGENT_NETWORK_ID": "2", "IP_GATEWAY": "10.0.0.1",
           "NAMESERVER": "10.0.0.2"}
    config = ManagerConfig.from_ini(IniFile.read(example, env))
    one = config.default_cloud.settings
    assert isinstance(one, OpenNebulaConfig) and config.agents_bind == "0.0.0.0"
    assert one.template_values["CONTEXT"].startswith('NETWORK = "YES"')
