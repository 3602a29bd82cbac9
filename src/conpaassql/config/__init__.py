"""The configuration files of the manager, read into typed objects.

Keys are case-insensitive (``OPENNEBULA_URL`` and ``opennebula_url`` alike).
``$NAME`` and ``${NAME}`` in a value are filled from the environment or from
another key of the same section; in strict sections an unknown reference is an
error naming the file, section and key. Sections that are templates for the
cloud (``[onevm_agent_template]``) keep unknown references for the cloud to fill.
"""


from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from conpaassql.config.backup import BackupConfig
from conpaassql.config.ini import (
    FALSE_WORDS,
    TEMPLATE_SECTION,
    TRUE_WORDS,
    IniFile,
    Section,
    relative_path,
)
from conpaassql.config.router import RouterConfig, parse_host_port, router_from_ini
from conpaassql.errors import ConfigError

__all__ = ["FALSE_WORDS", "TEMPLATE_SECTION", "TRUE_WORDS", "BackupConfig", "IniFile",
           "RouterConfig", "Section", "parse_host_port"]

FIRST_LOCAL_ADDRESS = ipaddress.IPv4Address("127.0.0.10")
LAST_LOCAL_ADDRESS = ipaddress.IPv4Address("127.0.0.250")



def parse_address_range(text: str, where: str) -> tuple[ipaddress.IPv4Address,
                                                        ipaddress.IPv4Address]:
    """``127.0.0.10-127.0.0.250`` -> (first, last); loopback addresses only."""
    try:
        first_text, _, last_text = text.partition("-")
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address((last_text or first_text).strip())
    except ValueError as exc:
        raise ConfigError(where, detail=str(exc)) from None
    if last < first:
        raise ConfigError(where, detail="the range ends before it starts")
    if not (first.is_loopback and last.is_loopback):
        raise ConfigError(where, detail="the local cloud uses loopback addresses (127.x.y.z)")
    return first, last


@dataclass(frozen=True)
class LocalCloudConfig:
    """[iaas] for DRIVER=LOCAL: nodes as processes on this machine."""

    first_address: ipaddress.IPv4Address = FIRST_LOCAL_ADDRESS
    last_address: ipaddress.IPv4Address = LAST_LOCAL_ADDRESS
    template_cache: Path | None = None  # default: <state dir>/cache
    mysql_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenNebulaConfig:
    """``[iaas]`` with DRIVER = OPENNEBULA_XMLRPC, and ``[onevm_agent_template]``."""

    url: str
    user: str
    password: str = field(repr=False)
    template_file: Path = Path("agent.template")
    template_values: dict[str, str] = field(default_factory=dict)  # without FILENAME
    image_id: str | None = None
    size_id: str | None = None
    network_id: str | None = None
    gateway: str | None = None
    nameserver: str | None = None


@dataclass(frozen=True)
class LibcloudConfig:
    """``[iaas]`` with DRIVER = LIBCLOUD: any Apache Libcloud compute provider.

    ConPaaS's own names are accepted too: USER for KEY, PASSWORD for SECRET,
    IMAGE_ID for IMAGE, SIZE_ID for SIZE, SECURITY_GROUP_NAME for SECURITY_GROUPS.
    """

    provider: str  # a Libcloud provider name: EC2, OPENSTACK, AZURE_ARM...
    key: str  # the provider's key: an access key id, a user name
    image: str
    size: str
    secret: str = field(default="", repr=False)
    region: str | None = None
    endpoint: str | None = None  # another endpoint of the provider's API
    driver_options: dict[str, str] = field(default_factory=dict)  # more driver arguments
    network: tuple[str, ...] = ()  # EC2: a subnet id; OpenStack: network ids or names
    security_groups: tuple[str, ...] = ()
    key_name: str | None = None  # an SSH key pair to put on the nodes
    location: str | None = None  # an availability zone
    address: str = "private"  # which of a node's addresses the manager calls it at
    user_data: Path | None = None  # a cloud-init template (default: the built-in one)
    name: str = "conpaassql"  # the nodes' name prefix
    origin: str = "[iaas]"  # where it was configured, for messages


