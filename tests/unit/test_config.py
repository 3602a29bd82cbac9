"""INI configuration in the seed's format (``conpaassql.config``)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from conpaassql.config import IniFile, LocalCloudConfig, ManagerConfig, parse_address_range
from conpaassql.errors import ConfigError

# Section 3 of the seed document, verbatim (its two code blocks, one after the other).
SEED_CONFIG = """\
[iaas]
DRIVER=OPENNEBULA_XMLRPC
OPENNEBULA_URL=$ONE_URL
OPENNEBULA_USER=$ONE_USERNAME
OPENNEBULA_PASSWORD=$ONE_PASSWORD
OPENNEBULA_IMAGE_ID = $AGENT_IMAGE_ID
OPENNEBULA_SIZE_ID = 1


OPENNEBULA_NETWORK_ID = $AGENT_NETWORK_ID
OPENNEBULA_NETWORK_GATEWAY=$IP_GATEWAY
OPENNEBULA_NETWORK_NAMESERVER=$NAMESERVER

[manager]
find_existing_agents = true

[onevm_agent_template]
FILENAME=/root/conpaassql/bin/agent.template
NAME=conpaassql_server
CPU=0.2
MEM_SIZE=256
DISK=bus=scsi,readonly=no
OS=arch=i686,boot = hd, root = hda
IMAGE_ID=$AGENT_IMAGE_ID
NETWORK_ID=$AGENT_NETWORK_ID
CONTEXT=vmid=$VMID,vmname=$NAME,ip_private="$NIC[IP, \\
NETWORK=$NETWORK"]",ip_gateway="$IP_GATEWAY",netmask=\\
"$NETMASK",nameserver="$NAMESERVER",target=sd,files=\\
$AGENT_FILES
"""

# The same file with its CONTEXT continuation lines indented, the INI way.
SEED_CONFIG_INDENTED = SEED_CONFIG.replace(
    '\nNETWORK=$NETWORK"]"', '\n  NETWORK=$NETWORK"]"'
).replace('\n"$NETMASK"', '\n  "$NETMASK"').replace("\n$AGENT_FILES", "\n  $AGENT_FILES")

ENV = {
    "ONE_URL": "http://10.30.1.1:2633/RPC2",
    "ONE_USERNAME": "oneadmin",
    "ONE_PASSWORD": "s3cr$t 'x'",
    "AGENT_IMAGE_ID": "193",
    "AGENT_NETWORK_ID": "205",
    "IP_GATEWAY": "10.30.1.254",
    "NAMESERVER": "10.30.1.2",
}


def config_error(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(excinfo.value)


# --- IniFile ------------------------------------------------------------------------


def test_seed_file_values_are_substituted() -> None:
    ini = IniFile.from_text(SEED_CONFIG_INDENTED, env=ENV, name="manager.cnf")
    iaas = ini.section("iaas")
    assert iaas.get("DRIVER") == "OPENNEBULA_XMLRPC"
    assert iaas.get("OPENNEBULA_URL") == "http://10.30.1.1:2633/RPC2"
    # The original read user and password swapped (docs/protocol.md); ours must not.
    assert iaas.get("OPENNEBULA_USER") == "oneadmin"
    assert iaas.get("OPENNEBULA_PASSWORD") == "s3cr$t 'x'"
    assert iaas.get("OPENNEBULA_IMAGE_ID") == "193"
    assert iaas.get("OPENNEBULA_SIZE_ID") == "1"
    assert iaas.get("OPENNEBULA_NETWORK_ID") == "205"
    assert iaas.get("OPENNEBULA_NETWORK_GATEWAY") == "10.30.1.254"
    assert iaas.get("OPENNEBULA_NETWORK_NAMESERVER") == "10.30.1.2"
    assert ini.section("manager").boolean("find_existing_agents", False) is True


def test_keys_and_sections_are_case_insensitive() -> None:
    ini = IniFile.from_text(SEED_CONFIG_INDENTED, env=ENV)
    assert ini.section("IAAS").get("opennebula_url") == ENV["ONE_URL"]
    assert ini.section("Manager").get("FIND_EXISTING_AGENTS") == "true"


def test_template_section_keeps_what_it_cannot_fill() -> None:
    ini = IniFile.from_text(SEED_CONFIG_INDENTED, env=ENV)
    template = ini.section("onevm_agent_template")
    assert template.get("IMAGE_ID") == "193"
    assert template.get("NETWORK_ID") == "205"
    assert template.get("DISK") == "bus=scsi,readonly=no"
    assert template.get("OS") == "arch=i686,boot = hd, root = hda"
    context = template.get("CONTEXT")
    assert context is not None
    assert context.startswith("vmid=$VMID,")
    assert '"$NIC[IP, ' in context
    assert "$NETWORK" in context
    assert "$NETMASK" in context
    assert "$AGENT_FILES" in context
    assert 'ip_gateway="10.30.1.254"' in context
    assert 'nameserver="10.30.1.2"' in context


def test_seed_file_verbatim_is_read() -> None:
    ini = IniFile.from_text(SEED_CONFIG, env=ENV, name="manager.cnf")
    context = ini.section("onevm_agent_template").get("CONTEXT")
    assert context is not None
    assert "$VMID" in context
    assert "$NIC[IP, " in context
    assert "$AGENT_FILES" in context


def test_read_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "manager.cnf"
    path.write_text(SEED_CONFIG_INDENTED, encoding="utf-8")
    ini = IniFile.read(path, env=ENV)
    assert ini.path == str(path)
    assert ini.section("iaas").get("OPENNEBULA_URL") == ENV["ONE_URL"]


def test_braced_reference_and_reference_to_another_key() -> None:
    text = "[iaas]\nHOST=10.0.0.1\nURL=http://${HOST}:$PORT/RPC2\n"
    ini = IniFile.from_text(text, env={"PORT": "2633"})
    assert ini.section("iaas").get("URL") == "http://10.0.0.1:2633/RPC2"


def test_section_key_wins_over_environment() -> None:
    text = "[iaas]\nHOST=from-file\nURL=$HOST\n"
    ini = IniFile.from_text(text, env={"HOST": "from-env"})
    assert ini.section("iaas").get("URL") == "from-file"


def test_chained_reference_is_filled() -> None:
    text = "[iaas]\nBASE=$ONE_URL\nOPENNEBULA_URL=$BASE\n"
    ini = IniFile.from_text(text, env={"ONE_URL": "http://one:2633/RPC2"})
    assert ini.section("iaas").get("OPENNEBULA_URL") == "http://one:2633/RPC2"


def test_environment_is_not_consulted_when_env_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONE_URL", "http://from-os-environ/")
    with pytest.raises(ConfigError):
        IniFile.from_text("[iaas]\nOPENNEBULA_URL=$ONE_URL\n", env={})
    ini = IniFile.from_text("[iaas]\nOPENNEBULA_URL=$ONE_URL\n")
    assert ini.section("iaas").get("OPENNEBULA_URL") == "http://from-os-environ/"


def test_missing_variable_in_strict_section_names_file_section_and_key(
        tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k != "ONE_PASSWORD"}
    path = tmp_path / "manager.cnf"
    path.write_text(SEED_CONFIG_INDENTED, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        IniFile.read(path, env=env)
    text = config_error(caught)
    assert str(path) in text
    assert "[iaas]" in text
    assert "OPENNEBULA_PASSWORD" in text
    assert "ONE_PASSWORD" in text.split("DETAIL:", 1)[1]


def test_missing_variable_in_manager_section_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        IniFile.from_text("[manager]\nprobe_interval = $PROBE\n", env={}, name="m.cnf")
    assert "m.cnf" in str(caught.value)
    assert "[manager]" in str(caught.value)
    assert "PROBE_INTERVAL" in str(caught.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.cnf"
    with pytest.raises(ConfigError) as caught:
        IniFile.read(path, env={})
    assert str(path) in str(caught.value)
    with pytest.raises(ConfigError) as loaded:
        ManagerConfig.load(path, env={})
    assert str(path) in str(loaded.value)


def test_unparseable_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.cnf"
    path.write_text("no section header\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        IniFile.read(path, env={})
    assert str(path) in str(caught.value)
    binary = tmp_path / "binary.cnf"
    binary.write_bytes(b"[iaas]\nDRIVER=\xff\xfe\n")
    with pytest.raises(ConfigError) as decoded:
        IniFile.read(binary, env={})
    assert str(binary) in str(decoded.value)


# --- ManagerConfig ------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    config = ManagerConfig.load(None)
    assert [(c.name, c.driver) for c in config.clouds] == [("default", "LOCAL")]
    local = config.default_cloud.settings
    assert isinstance(local, LocalCloudConfig)
    assert config.find_existing_agents is True
    assert config.failure_threshold == 3
    assert config.agent_port == 60000
    assert config.mysql_port == 3306
    assert local.first_address == ipaddress.IPv4Address("127.0.0.10")
    assert local.last_address == ipaddress.IPv4Address("127.0.0.250")


def test_defaults_from_an_empty_file() -> None:
    config = ManagerConfig.from_ini(IniFile.from_text("", env={}, name="empty.cnf"))
    assert config.path == "empty.cnf"
    assert config.default_cloud.driver == "LOCAL"
    local = config.default_cloud.settings
    assert isinstance(local, LocalCloudConfig)
    assert config.probe_interval == 1.0
    assert config.probe_timeout == 2.0
    assert config.heartbeat_interval == 5.0
    assert config.boot_timeout == 300.0
    assert config.cloud_list_interval == 5.0
    assert config.max_nodes == 64
    assert local.template_cache is None
    assert local.mysql_options == {}
    assert config.replace_lost_nodes is True


def test_values_are_read() -> None:
    text = """\
