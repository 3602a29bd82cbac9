"""What a router is told: where the manager is and how to talk to it, its two
listeners, and how HAProxy checks the nodes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conpaassql.rpc.endpoint import base_url, check_host

#: The agents' plain-HTTP health port when ``list_nodes`` does not give it.
DEFAULT_HEALTH_PORT = 60008


@dataclass(frozen=True)
class Address:
    """A host and a port (a listener, the manager)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Address:
        """``HOST:PORT``, ``[V6]:PORT``, or ``HOST`` with ``default_port``;
        ``ValueError`` otherwise."""
        host, port_text = text, ""
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        if not port_text and default_port is not None:
            port_text = str(default_port)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r} is not HOST:PORT")
        return cls(check_host(host), int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port}


@dataclass(frozen=True)
class Checks:
    """How HAProxy checks each node's health port."""

    inter_ms: int = 300
    fall: int = 2
    rise: int = 2
    max_lag: float = 10.0
    """The most seconds a slave may be behind and still take readers."""
    max_lag_tx: int | None = None
    """The most transactions a slave may have received but not applied (none: no limit)."""

    @property
    def replica_path(self) -> str:
        """The readers' health check: ``/replica`` with the limits."""
        path = f"/replica?max_lag={self.max_lag:g}"
        return path if self.max_lag_tx is None else f"{path}&max_lag_tx={self.max_lag_tx}"

    @property
    def settle(self) -> float:
        """Seconds a new server waits, drained, for its first checks before it may
        take connections (HAProxy counts a server leaving maintenance as up)."""
        return 2 * self.inter_ms / 1000 + 0.1


@dataclass(frozen=True)
class RouterSettings:
    name: str
    manager: Address
    writer: Address
    readers: Address
    state_dir: Path
    https: bool = False
    token: str | None = None
    verify: ssl.SSLContext | bool = True
    checks: Checks = field(default_factory=Checks)
    reader_fallback: bool = True
    """The master takes the readers' connections when no slave qualifies."""
    poll_interval: float = 1.0
    slots: int = 32
    """HAProxy's server slots per backend at start (doubled by a reload when too few)."""
    haproxy: str = "haproxy"
    threads: int = 1
    """HAProxy's threads (0: one per CPU, its default). One forwards some 30,000
    small queries a second and spends less CPU on each than two on 2 CPUs
    (bench/router.py), where it competes with the servers it routes to."""
    hosts: tuple[str, ...] = ()
    """Names the router is reached by, told to the manager when it registers."""

    @property
    def manager_url(self) -> str:
        return base_url(self.manager.host, self.manager.port, https=self.https)