CloudSettings = LocalCloudConfig | OpenNebulaConfig | LibcloudConfig
DRIVERS = ("LOCAL", "OPENNEBULA_XMLRPC", "LIBCLOUD")
DEFAULT_CLOUD = "default"
_CLOUD_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class CloudConfig:
    """One cloud of the service: ``[iaas]`` (named ``default``) or ``[iaas_NAME]``."""

    name: str
    driver: str
    settings: CloudSettings


@dataclass(frozen=True)
class ManagerConfig:
    path: str | None = None
    clouds: tuple[CloudConfig, ...] = (CloudConfig(DEFAULT_CLOUD, "LOCAL", LocalCloudConfig()),)
    find_existing_agents: bool = True
    replace_lost_nodes: bool = True  # a node its cloud lost is replaced by a new one
    probe_interval: float = 1.0
    probe_timeout: float = 2.0
    heartbeat_interval: float = 5.0
    boot_timeout: float = 300.0
    failure_threshold: int = 3
    cloud_list_interval: float = 5.0
    agent_port: int = 60000
    health_port: int = 0  # the agents' plain-HTTP health port (0: agent_port + 8)
    mysql_port: int = 3306
    agents_port: int = 0  # the manager's TLS port for its agents (0: the API's port + 1)
    agents_bind: str | None = None  # where it listens (default: the API's address)
    require_token: bool = False  # an API token even on loopback (always needed beyond it)
    api_cert: str | None = None  # the API's TLS certificate beyond loopback (default: ...
    api_key: str | None = None  # ... one from the service's CA)
    api_client_ca: str | None = None  # also require client certificates from this CA
    max_request_bytes: int = 1 << 20  # a JSON body or the plain fields of a form
    max_upload_bytes: int = 1 << 40  # a file in an UPLOAD (a dump)
    max_requests: int = 256  # handled at once; more are answered 503 at once
    request_timeout: float = 30.0  # longest wait for a JSON body
    max_nodes: int = 64
    semi_sync: bool = True
    semi_sync_timeout: int = 5000  # milliseconds a commit waits for a slave's ack
    auto_failover: bool = True
    #: Seconds a master's lease lasts (domain.lease.DEFAULT_LEASE, which config may not
    #: import). At least 1 s: its master's agent fences within CHECK_INTERVAL (0.2 s).
    lease: float = 2.0
    max_reader_lag: float = 30.0  # seconds behind the master a reader may be
    seed_method: str = "auto"  # how a slave is copied: auto, physical or logical
    router: RouterConfig | None = None  # [router]: the endpoints applications use
    backup: BackupConfig = field(default_factory=BackupConfig)
    ini: IniFile | None = None

    @property
    def default_cloud(self) -> CloudConfig:
        return self.clouds[0]

    def cloud(self, name: str) -> CloudConfig | None:
        return next((cloud for cloud in self.clouds if cloud.name == name), None)

    @classmethod
    def load(cls, path: str | Path | None, env: Mapping[str, str] | None = None) -> ManagerConfig:
        if path is None:
            return cls()
        return cls.from_ini(IniFile.read(path, env))

    @classmethod
    def from_ini(cls, ini: IniFile) -> ManagerConfig:
        manager = ini.section("manager")
        agent = ini.section("agent")
        return cls(
            path=ini.path,
            clouds=_clouds(ini),
            find_existing_agents=manager.boolean("find_existing_agents", True),
            replace_lost_nodes=manager.boolean("replace_lost_nodes", True),
            probe_interval=manager.number("probe_interval", 1.0, 0.05),
            probe_timeout=manager.number("probe_timeout", 2.0, 0.05),
            heartbeat_interval=manager.number("heartbeat_interval", 5.0, 0.1),
            boot_timeout=manager.number("boot_timeout", 300.0, 1.0),
            failure_threshold=manager.integer("failure_threshold", 3, 1, 100),
            cloud_list_interval=manager.number("cloud_list_interval", 5.0, 0.1),
            agent_port=agent.integer("port", 60000, 1, 65535),
            health_port=agent.integer("health_port", 0, 0, 65535),
            mysql_port=agent.integer("mysql_port", 3306, 1, 65535),
            agents_port=manager.integer("agents_port", 0, 0, 65535),
            agents_bind=manager.get("agents_bind") or None,
            require_token=manager.boolean("require_token", False),
            api_cert=manager.get("api_cert") or None,
            api_key=manager.get("api_key") or None,
            api_client_ca=manager.get("api_client_ca") or None,
            max_request_bytes=manager.integer("max_request_bytes", 1 << 20, 1024, 1 << 30),
            max_upload_bytes=manager.integer("max_upload_bytes", 1 << 40, 1024, 1 << 50),
            max_requests=manager.integer("max_requests", 256, 1, 100_000),
            request_timeout=manager.number("request_timeout", 30.0, 0.1),
            max_nodes=manager.integer("max_nodes", 64, 1, 10000),
            semi_sync=manager.boolean("semi_sync", True),
            semi_sync_timeout=manager.integer("semi_sync_timeout", 5000, 1, 3_600_000),
            auto_failover=manager.boolean("auto_failover", True),
            lease=manager.number("lease", cls.lease, 1.0),
            max_reader_lag=manager.number("max_reader_lag", 30.0, 0.0),
            seed_method=_seed_method(manager),
            router=router_from_ini(ini),
            backup=BackupConfig.from_section(ini.section("backup")),
            ini=ini,
        )