[iaas]
driver = local
LOCAL_ADDRESS_RANGE = 127.0.1.1-127.0.1.9
LOCAL_TEMPLATE_CACHE = /var/cache/conpaassql
LOCAL_MYSQL_OPTIONS = innodb_buffer_pool_size=64M, max_connections = 50,
[manager]
find_existing_agents = no
probe_interval = 0.5
failure_threshold = 5
boot_timeout = 60
max_nodes = 8
[agent]
port = 60001
mysql_port = 3307
"""
    config = ManagerConfig.from_ini(IniFile.from_text(text, env={}))
    local = config.default_cloud.settings
    assert config.default_cloud.driver == "LOCAL" and isinstance(local, LocalCloudConfig)
    assert config.find_existing_agents is False
    assert config.probe_interval == 0.5
    assert config.failure_threshold == 5
    assert config.boot_timeout == 60.0
    assert config.max_nodes == 8
    assert config.agent_port == 60001
    assert config.mysql_port == 3307
    assert local.first_address == ipaddress.IPv4Address("127.0.1.1")
    assert local.last_address == ipaddress.IPv4Address("127.0.1.9")
    assert local.template_cache == Path("/var/cache/conpaassql")
    assert local.mysql_options == {"innodb_buffer_pool_size": "64M",
                                          "max_connections": "50"}


def test_unknown_driver_names_the_key() -> None:
    text = SEED_CONFIG_INDENTED.replace("DRIVER=OPENNEBULA_XMLRPC", "DRIVER=NEBULOUS")
    ini = IniFile.from_text(text, env=ENV, name="manager.cnf")
    with pytest.raises(ConfigError) as caught:
        ManagerConfig.from_ini(ini)
    message = str(caught.value)
    assert "manager.cnf [iaas] DRIVER" in message
    assert "'NEBULOUS'" in message and "OPENNEBULA_XMLRPC" in message  # the known ones


@pytest.mark.parametrize(("section", "key", "value"), [
    ("manager", "failure_threshold", "three"),
    ("manager", "failure_threshold", "0"),
    ("manager", "failure_threshold", "101"),
    ("manager", "failure_threshold", "2.5"),
    ("manager", "max_nodes", "-1"),
    ("agent", "port", "70000"),
    ("agent", "port", "http"),
    ("agent", "mysql_port", "0"),
    ("manager", "find_existing_agents", "perhaps"),
    ("manager", "find_existing_agents", "2"),
    ("manager", "probe_interval", "fast"),
    ("manager", "probe_interval", "0"),
    ("manager", "probe_interval", "-1"),
    ("manager", "boot_timeout", "0.5"),
    ("manager", "heartbeat_interval", "1s"),
    ("manager", "probe_interval", "nan"),
    ("manager", "probe_interval", "NaN"),
    ("iaas", "LOCAL_MYSQL_OPTIONS", "innodb_buffer_pool_size"),
    ("iaas", "LOCAL_MYSQL_OPTIONS", "=64M"),
    ("iaas", "LOCAL_MYSQL_OPTIONS", "a=1,b"),
    ("iaas", "LOCAL_ADDRESS_RANGE", "10.0.0.1-10.0.0.9"),
    ("iaas", "LOCAL_ADDRESS_RANGE", "127.0.0.250-127.0.0.10"),
    ("iaas", "LOCAL_ADDRESS_RANGE", "127.0.0.1-128.0.0.1"),
    ("iaas", "LOCAL_ADDRESS_RANGE", "localhost"),
    ("iaas", "LOCAL_ADDRESS_RANGE", "127.0.0.300"),
    ("manager", "semi_sync", "mostly"),
    ("manager", "semi_sync_timeout", "0"),
    ("manager", "semi_sync_timeout", "5s"),
    ("manager", "auto_failover", "sometimes"),
    ("manager", "max_reader_lag", "-3"),
    ("manager", "seed_method", "rsync"),
    ("manager", "lease", "0.1"),
    ("manager", "lease", "0.5"),  # CHECK_INTERVAL would be over a fifth of it
    ("manager", "lease", "2s"),
])
def test_bad_values_name_the_key(section: str, key: str, value: str) -> None:
    ini = IniFile.from_text(f"[{section}]\n{key} = {value}\n", env={}, name="m.cnf")
    with pytest.raises(ConfigError) as caught:
        ManagerConfig.from_ini(ini)
    text = str(caught.value)
    assert f"m.cnf [{section}] {key.upper()}" in text
    assert "DETAIL:" in text


def test_empty_value_means_default() -> None:
    ini = IniFile.from_text("[manager]\nfailure_threshold =\nprobe_interval =   \n", env={})
    config = ManagerConfig.from_ini(ini)
    assert config.failure_threshold == 3
    assert config.probe_interval == 1.0


# --- parse_address_range ------------------------------------------------------------


def test_address_range() -> None:
    first, last = parse_address_range("127.0.0.10-127.0.0.250", "here")
    assert (str(first), str(last)) == ("127.0.0.10", "127.0.0.250")
    first, last = parse_address_range(" 127.0.1.1 - 127.0.2.1 ", "here")
    assert (str(first), str(last)) == ("127.0.1.1", "127.0.2.1")


def test_single_address_is_a_range_of_one() -> None:
    first, last = parse_address_range("127.0.0.5", "here")
    assert first == last == ipaddress.IPv4Address("127.0.0.5")


def test_non_loopback_range_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address_range("192.168.1.10-192.168.1.20", "cfg [iaas] LOCAL_ADDRESS_RANGE")
    assert str(caught.value).startswith("Configuration error: cfg [iaas] LOCAL_ADDRESS_RANGE")
    with pytest.raises(ConfigError):
        parse_address_range("10.0.0.1", "here")


def test_reversed_range_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address_range("127.0.0.20-127.0.0.10", "where")
    assert "where" in str(caught.value)


@pytest.mark.parametrize("text", ["", "-", "127.0.0.1-x", "::1", "127.0.0.1-127.0.0.2-3"])
def test_malformed_range_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address_range(text, "where")


def test_replication_settings_are_read() -> None:
    ini = IniFile.from_text("[manager]\nsemi_sync = false\nsemi_sync_timeout = 250\n"
                            "auto_failover = no\nmax_reader_lag = 2.5\n"
                            "seed_method = Logical\nlease = 4.5\n", env={})
    config = ManagerConfig.from_ini(ini)
    assert (config.semi_sync, config.semi_sync_timeout, config.auto_failover,
            config.max_reader_lag, config.seed_method, config.lease) == \
        (False, 250, False, 2.5, "logical", 4.5)
    defaults = ManagerConfig()
    assert (defaults.semi_sync, defaults.semi_sync_timeout, defaults.auto_failover,
            defaults.seed_method) == (True, 5000, True, "auto")
