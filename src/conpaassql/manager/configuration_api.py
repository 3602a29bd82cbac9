"""The manager's methods for the service's server configuration (``configuration``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from conpaassql.manager import targets
from conpaassql.manager.configuration import ServiceConfiguration
from conpaassql.protocol.agent import MAX_OPTIONS
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import NodeId, Params, Text

OptionName = Annotated[str, Field(min_length=1, max_length=64)]
OptionValue = Annotated[StrictBool | StrictInt | StrictFloat | Text,
                        Field(union_mode="left_to_right")]
ApplyWhen = Literal["immediate", "next-restart"]


class SetConfigurationParams(Params):
    options: Annotated[dict[OptionName, OptionValue], Field(min_length=1,
                                                            max_length=MAX_OPTIONS)]
    apply: ApplyWhen = "immediate"


class ResetConfigurationParams(Params):
    options: Annotated[list[OptionName], Field(min_length=1, max_length=MAX_OPTIONS)]
    apply: ApplyWhen = "immediate"


class RestartParams(Params):
    serviceNodeId: NodeId | None = Field(default=None, validation_alias=targets.NODE_ID_ALIASES)


class ConfigurationApi:
    """Binds the server configuration's use cases to RPC method names."""

    def __init__(self, configuration: ServiceConfiguration) -> None:
        self.configuration = configuration

    def register(self, registry: Registry) -> None:
        registry.add("set_server_configuration", "POST", self.set_server_configuration,
                     SetConfigurationParams)
        registry.add("get_server_configuration", "GET", self.get_server_configuration)
        registry.add("reset_server_configuration", "POST", self.reset_server_configuration,
                     ResetConfigurationParams)
        registry.add("restart_nodes", "POST", self.restart_nodes, RestartParams)

    async def set_server_configuration(self, params: SetConfigurationParams,
                                       ctx: CallContext) -> dict[str, Any]:
        """Set server options on every node: checked everywhere first, dynamic ones at once,
        the others by a rolling restart (``apply: next-restart``: at the next restart)."""
        return await self.configuration.set_options(params.options, params.apply)

    async def get_server_configuration(self, params: Params,
                                       ctx: CallContext) -> dict[str, Any]:
        """The service's server options and, per node, their values in effect and whether
        a restart is pending."""
        return await self.configuration.describe()

    async def reset_server_configuration(self, params: ResetConfigurationParams,
                                         ctx: CallContext) -> dict[str, Any]:
        """Drop options from the service's configuration."""
        return await self.configuration.reset_options(params.options, params.apply)

    async def restart_nodes(self, params: RestartParams, ctx: CallContext) -> dict[str, Any]:
        """A rolling restart of every running node (or of one): slaves first, then a
        switchover, then the old master."""
        return await self.configuration.restart_nodes(params.serviceNodeId)
