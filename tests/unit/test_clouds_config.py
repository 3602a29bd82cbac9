"""Several clouds in one service: ``[iaas]`` (the cloud ``default``) and ``[iaas_NAME]``
sections, each LOCAL, OPENNEBULA_XMLRPC or LIBCLOUD."""

from __future__ import annotations

from pathlib import Path

import pytest

from conpaassql.cloud.clouds import legacy_renames
from conpaassql.config import (
    IniFile,
    LibcloudConfig,
    LocalCloudConfig,
    ManagerConfig,
    OpenNebulaConfig,
)
from conpaassql.errors import ConfigError

CLOUDS = """\
[iaas]
DRIVER = LOCAL
[iaas_aws]
DRIVER = LIBCLOUD
PROVIDER = ec2
KEY = $AWS_ACCESS_KEY_ID
SECRET = $AWS_SECRET_ACCESS_KEY
REGION = eu-west-1
IMAGE = ami-0123
SIZE = t3.small
NETWORK = subnet-1
SECURITY_GROUPS = sg-1, sg-2
KEY_NAME = operators
DRIVER_OPTIONS = signature_version=4, ex_token = abc
USER_DATA = cloud-init.yaml
[iaas_one]
DRIVER = OPENNEBULA_XMLRPC
OPENNEBULA_URL = http://one:2633/RPC2
OPENNEBULA_USER = oneadmin
OPENNEBULA_PASSWORD = one-Pa55
[onevm_agent_template]
FILENAME = default.template
[onevm_agent_template_one]
FILENAME = one.template
CONTEXT = vmid=$VMID
[manager]
replace_lost_nodes = false
"""
ENV = {"AWS_ACCESS_KEY_ID": "AKID1", "AWS_SECRET_ACCESS_KEY": "s3cret-Key"}


def read(text: str, env: dict[str, str] | None = None) -> ManagerConfig:
    return ManagerConfig.from_ini(IniFile.from_text(text, env=env or ENV,
                                                    name="/etc/conpaassql/manager.cnf"))


def test_every_iaas_section_is_a_cloud() -> None:
    config = read(CLOUDS)
    assert [(c.name, c.driver) for c in config.clouds] == [
        ("default", "LOCAL"), ("aws", "LIBCLOUD"), ("one", "OPENNEBULA_XMLRPC")]
    assert config.default_cloud.name == "default" and config.cloud("nope") is None
    assert isinstance(config.default_cloud.settings, LocalCloudConfig)
    assert config.replace_lost_nodes is False
    aws = config.cloud("aws")
    assert aws is not None and isinstance(aws.settings, LibcloudConfig)
    settings = aws.settings
    assert (settings.provider, settings.key, settings.secret) == ("EC2", "AKID1", "s3cret-Key")
    assert (settings.region, settings.image, settings.size) == ("eu-west-1", "ami-0123",
                                                                "t3.small")
    assert settings.network == ("subnet-1",) and settings.security_groups == ("sg-1", "sg-2")
    assert settings.driver_options == {"signature_version": "4", "ex_token": "abc"}
    assert settings.user_data == Path("/etc/conpaassql/cloud-init.yaml")  # beside the file
    assert settings.address == "private" and settings.name == "conpaassql"
    assert "s3cret-Key" not in repr(config)
    one = config.cloud("one")
    assert one is not None and isinstance(one.settings, OpenNebulaConfig)
    # A cloud's own agent template section, when there is one.
    assert one.settings.template_file == Path("/etc/conpaassql/one.template")
    assert one.settings.template_values == {"CONTEXT": "vmid=$VMID"}


def test_conpaas_names_of_the_libcloud_keys() -> None:
    config = read("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = OPENSTACK\nUSER = demo\n"
                  "PASSWORD = pw\nIMAGE_ID = img-1\nSIZE_ID = 2\nSECURITY_GROUP_NAME = sql\n"
                  "ADDRESS = Public\nNAME = shop-db\n")
    settings = config.default_cloud.settings
    assert isinstance(settings, LibcloudConfig)
    assert (settings.key, settings.secret, settings.image, settings.size) == (
        "demo", "pw", "img-1", "2")
    assert settings.security_groups == ("sql",)
    assert settings.address == "public" and settings.name == "shop-db"


