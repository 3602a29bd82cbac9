"""A node's context: what a new node is told at boot to become an agent.

Every driver delivers the same text: ``KEY='value'`` lines that a shell can
source, as OpenNebula's ``context.sh`` is sourced (the local driver writes it to
a file; a VM receives it in its CONTEXT or user data). It carries secrets, so
whoever stores it keeps it private (mode 0600). It is the contract between the
cloud drivers, which write it, and the agent, which boots from it: neither layer
owns it, so it lives beside them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, fields

from conpaassql.errors import ConfigError

PREFIX = "CONPAASSQL_"


@dataclass(frozen=True)
class NodeContext:
    manager_url: str
    service_id: str
    node_id: int
    secret: str
    root_password: str
    ip: str | None = None  # known up front on the local cloud; a VM reads its NIC
    agent_port: int = 60000
    health_port: int | None = None  # the plain-HTTP health port (default: agent_port + 8)
    mysql_port: int = 3306
    heartbeat_interval: float = 5.0
    data_dir: str | None = None  # where the agent keeps the node's data
    template_dir: str | None = None  # a pre-initialised datadir to copy on first boot
    mysql_options: dict[str, str] = field(default_factory=dict)
    ca_cert: str | None = None  # the service CA (PEM): whom the node trusts
    tls_cert: str | None = None  # the node's own certificate (PEM) ...
    tls_key: str | None = None  # ... and its private key (PEM)
    grant_key: str | None = None  # the public key (PEM) the manager's copy grants verify with

    def __repr__(self) -> str:
        return f"NodeContext(node_id={self.node_id}, service_id={self.service_id!r}, <secrets>)"

    def render(self) -> str:
        """The context as shell-sourceable ``KEY='value'`` lines."""
        lines = []
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if isinstance(value, dict):
                value = json.dumps(value, separators=(",", ":"))
            lines.append(f"{PREFIX}{item.name.upper()}={shlex.quote(str(value))}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, origin: str = "context") -> NodeContext:
        """Read the context back; unknown keys (a cloud's own) are ignored."""
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            raise ConfigError(origin, detail=str(exc)) from None
        values: dict[str, str] = {}
        for word in words:
            key, sep, value = word.partition("=")
            if not sep or not key:
                raise ConfigError(origin, detail=f"{word[:40]!r} is not KEY=value")
            values[key] = value
        return cls.from_mapping(values, origin)

    @classmethod
    def from_mapping(cls, values: dict[str, str], origin: str) -> NodeContext:
        kwargs: dict[str, object] = {}
        for item in fields(cls):
            key = PREFIX + item.name.upper()
            if key not in values:
                continue
            raw = values[key]
            try:
                if item.name in ("node_id", "agent_port", "health_port", "mysql_port"):
                    kwargs[item.name] = int(raw)
                elif item.name == "heartbeat_interval":
                    kwargs[item.name] = float(raw)
                elif item.name == "mysql_options":
                    kwargs[item.name] = _parse_options(raw)
                else:
                    kwargs[item.name] = raw
            except ValueError:
                raise ConfigError(f"{origin} {key}", detail=f"bad value {raw!r}") from None
        for required in ("manager_url", "service_id", "node_id", "secret", "root_password"):
            if required not in kwargs:
                raise ConfigError(f"{origin} {PREFIX}{required.upper()}", detail="missing")
        return cls(**kwargs)  # type: ignore[arg-type]


def _parse_options(raw: str) -> dict[str, str]:
    """Options as JSON (what ``render`` writes) or as ``a=1,b=2``."""
    if raw.startswith("{"):
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(raw)
        return {str(k): str(v) for k, v in data.items()}
    options: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(item)
        options[key.strip()] = value.strip()
    return options
