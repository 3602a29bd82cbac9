"""Base classes of the agent protocol's messages.

A ``Request`` is strict and refuses unknown keys, as the agent always has; a
request that does not validate, on either side, raises the ConPaaS error
(``Missing argument: X``, ``Invalid argument: X DETAIL:...``, ``Unexpected
arguments [...]``). A ``Reply`` ignores keys it does not know, so that a
manager understands an agent of a slightly newer version.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from conpaassql.rpc.registry import conpaas_error
from conpaassql.rpc.types import Params


class Request(Params):
    """The params of one agent method."""

    @model_validator(mode="wrap")
    @classmethod
    def _conpaas_errors(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise conpaas_error(cls, exc) from None

    def wire(self) -> dict[str, Any]:
        """The params as sent: the fields the caller set, but None (the defaults are the
        agent's)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True,
                               exclude_none=True)


class Reply(BaseModel):
    """The result of one agent method."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    #: Keys left out of the wire form when they are None (the agent never sent them).
    omitted_if_none: ClassVar[frozenset[str]] = frozenset()

    def wire(self) -> dict[str, Any]:
        """The result as the agent sends it."""
        data = self.model_dump(mode="json", by_alias=True)
        for key in self.omitted_if_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class OpenReply(Reply):
    """A reply that carries keys beyond its declared fields (figures, a seed-era
    layout), kept as they came."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
