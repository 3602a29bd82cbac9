"""The method registry: names, verbs, parameter models and handlers.

A server is built from one registry; the registry validates every call's params
(turning pydantic's findings into the ConPaaS error texts) and describes the API
(OpenRPC) from the same declarations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from conpaassql.errors import (
    BadRequestError,
    InvalidArgumentError,
    MissingArgumentError,
    UnexpectedArgumentsError,
)
from conpaassql.rpc.types import NoParams, Params

Verb = Literal["GET", "POST", "UPLOAD"]
Access = Literal["user", "owner", "agent", "manager", "peer", "granted"]
"""Who may call a method: anyone with the API's credential (``user``), or only with
an admin one (``owner``: it shows a secret, if by GET), the service's
agents (``agent``, on the manager), its manager (``manager``, on an agent), its
manager and the other nodes of the service (``peer``: a copy one node takes of
another), or its manager and a client showing the manager's transfer grant for
this very method (``granted``: a dump streamed straight to or from a node)."""


@dataclass
class CallContext:
    """What a handler may know of the call besides its params."""

    method: str
    headers: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, Any] = field(default_factory=dict)
    client_host: str | None = None
    principal: str | None = None


Handler = Callable[[Any, CallContext], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    name: str
    verb: Verb
    params: type[Params]
    handler: Handler
    doc: str = ""
    files: tuple[str, ...] = ()
    access: Access = "user"

    def validate(self, raw: Mapping[str, Any]) -> Params:
        """Check ``raw`` against the method's params; raise the ConPaaS error."""
        return validate_params(self.params, raw)


class Registry:
    """An ordered collection of methods, looked up by name."""

    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def add(
        self,
        name: str,
        verb: Verb,
        handler: Handler,
        params: type[Params] = NoParams,
        *,
        doc: str = "",
        files: tuple[str, ...] = (),
        access: Access = "user",
    ) -> Method:
        if name in self._methods:
            raise ValueError(f"method {name} registered twice")
        method = Method(name, verb, params, handler, doc or (handler.__doc__ or ""), files, access)
        self._methods[name] = method
        return method

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def __iter__(self) -> Any:
        return iter(self._methods.values())

    def __len__(self) -> int:
        return len(self._methods)


def _field_name(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "params"
    first = str(loc[0])
    info = model.model_fields.get(first)
    if info is not None and info.alias:
        return info.alias
    return first


def validate_params(model: type[Params], raw: Mapping[str, Any]) -> Params:
    """Validate ``raw`` into ``model``, reporting like the original service."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise conpaas_error(model, exc) from None


def conpaas_error(model: type[BaseModel], exc: ValidationError) -> BadRequestError:
    """The ConPaaS error for pydantic's findings on ``model``.

    Order of precedence: a missing argument, then an invalid one, then the
    unexpected ones (all named at once).
    """
    errors = exc.errors(include_url=False, include_input=False)
    missing = [e for e in errors if e["type"] == "missing"]
    if missing:
        return MissingArgumentError(_field_name(model, missing[0]["loc"]))
    extra = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    invalid = [e for e in errors if e["type"] != "extra_forbidden"]
    if invalid:
        first = invalid[0]
        message = str(first["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        return InvalidArgumentError(_field_name(model, first["loc"]), detail=message)
    return UnexpectedArgumentsError(extra)
