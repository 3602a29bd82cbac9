"""``[router]``: the router whose addresses applications are given."""

from __future__ import annotations

import re
from dataclasses import dataclass

from conpaassql.config.ini import IniFile
from conpaassql.errors import ConfigError

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


def router_from_ini(ini: IniFile) -> RouterConfig | None:
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
