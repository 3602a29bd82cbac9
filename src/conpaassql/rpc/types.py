"""Parameter types shared by the RPC methods of manager and agent.

They are pydantic types so that one declaration both validates a request and
describes the method (for ``rpc.discover``). Strings refuse NUL bytes and are
bounded; ids accept the decimal strings the seed-era clients send ("12").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

MAX_TEXT = 1024


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


def _coerce_positive_int(value: object) -> object:
    """Accept an int or a string of decimal digits; leave the rest to fail."""
    if isinstance(value, bool):
        raise ValueError("must be a positive integer")
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 10:
            return int(text)
        raise ValueError("must be a positive integer")
    return value


def _coerce_id_or_all(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    return _coerce_positive_int(value)


def _coerce_bool(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
        raise ValueError("must be a boolean")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)]
"""A bounded string without NUL bytes."""

PositiveInt = Annotated[
    int, BeforeValidator(_coerce_positive_int), Field(ge=1, le=2**31 - 1)
]
"""An integer >= 1; decimal strings are accepted."""

NodeId = PositiveInt
"""The id of a node of the service."""

NodeIdOrAll = Annotated[
    Annotated[PositiveInt | Literal["all"], Field(union_mode="left_to_right")],
    BeforeValidator(_coerce_id_or_all),
]
"""A node id, or the string 'all'."""

Flag = Annotated[bool, BeforeValidator(_coerce_bool)]
"""A boolean; 'true'/'false' strings (from GET and forms) are accepted."""


class Params(BaseModel):
    """Base of every method's parameter model: strict, no unknown keys."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, populate_by_name=True
    )


class NoParams(Params):
    """A method that takes no parameters."""
