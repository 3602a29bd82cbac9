"""Configuration files in the seed's INI format, read into typed objects.

Keys are case-insensitive (``OPENNEBULA_URL`` and ``opennebula_url`` alike).
``$NAME`` and ``${NAME}`` in a value are filled from the environment or from
another key of the same section; in strict sections an unknown reference is an
error naming the file, section and key. Sections that are templates for the
cloud (``[onevm_agent_template]``) keep unknown references for the cloud to fill.
"""

from __future__ import annotations

import configparser
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conpaassql.errors import ConfigError

_REFERENCE = re.compile(r"\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
#: Sections that are templates for the cloud: unknown references are the cloud's.
TEMPLATE_SECTION = "onevm_agent_template"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
FIRST_LOCAL_ADDRESS = ipaddress.IPv4Address("127.0.0.10")
LAST_LOCAL_ADDRESS = ipaddress.IPv4Address("127.0.0.250")


def _join_continued_lines(text: str) -> str:
    """Lines ending with a backslash go on on the next line (the seed's CONTEXT does)."""
    return re.sub(r"\\[ \t]*\r?\n[ \t]*", "", text)


def _expand_section(raw: dict[str, str], env: Mapping[str, str], strict: bool,
                    where: str) -> dict[str, str]:
    """Fill references from the section's other keys (which may refer further)
    and from the environment; what is filled in is not scanned again."""
    resolved: dict[str, str] = {}

    def resolve(key: str, chain: tuple[str, ...]) -> str:
        if key in resolved:
            return resolved[key]
        if key in chain:
            raise ConfigError(f"{where} {key}", detail="references form a cycle: "
                              + " -> ".join((*chain, key)))

        def fill(match: re.Match[str]) -> str:
            name = match.group(2) or match.group(3)
            if name in raw and name != key:
                return resolve(name, (*chain, key))
            if name in env:
                return env[name]
            if strict:
                raise ConfigError(f"{where} {key}",
                                  detail=f"${name} is not set in the environment")
            return match.group(0)

        resolved[key] = _REFERENCE.sub(fill, raw[key])
        return resolved[key]

    return {key: resolve(key, ()) for key in raw}


class IniFile:
    """A parsed INI file whose values have their references filled."""

    def __init__(self, sections: dict[str, dict[str, str]], path: str) -> None:
        self.sections = sections
        self.path = path

    @classmethod
    def read(cls, path: str | Path, env: Mapping[str, str] | None = None) -> IniFile:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), detail=exc.strerror or str(exc)) from None
        except UnicodeDecodeError:
            raise ConfigError(str(path), detail="not UTF-8 text") from None
        return cls.from_text(text, env, str(path))

    @classmethod
    def from_text(cls, text: str, env: Mapping[str, str] | None = None,
                  name: str = "<text>") -> IniFile:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str.upper  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(_join_continued_lines(text), source=name)
        except configparser.Error as exc:
            raise ConfigError(name, detail=str(exc).splitlines()[0]) from None
        return cls.from_parser(parser, name, os.environ if env is None else env)

    @classmethod
    def from_parser(cls, parser: configparser.ConfigParser, path: str,
                    env: Mapping[str, str]) -> IniFile:
        sections: dict[str, dict[str, str]] = {}
        for section in parser.sections():
            raw = dict(parser.items(section))
            strict = not section.lower().startswith(TEMPLATE_SECTION)
            sections[section.lower()] = _expand_section(raw, env, strict, f"{path} [{section}]")
        return cls(sections, path)

    def section(self, name: str) -> Section:
        return Section(self, name.lower(), self.sections.get(name.lower(), {}))