@pytest.mark.parametrize(("text", "where"), [
    ("[iaas]\n[iaas_Bad!]\nDRIVER = LOCAL\n", "[iaas_bad!]"),
    ("[iaas]\n[iaas_default]\nDRIVER = LOCAL\n", "[iaas_default]"),
    ("[iaas]\n[iaas_x]\nDRIVER = NEBULOUS\n", "[iaas_x] DRIVER"),
    ("[iaas]\n[iaas_x]\nDRIVER = LOCAL\n", "only one cloud may be LOCAL"),
    ("[iaas_aws]\nDRIVER = LOCAL\n", "[iaas] DETAIL:missing: [iaas] is the default cloud"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nIMAGE = i\nSIZE = s\n",
     "[iaas] SECRET"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nSECRET = s\nIMAGE = i\n"
     "SIZE = s\nSUBNET = subnet-1\n", "[iaas] SUBNET DETAIL:unknown key(s) SUBNET"),
    ("[iaas]\nDRIVER = LIBCLOUD\nKEY = k\nIMAGE = i\nSIZE = s\n", "[iaas] PROVIDER"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nIMAGE = i\nSIZE = s\n", "[iaas] KEY"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nSECRET = s\nSIZE = s\n",
     "[iaas] IMAGE"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nSECRET = s\nIMAGE = i\n",
     "[iaas] SIZE"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nIMAGE = i\nSIZE = s\n"
     "ADDRESS = elastic\n", "[iaas] ADDRESS"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nIMAGE = i\nSIZE = s\n"
     "NAME = a b\n", "[iaas] NAME"),
    ("[iaas]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nSECRET = s\nIMAGE = i\n"
     "SIZE = s\nDRIVER_OPTIONS = region\n", "[iaas] DRIVER_OPTIONS"),
    ("[iaas]\n[iaas_one]\nDRIVER = OPENNEBULA_XMLRPC\nOPENNEBULA_URL = u\n"
     "OPENNEBULA_USER = u\nOPENNEBULA_PASSWORD = p\n", "[onevm_agent_template] FILENAME"),
])
def test_bad_clouds_are_named(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read(text)
    assert where in str(caught.value)


def test_the_example_libcloud_configuration_reads() -> None:
    example = Path(__file__).resolve().parents[2] / "contrib" / "libcloud" / "manager.cnf"
    env = {name: f"<{name.lower()}>" for name in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AGENT_IMAGE_ID", "AGENT_SUBNET_ID",
        "AGENT_SECURITY_GROUP_ID", "OS_USERNAME", "OS_PASSWORD", "OS_AUTH_URL",
        "OS_PROJECT_NAME", "OS_AGENT_IMAGE_ID", "OS_AGENT_FLAVOR_ID")}
    config = ManagerConfig.from_ini(IniFile.read(example, env))
    assert [(c.name, c.driver) for c in config.clouds] == [("default", "LIBCLOUD"),
                                                           ("openstack", "LIBCLOUD")]
    openstack = config.clouds[1].settings
    assert isinstance(openstack, LibcloudConfig) and openstack.provider == "OPENSTACK"
    assert openstack.driver_options["ex_force_auth_url"] == "<os_auth_url>"
    assert openstack.driver_options["ex_tenant_name"] == "<os_project_name>"
    assert openstack.network == ("databases",)


@pytest.mark.parametrize(("text", "renames"), [
    ("", {"local": "default"}),
    ("[iaas]\nDRIVER = OPENNEBULA_XMLRPC\nOPENNEBULA_URL = u\nOPENNEBULA_USER = u\n"
     "OPENNEBULA_PASSWORD = p\n[onevm_agent_template]\nFILENAME = t\n",
     {"opennebula": "default"}),
    ("[iaas]\n[iaas_local]\nDRIVER = LIBCLOUD\nPROVIDER = EC2\nKEY = k\nSECRET = s\n"
     "IMAGE = i\nSIZE = s\n", {}),  # a cloud of that name is configured: its nodes stay on it
])
def test_nodes_of_a_service_from_before_clouds_had_names(text: str,
                                                         renames: dict[str, str]) -> None:
    assert legacy_renames(read(text).clouds) == renames
