"""The routers the manager knows: where applications connect to write and to read.

A router (``conpaassql router``: HAProxy following the agents' health endpoints)
registers itself with ``register_router``: its name, its writer and readers
addresses, and more names its clients may use. The manager keeps them (in its
store) and names them in ``get_service_info``: ``endpoints`` are the configured
router's (``[router]``), else the most recently registered one's. Every node's
certificate names every router's addresses, so that a client that verifies the
server connects through any of them.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from conpaassql.config import RouterConfig
from conpaassql.manager.store import Store
from conpaassql.protocol.agent import HostName, Port
from conpaassql.rpc.types import Params

log = logging.getLogger(__name__)

META_KEY = "routers"
MAX_ROUTERS = 64
MAX_HOSTS = 16
_ROUTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def router_name(value: str) -> str:
    if not _ROUTER_NAME.fullmatch(value):
        raise ValueError("must be 1 to 63 letters, digits, '.', '_' or '-' (not first)")
    return value


RouterName = Annotated[str, AfterValidator(router_name)]


class EndpointParams(Params):
    host: HostName
    port: Port


class RegisterRouterParams(Params):
    name: RouterName
    writer: EndpointParams
    readers: EndpointParams
    hosts: Annotated[list[HostName], Field(max_length=MAX_HOSTS)] = []


def _endpoint(host: str, port: int) -> dict[str, Any]:
    return {"host": host, "port": port}


def _routable(host: str) -> bool:
    """A name a client may connect by (not a wildcard address a router listens on)."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return True


def router_names(router: dict[str, Any]) -> list[str]:
    """The names and addresses a router's clients may reach the nodes by."""
    found = [router["writer"]["host"], router["readers"]["host"], *router.get("hosts", ())]
    return [host for host in dict.fromkeys(found) if _routable(host)]


class Routers:
    """The configured router and those registered, kept in the store's meta."""

    def __init__(self, store: Store, configured: RouterConfig | None) -> None:
        self.store = store
        self.configured = None if configured is None else {
            "name": configured.name, "source": "configuration",
            "writer": _endpoint(*configured.writer), "readers": _endpoint(*configured.readers),
            "hosts": list(configured.hosts), "registered_at": None}

    def registered(self) -> list[dict[str, Any]]:
        text = self.store.meta(META_KEY)
        if not text:
            return []
        try:
            found = json.loads(text)
        except ValueError:
            log.error("the store's list of routers is not JSON; ignored")
            return []
        return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []

    def known(self) -> list[dict[str, Any]]:
        """The configured router first, then those registered, oldest first."""
        return ([self.configured] if self.configured else []) + self.registered()

    def endpoints(self) -> dict[str, Any] | None:
        """The writer and readers addresses applications use (None: no router known)."""
        chosen = self.configured
        if chosen is None:
            registered = self.registered()
            if registered:
                chosen = max(registered, key=lambda r: float(r.get("registered_at") or 0))
        if chosen is None:
            return None
        return {"writer": chosen["writer"], "readers": chosen["readers"]}

    def names(self) -> list[str]:
        """Every name and address of every router (for the nodes' certificates)."""
        every: list[str] = []
        for router in self.known():
            every += router_names(router)
        return list(dict.fromkeys(every))

    def register(self, params: RegisterRouterParams) -> tuple[dict[str, Any], bool]:
        """Add or update a router; (its record, whether the routers' names changed)."""
        before = set(self.names())
        record = {
            "name": params.name, "source": "registered",
            "writer": _endpoint(params.writer.host, params.writer.port),
            "readers": _endpoint(params.readers.host, params.readers.port),
            "hosts": list(dict.fromkeys(params.hosts)), "registered_at": time.time()}
        others = [r for r in self.registered() if r.get("name") != params.name]
        routers = [*others, record][-MAX_ROUTERS:]
        self.store.set_meta(META_KEY, json.dumps(routers, separators=(",", ":")))
        return record, set(self.names()) != before
