"""Any Apache Libcloud compute provider (DRIVER = LIBCLOUD): EC2, OpenStack and others.

create = the provider's ``create_node`` with the node's context as cloud-init user
data (``cloud_init``), the node named ``<NAME>-<service>-<node>`` and, where the
provider has them, tagged with the service and node; list = the provider's nodes
of this service (by tag, else by name); destroy and reboot = Libcloud's verbs.
Libcloud's node states map onto ours, anything else to UNKNOWN. The provider's
errors come back as ``CloudError`` in the provider's own words.

Libcloud is not uniform where networks and security groups are concerned: EC2
takes a subnet and security group ids, OpenStack networks and security groups by
name; other providers take neither here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from libcloud.compute.base import NodeDriver, NodeImage, NodeSize
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.cloud.cloud_init import read_template, render_user_data
from conpaassql.config import LibcloudConfig
from conpaassql.errors import CloudError, ConfigError, ConpaasSQLError
from conpaassql.net import is_loopback

log = logging.getLogger(__name__)

SERVICE_TAG = "conpaassql-service"
NODE_TAG = "conpaassql-node"
#: DRIVER_OPTIONS whose values are kept out of messages.
SECRET_OPTION = re.compile(r"pass|secret|token|key", re.IGNORECASE)
#: Where a provider's driver takes user data, in the order looked for.
USER_DATA_ARGUMENTS = ("ex_userdata", "ex_user_data", "ex_customdata")


def _libcloud_state_map() -> dict[str, CloudNodeState]:
    on_its_way = ("pending", "starting", "rebooting", "reconfiguring", "migrating", "updating")
    stopped = ("stopping", "stopped", "suspended", "paused")
    return {"running": CloudNodeState.RUNNING, "terminated": CloudNodeState.TERMINATED,
            **dict.fromkeys(on_its_way, CloudNodeState.PENDING),
            **dict.fromkeys(stopped, CloudNodeState.STOPPED)}


def _option_value(text: str) -> Any:
    """A driver option from the configuration: true and false as such, else the text."""
    return text.lower() == "true" if text.lower() in ("true", "false") else text


def _open(config: LibcloudConfig) -> NodeDriver:
    """The provider's Libcloud driver, with the service's credentials."""
    provider = getattr(Provider, config.provider, None)
    if not isinstance(provider, str):
        raise ConfigError(f"{config.origin} PROVIDER", detail=f"{config.provider!r} is not a "
                          "Libcloud compute provider (EC2, OPENSTACK, AZURE_ARM, GCE...)")
    options: dict[str, Any] = {key: _option_value(value)
                               for key, value in config.driver_options.items()}
    if config.region:
        options["region"] = config.region
    if config.endpoint:
        where = urlsplit(config.endpoint)
        if where.scheme not in ("http", "https") or not where.hostname:
            raise ConfigError(f"{config.origin} ENDPOINT",
                              detail="an http:// or https:// address")
        if where.scheme == "http" and not is_loopback(where.hostname):
            raise ConfigError(f"{config.origin} ENDPOINT", detail="https:// only: a node's "
                              "secrets travel in its user data (http:// on loopback only)")
        options.update(host=where.hostname, secure=where.scheme == "https")
        if where.port:
            options["port"] = where.port
    try:
        return get_driver(provider)(config.key, config.secret, **options)
    except (TypeError, ValueError) as exc:  # an unknown region, a bad option
        raise ConfigError(config.origin, detail=f"Libcloud's {config.provider} driver: "
                          f"{exc}") from None


def _reason(exc: BaseException) -> str:
    """Why a connection failed, from the innermost OS error (not the request's URL)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


class LibcloudDriver(CloudDriver):
    """One provider account of Apache Libcloud."""

    STATE_MAP = _libcloud_state_map()

    def __init__(self, config: LibcloudConfig, service_id: str, cloud_name: str = "libcloud",
                 connect: Callable[[LibcloudConfig], NodeDriver] = _open) -> None:
        super().__init__(cloud_name)
        self.config = config
        self.service_id = service_id
        self._user_data = read_template(config.user_data, config.origin)
        # Any: the providers' extensions (ex_list_subnets...) are not NodeDriver's.
        self._cloud: Any = connect(config)
        self._arguments = set(inspect.signature(self._cloud.create_node).parameters)
        self._user_data_argument = next(
            (name for name in USER_DATA_ARGUMENTS if name in self._arguments), None)
        if self._user_data_argument is None and "ex_metadata" not in self._arguments:
            raise ConfigError(f"{config.origin} PROVIDER", detail=f"Libcloud's {config.provider} "
                              "driver takes no user data: a node could not learn its context")
        self._placement: dict[str, Any] | None = None
        self._name_pattern = re.compile(
            rf"^{re.escape(config.name)}-{re.escape(service_id)}-(\d+)$")

    async def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(call)
        except ConpaasSQLError:
            raise
        except OSError as exc:
            where = f" at {self.config.endpoint}" if self.config.endpoint else ""
            raise CloudError(f"cannot reach {self.config.provider}{where}: "
                             f"{_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - Libcloud raises bare Exception with the provider's error
            raise CloudError(f"{self.config.provider} refused to {what}: "
                             f"{self._scrubbed(str(exc))}") from None

    def _scrubbed(self, text: str) -> str:
        """The provider's words without the configured secrets in them."""
        secrets = [value for key, value in self.config.driver_options.items()
                   if SECRET_OPTION.search(key)]
        for secret in (self.config.secret, *secrets):
            if len(secret) >= 4:
                text = text.replace(secret, "<secret>")
        return text[:500]

    # -- placement: network, security groups, key, zone --------------------

    def _resolve_placement(self) -> dict[str, Any]:
        """The provider's objects for NETWORK, SECURITY_GROUPS, LOCATION (looked up once)."""
        config, cloud = self.config, self._cloud
        found: dict[str, Any] = {}
        if config.key_name:
            found["ex_keyname"] = config.key_name
        if config.network:
            if "ex_subnet" in self._arguments:
                subnets = cloud.ex_list_subnets(subnet_ids=list(config.network[:1]))
                if not subnets:
                    raise CloudError(f"{config.provider} has no subnet {config.network[0]}")
                found["ex_subnet"] = subnets[0]
            elif "networks" in self._arguments:
                wanted = set(config.network)
                networks = [n for n in cloud.ex_list_networks()
                            if n.id in wanted or n.name in wanted]
                if len(networks) != len(wanted):
                    raise CloudError(f"{config.provider} has no network "
                                     f"{', '.join(sorted(wanted))}")
                found["networks"] = networks
            else:
                raise ConfigError(f"{config.origin} NETWORK", detail=f"not supported for "
                                  f"{config.provider} (EC2 and OPENSTACK only)")
        if config.security_groups:
            if "ex_security_group_ids" in self._arguments:
                found["ex_security_group_ids"] = list(config.security_groups)
            elif "ex_security_groups" in self._arguments:
                groups = [g for g in cloud.ex_list_security_groups()
                          if g.name in config.security_groups]
                missing = set(config.security_groups) - {g.name for g in groups}
                if missing:
                    raise CloudError(f"{config.provider} has no security group "
                                     f"{', '.join(sorted(missing))}")
                found["ex_security_groups"] = groups
            else:
                raise ConfigError(f"{config.origin} SECURITY_GROUPS", detail=f"not supported "
                                  f"for {config.provider} (EC2 and OPENSTACK only)")
        if config.location:
            matches = [loc for loc in cloud.list_locations()
                       if config.location in (loc.id, loc.name)]
            if not matches:
                raise CloudError(f"{config.provider} has no location {config.location}")
            found["location"] = matches[0]
        return found

    # -- the verbs --------------------------------------------------------

    async def create_node(self, request: NodeRequest) -> CloudNode:
        if self._placement is None:
            self._placement = await self._call("look up the network", self._resolve_placement)
        name = f"{self.config.name}-{self.service_id}-{request.node_id}"
        arguments: dict[str, Any] = {
            "name": name,
            "image": NodeImage(self.config.image, name=self.config.image, driver=self._cloud),
            "size": NodeSize(self.config.size, name=self.config.size, ram=0, disk=0,
                             bandwidth=None, price=0.0, driver=self._cloud),
            **self._placement,
        }
        user_data = render_user_data(self._user_data, request.context.render())
        tags = {SERVICE_TAG: self.service_id, NODE_TAG: str(request.node_id)}
        if self._user_data_argument is not None:
            arguments[self._user_data_argument] = user_data
            if "ex_metadata" in self._arguments:
                arguments["ex_metadata"] = {**tags, "Name": name}
        else:  # metadata is where this provider takes user data (GCE)
            arguments["ex_metadata"] = {**tags, "user-data": user_data}
        if "ex_clienttoken" in self._arguments:  # a retried request makes no second node
            arguments["ex_clienttoken"] = name
        made = await self._call("create a node", lambda: self._cloud.create_node(**arguments))
        log.info("%s node %s created for node %d", self.config.provider, made.id,
                 request.node_id)
        return self._cloud_node(made, request.node_id)

    async def list_nodes(self) -> list[CloudNode]:
        listed = await self._call("list nodes", self._cloud.list_nodes)
        nodes = []
        for item in listed:
            node_id = self._node_id_of(item)
            if node_id is not None:
                nodes.append(self._cloud_node(item, node_id))
        return nodes

    async def destroy_node(self, ref: str) -> None:
        node = await self._find(ref)
        if node is None:
            log.info("%s node %s is gone already", self.config.provider, ref)
            return
        await self._call(f"destroy node {ref}", lambda: self._cloud.destroy_node(node))

    async def reboot_node(self, ref: str) -> None:
        node = await self._find(ref)
        if node is None:
            raise CloudError(f"{self.config.provider} has no node {ref}")
        await self._call(f"reboot node {ref}", lambda: self._cloud.reboot_node(node))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "provider": self.config.provider,
                "region": self.config.region, "image": self.config.image,
                "size": self.config.size}

    # -- helpers ----------------------------------------------------------

    async def _find(self, ref: str) -> Any:
        """The provider's live node ``ref`` (asked for by id where the provider can)."""
        if "ex_node_ids" in inspect.signature(self._cloud.list_nodes).parameters:
            try:
                listed = await self._call("find a node",
                                          lambda: self._cloud.list_nodes(ex_node_ids=[ref]))
            except CloudError as exc:
                if "NotFound" in str(exc):  # EC2: InvalidInstanceID.NotFound
                    return None
                raise
        else:
            listed = await self._call("list nodes", self._cloud.list_nodes)
        return next((item for item in listed if item.id == ref and
                     self.map_state(item.state) is not CloudNodeState.TERMINATED), None)

    def _node_id_of(self, item: Any) -> int | None:
        """Our node id, if the provider's node belongs to this service."""
        extra = item.extra if isinstance(item.extra, dict) else {}
        tags = extra.get("tags") or extra.get("metadata") or {}
        if isinstance(tags, dict) and tags.get(SERVICE_TAG) == self.service_id:
            value = str(tags.get(NODE_TAG, ""))
            return int(value) if value.isdigit() else None
        match = self._name_pattern.match(str(item.name or ""))
        return int(match.group(1)) if match else None

    def _cloud_node(self, item: Any, node_id: int) -> CloudNode:
        private = [ip for ip in item.private_ips or [] if ip]
        public = [ip for ip in item.public_ips or [] if ip]
        chosen = public if self.config.address == "public" else private or public
        return CloudNode(ref=str(item.id), node_id=node_id, name=str(item.name),
                         ip=chosen[0] if chosen else None, state=self.map_state(item.state),
                         extra={"state": str(item.state), "private_ips": private,
                                "public_ips": public})