def _clouds(ini: IniFile) -> tuple[CloudConfig, ...]:
    """``[iaas]`` is the cloud named ``default``; each ``[iaas_NAME]`` one more. Without
    any, the local cloud (this machine)."""
    more = [section for section in ini.sections if section.startswith("iaas_")]
    if more and "iaas" not in ini.sections:
        raise ConfigError(f"{ini.path} [iaas]", detail="missing: [iaas] is the default "
                          f"cloud, where nodes go unless add_nodes names one of "
                          f"{', '.join('[' + name + ']' for name in sorted(more))}")
    clouds = [_cloud(ini, "iaas", DEFAULT_CLOUD)]
    for section in sorted(ini.sections):
        if not section.startswith("iaas_"):
            continue
        name = section.removeprefix("iaas_")
        if not _CLOUD_NAME.match(name) or name == DEFAULT_CLOUD:
            raise ConfigError(f"{ini.path} [{section}]", detail="a cloud's name is 1 to 32 "
                              "of a-z, 0-9, _ and -, and not 'default' (that is [iaas])")
        clouds.append(_cloud(ini, section, name))
    local = [cloud.name for cloud in clouds if cloud.driver == "LOCAL"]
    if len(local) > 1:
        raise ConfigError(ini.path, detail=f"only one cloud may be LOCAL ({', '.join(local)} "
                          "are)")
    return tuple(clouds)


def _cloud(ini: IniFile, section_name: str, name: str) -> CloudConfig:
    section = ini.section(section_name)
    driver = (section.get("DRIVER", "LOCAL") or "LOCAL").upper()
    settings: CloudSettings
    if driver == "LOCAL":
        settings = _local_cloud(section)
    elif driver == "OPENNEBULA_XMLRPC":
        own = f"onevm_agent_template_{name}"
        template = ini.section(own if own in ini.sections else "onevm_agent_template")
        settings = _opennebula(section, template, ini.path)
    elif driver == "LIBCLOUD":
        settings = _libcloud(section, ini.path)
    else:
        raise ConfigError(section.where("DRIVER"),
                          detail=f"unknown driver {driver!r} (known: {', '.join(DRIVERS)})")
    return CloudConfig(name, driver, settings)


def _required(section: Section, *keys: str) -> str:
    """The first of ``keys`` the section gives (the others are other names of it)."""
    for key in keys:
        value = section.get(key)
        if value:
            return value
    raise ConfigError(section.where(keys[0]), detail="missing")


def _opennebula(iaas: Section, template: Section, path: str | None) -> OpenNebulaConfig:
    """The seed's keys, user and password each read as what they are named."""
    filename = relative_path(_required(template, "FILENAME"), path)
    values = {key.upper(): value for key, value in template.values.items()
              if key.upper() != "FILENAME"}
    return OpenNebulaConfig(
        url=_required(iaas, "OPENNEBULA_URL"), user=_required(iaas, "OPENNEBULA_USER"),
        password=_required(iaas, "OPENNEBULA_PASSWORD"), template_file=filename,
        template_values=values, image_id=iaas.get("OPENNEBULA_IMAGE_ID"),
        size_id=iaas.get("OPENNEBULA_SIZE_ID"), network_id=iaas.get("OPENNEBULA_NETWORK_ID"),
        gateway=iaas.get("OPENNEBULA_NETWORK_GATEWAY"),
        nameserver=iaas.get("OPENNEBULA_NETWORK_NAMESERVER"))