@dataclass
class Section:
    ini: IniFile
    name: str
    values: dict[str, str]

    def where(self, key: str) -> str:
        return f"{self.ini.path} [{self.name}] {key.upper()}"

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key.upper())
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def require(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise ConfigError(self.where(key), detail="missing")
        return value

    def integer(self, key: str, default: int, minimum: int = 0,
                maximum: int = 2**31 - 1) -> int:
        text = self.get(key)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(self.where(key), detail=f"{text!r} is not an integer") from None
        if not minimum <= value <= maximum:
            raise ConfigError(self.where(key), detail=f"must be between {minimum} and {maximum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        text = self.get(key)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(self.where(key), detail=f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(self.where(key), detail=f"must be a number of at least {minimum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        text = self.get(key)
        if text is None:
            return default
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ConfigError(self.where(key), detail=f"{text!r} is not true or false")


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


_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|[0-9A-Fa-f:.]{2,45}")


@dataclass(frozen=True)
class RouterConfig:
    """A router the configuration names (``[router]``): where applications connect."""

    writer: tuple[str, int]
    readers: tuple[str, int]
    name: str = "configured"
    hosts: tuple[str, ...] = ()  # more names and addresses its certificates must hold


def parse_host_port(text: str, where: str) -> tuple[str, int]:
    """``host:port`` or ``[v6 address]:port``."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() \
            or not 1 <= int(port) <= 65535:
        raise ConfigError(where, detail=f"{text!r} is not host:port")
    return host, int(port)


def _router(ini: IniFile) -> RouterConfig | None:
    section = ini.section("router")
    writer, readers = section.get("writer"), section.get("readers")
    if writer is None and readers is None:
        return None
    hosts = tuple(h.strip() for h in (section.get("hosts") or "").split(",") if h.strip())
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ConfigError(section.where("hosts"), detail=f"{host!r} is not a host")
    return RouterConfig(parse_host_port(section.require("writer"), section.where("writer")),
                        parse_host_port(section.require("readers"), section.where("readers")),
                        section.get("name") or "configured", hosts)


#: The keys of ``[backup]``.
BACKUP_KEYS = frozenset({
    "STORE", "ENDPOINT_URL", "REGION", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN",
    "ADDRESSING_STYLE", "PART_SIZE", "ARCHIVE_INTERVAL"})
ADDRESSING_STYLES = ("auto", "path", "virtual")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MIB = 1 << 20


@dataclass(frozen=True)
class BackupConfig:
    """``[backup]``: where backups are kept. ``path`` for a local directory (None: the
    embedded default, ``<state dir>/backups``), or ``bucket`` (and ``prefix``) of an
    S3-compatible store. S3 credentials None: boto3's own (the environment's
    ``AWS_ACCESS_KEY_ID``..., a profile, an instance role)."""

    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"
    part_size: int = 8 * MIB  # bytes of each part of a multipart upload
    archive_interval: float = 5.0  # seconds between binlog archive passes (the RPO)

    @property
    def url(self) -> str:
        """The store, as configured (no secret): ``s3://bucket/prefix`` or ``file://``."""
        if self.bucket:
            return f"s3://{self.bucket}/{self.prefix}"
        return self.path.as_uri() if self.path else "file://<state dir>/backups"

    def directory(self, state_dir: Path) -> Path:
        """The file store's directory (for an S3 store too: its default would be)."""
        return self.path if self.path is not None else state_dir / "backups"

    @classmethod
    def from_section(cls, section: Section) -> BackupConfig:
        unknown = sorted(set(section.values) - BACKUP_KEYS)
        if unknown:
            raise ConfigError(section.where(unknown[0]), detail=f"unknown key(s) "
                              f"{', '.join(unknown)} (known: {', '.join(sorted(BACKUP_KEYS))})")
        style = (section.get("addressing_style", "auto") or "auto").lower()
        if style not in ADDRESSING_STYLES:
            raise ConfigError(section.where("addressing_style"),
                              detail=f"{style!r} is not one of {', '.join(ADDRESSING_STYLES)}")
        endpoint = section.get("endpoint_url")
        if endpoint and (urlsplit(endpoint).username or urlsplit(endpoint).password):
            raise ConfigError(section.where("endpoint_url"), detail="credentials go in "
                              "access_key_id and secret_access_key, not in the URL")
        if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ConfigError(section.where("endpoint_url"),
                              detail=f"{endpoint!r} is not an http:// or https:// URL")
        access, secret = section.get("access_key_id"), section.get("secret_access_key")
        if bool(access) != bool(secret):
            raise ConfigError(section.where("secret_access_key" if access else "access_key_id"),
                              detail="access_key_id and secret_access_key go together")
        path, bucket, prefix = _backup_store(section)
        if bucket is None and endpoint:
            raise ConfigError(section.where("endpoint_url"), detail="only for an s3:// store")
        return cls(path=path, bucket=bucket, prefix=prefix, endpoint_url=endpoint,
                   region=section.get("region"), access_key_id=access,
                   secret_access_key=secret, session_token=section.get("session_token"),
                   addressing_style=style,
                   part_size=section.integer("part_size", 8, 5, 5120) * MIB,
                   archive_interval=section.number("archive_interval", 5.0, 0.1))


def _backup_store(section: Section) -> tuple[Path | None, str | None, str]:
    """``file:///path``, a bare path (relative to the file), or ``s3://bucket/prefix``."""
    text = section.get("store")
    if text is None:
        return None, None, ""
    where = section.where("store")
    parts = urlsplit(text)
    if parts.scheme == "s3":
        if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
            raise ConfigError(where, detail=f"{parts.netloc!r} is not a bucket name "
                              "(3 to 63 of a-z, 0-9, . and -)")
        if parts.query or parts.fragment:
            raise ConfigError(where, detail="an s3:// URL has no ?query or #fragment")
        return None, parts.netloc, parts.path.strip("/")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(where, detail="a file URL is file:///absolute/path")
        return Path(unquote(parts.path)), None, ""
    if parts.scheme:
        raise ConfigError(where, detail=f"{text!r}: a store is file:///path or "
                          "s3://bucket/prefix")
    return _relative_path(text, section.ini.path), None, ""


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
            max_reader_lag=manager.number("max_reader_lag", 30.0, 0.0),
            seed_method=_seed_method(manager),
            router=_router(ini),
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


def _relative_path(text: str, path: str | None) -> Path:
    """A file named in the configuration, relative to the configuration file."""
    file = Path(text)
    if not file.is_absolute() and path:
        file = Path(path).parent / file
    return file


def _opennebula(iaas: Section, template: Section, path: str | None) -> OpenNebulaConfig:
    """The seed's keys, user and password each read as what they are named."""
    filename = _relative_path(_required(template, "FILENAME"), path)
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
        user_data=_relative_path(user_data, path) if user_data else None,
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