ADDRESSES = ("private", "public")


def _words(text: str | None) -> tuple[str, ...]:
    return tuple(word.strip() for word in (text or "").split(",") if word.strip())


def _options(section: Section, key: str) -> dict[str, str]:
    """``a=1, b=2`` as a mapping; anything else is an error naming the key."""
    options: dict[str, str] = {}
    for item in _words(section.get(key)):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(section.where(key), detail=f"{item!r} is not option=value")
        options[name.strip()] = value.strip()
    return options


#: The keys of a DRIVER = LIBCLOUD section (ConPaaS's names of some among them).
LIBCLOUD_KEYS = frozenset({
    "DRIVER", "PROVIDER", "KEY", "USER", "SECRET", "PASSWORD", "REGION", "ENDPOINT",
    "DRIVER_OPTIONS", "IMAGE", "IMAGE_ID", "SIZE", "SIZE_ID", "NETWORK", "SECURITY_GROUPS",
    "SECURITY_GROUP_NAME", "KEY_NAME", "LOCATION", "ADDRESS", "USER_DATA", "NAME"})


def _libcloud(iaas: Section, path: str | None) -> LibcloudConfig:
    unknown = sorted(set(iaas.values) - LIBCLOUD_KEYS)
    if unknown:
        raise ConfigError(iaas.where(unknown[0]), detail=f"unknown key(s) "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(LIBCLOUD_KEYS))})")
    address = (iaas.get("ADDRESS", "private") or "private").lower()
    if address not in ADDRESSES:
        raise ConfigError(iaas.where("ADDRESS"),
                          detail=f"{address!r} is not one of {', '.join(ADDRESSES)}")
    user_data = iaas.get("USER_DATA")
    name = iaas.get("NAME", "conpaassql") or "conpaassql"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}", name):
        raise ConfigError(iaas.where("NAME"), detail="a name prefix of letters, digits, _ "
                          "and - (at most 41)")
    return LibcloudConfig(
        provider=_required(iaas, "PROVIDER").upper(),
        key=_required(iaas, "KEY", "USER"),
        secret=_required(iaas, "SECRET", "PASSWORD"),
        image=_required(iaas, "IMAGE", "IMAGE_ID"),
        size=_required(iaas, "SIZE", "SIZE_ID"),
        region=iaas.get("REGION"),
        endpoint=iaas.get("ENDPOINT"),
        driver_options=_options(iaas, "DRIVER_OPTIONS"),
        network=_words(iaas.get("NETWORK")),
        security_groups=_words(iaas.get("SECURITY_GROUPS") or
                               iaas.get("SECURITY_GROUP_NAME")),
        key_name=iaas.get("KEY_NAME"),
        location=iaas.get("LOCATION"),
        address=address,
        user_data=relative_path(user_data, path) if user_data else None,
        name=name,
        origin=f"{iaas.ini.path} [{iaas.name}]",
    )


SEED_METHODS = ("auto", "physical", "logical")


def _seed_method(manager: Section) -> str:
    method = (manager.get("seed_method", "auto") or "auto").strip().lower()
    if method not in SEED_METHODS:
        raise ConfigError(manager.where("seed_method"),
                          detail=f"{method!r} is not one of {', '.join(SEED_METHODS)}")
    return method


def _local_cloud(iaas: Section) -> LocalCloudConfig:
    first, last = parse_address_range(
        iaas.get("LOCAL_ADDRESS_RANGE", "127.0.0.10-127.0.0.250") or "",
        iaas.where("LOCAL_ADDRESS_RANGE"),
    )
    cache = iaas.get("LOCAL_TEMPLATE_CACHE")
    return LocalCloudConfig(first, last, Path(cache) if cache else None,
                            _options(iaas, "LOCAL_MYSQL_OPTIONS"))

