"""The server's own options: what this mariadbd knows, and values checked against it.

The catalogue comes from the server itself: ``information_schema.SYSTEM_VARIABLES``
gives every variable's type, range, choices and whether ``SET GLOBAL`` can change
it (``READ_ONLY``: a restart is needed); ``mariadbd --verbose --help`` adds the
options that are not variables (they take a restart, their values are not typed).
Names are kept in the server's underscore spelling.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conpaassql.errors import InvalidArgumentError
from conpaassql.mysql.config import is_protected, normalise_option, validate_option_value
from conpaassql.mysql.connection import Session
from conpaassql.protocol.options import wire_value

INTEGER_TYPES = frozenset({"INT", "INT UNSIGNED", "BIGINT", "BIGINT UNSIGNED"})
_INTEGER = re.compile(r"(-?\d+)([KMGTP]?)", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_TRUE = frozenset({"on", "true", "1", "yes"})
_FALSE = frozenset({"off", "false", "0", "no"})
_FLAG = re.compile(r"([a-z_]+)=(on|off|default)")
HELP_TYPE = "STRING"  # an option that is not a variable

CATALOGUE_SQL = (
    "SELECT LOWER(VARIABLE_NAME) AS name, VARIABLE_TYPE AS type, READ_ONLY AS read_only, "
    "NUMERIC_MIN_VALUE AS minimum, NUMERIC_MAX_VALUE AS maximum, "
    "ENUM_VALUE_LIST AS choices FROM information_schema.SYSTEM_VARIABLES "
    "WHERE COMMAND_LINE_ARGUMENT IS NOT NULL")


@dataclass(frozen=True)
class OptionInfo:
    """One option as the server describes it."""

    name: str
    type: str
    dynamic: bool
    minimum: str | None = None
    maximum: str | None = None
    choices: tuple[str, ...] = ()

    def sql_value(self, value: str) -> int | float | str:
        """``value`` (as ``check_value`` made it) typed for ``SET GLOBAL``."""
        if self.type in INTEGER_TYPES:
            return int(value)
        if self.type == "DOUBLE":
            return float(value)
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": self.type, "dynamic": self.dynamic,
                **({"min": self.minimum, "max": self.maximum} if self.minimum else {}),
                **({"choices": list(self.choices)} if self.choices else {})}


Catalogue = Mapping[str, OptionInfo]


def catalogue_of(rows: list[dict[str, Any]], help_names: list[str]) -> dict[str, OptionInfo]:
    """The catalogue from ``CATALOGUE_SQL``'s rows and the names ``--help`` lists."""
    found: dict[str, OptionInfo] = {}
    for row in rows:
        name = str(row["name"])
        choices = tuple(str(row["choices"]).split(",")) if row.get("choices") else ()
        found[name] = OptionInfo(
            name, str(row["type"]), dynamic=str(row["read_only"]).upper() == "NO",
            minimum=None if row.get("minimum") is None else str(row["minimum"]),
            maximum=None if row.get("maximum") is None else str(row["maximum"]),
            choices=choices)
    for raw in help_names:
        name = raw.replace("-", "_")
        found.setdefault(name, OptionInfo(name, HELP_TYPE, dynamic=False))
    return found


def parse_help(text: str) -> list[str]:
    """The option names of ``mariadbd --verbose --help``'s table of variables."""
    names: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("-------- ") or line.startswith("-" * 20):
            break
    for line in lines:
        if not line.strip():
            break
        names.append(line.split()[0])
    return names


async def read_catalogue(session: Session, mariadbd: str) -> dict[str, OptionInfo]:
    """Ask the running server and its binary which options exist."""
    rows = await session.execute(CATALOGUE_SQL, idempotent=True)
    process = await asyncio.create_subprocess_exec(
        mariadbd, "--no-defaults", "--verbose", "--help",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await process.communicate()
    return catalogue_of(rows, parse_help(out.decode("utf-8", errors="replace")))


def option_name(raw: str) -> str:
    """``raw`` in the server's spelling (``max_connections``), or InvalidArgumentError."""
    try:
        dashed = normalise_option(raw)
    except InvalidArgumentError:
        raise _bad(str(raw)[:64], "not a valid option name") from None
    name = dashed.replace("-", "_")
    if is_protected(dashed):
        raise _bad(name, "managed by the service; it cannot be changed")
    return name


def check_value(info: OptionInfo, raw: str) -> str:
    """``raw`` as the server spells it for ``info``'s type, or InvalidArgumentError."""
    try:
        text = validate_option_value(raw).strip()
    except InvalidArgumentError as exc:
        raise _bad(info.name, str(exc.args_[0]) if exc.args_ else "bad value") from None
    kind = info.type
    if kind == "BOOLEAN":
        return _boolean(info, text)
    if kind in INTEGER_TYPES:
        return _integer(info, text)
    if kind == "DOUBLE":
        return _double(info, text)
    if kind == "ENUM":
        return _choice(info, text)
    if kind == "SET":
        return ",".join(_choice(info, part.strip()) for part in text.split(",") if part.strip())
    if kind == "FLAGSET":
        return _flags(info, text)
    return text


def check_options(options: Mapping[str, object], catalogue: Catalogue) -> dict[str, str]:
    """Every option of ``options`` checked: names known and not protected, values of
    their type. The first wrong one raises InvalidArgumentError."""
    checked: dict[str, str] = {}
    for raw_name, raw_value in options.items():
        name = option_name(raw_name)
        info = catalogue.get(name)
        if info is None:
            raise _bad(name, "not an option of this server")
        checked[name] = check_value(info, wire_value(raw_value))
    return checked


def _bad(name: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError("options", detail=f"{name}: {why}")


def _boolean(info: OptionInfo, text: str) -> str:
    lowered = text.lower()
    if lowered in _TRUE:
        return "ON"
    if lowered in _FALSE:
        return "OFF"
    raise _bad(info.name, f"must be ON or OFF, not {text[:40]!r}")


def _integer(info: OptionInfo, text: str) -> str:
    match = _INTEGER.fullmatch(text)
    if match is None:
        raise _bad(info.name, f"must be an integer (K, M, G suffixes allowed), not {text[:40]!r}")
    value = int(match.group(1)) * _MULTIPLIERS[match.group(2).upper()]
    _in_range(info, value, text)
    return str(value)


def _double(info: OptionInfo, text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        raise _bad(info.name, f"must be a number, not {text[:40]!r}") from None
    if not math.isfinite(value):
        raise _bad(info.name, "must be a finite number")
    _in_range(info, value, text)
    return repr(value)


def _in_range(info: OptionInfo, value: float, text: str) -> None:
    low = float(info.minimum) if info.minimum is not None else None
    high = float(info.maximum) if info.maximum is not None else None
    if (low is not None and value < low) or (high is not None and value > high):
        raise _bad(info.name, f"{text[:40]} is out of range ({info.minimum} to {info.maximum})")


def _choice(info: OptionInfo, text: str) -> str:
    for choice in info.choices:
        if choice.lower() == text.lower():
            return choice
    raise _bad(info.name, f"must be one of {', '.join(info.choices)}; not {text[:40]!r}")


def _flags(info: OptionInfo, text: str) -> str:
    parts = [part.strip().lower() for part in text.split(",") if part.strip()]
    for part in parts:
        match = _FLAG.fullmatch(part)
        if part != "default" and (match is None or match.group(1) not in info.choices):
            raise _bad(info.name, f"{part[:40]!r} is not flag=on|off|default of "
                       f"{', '.join(c for c in info.choices if c != 'default')}")
    return ",".join(parts)


def base_value(rendered_cnf: str, name: str) -> str | None:
    """The value ``my.cnf`` (rendered without the service's options) gives ``name``,
    unquoted; None if it does not set it (the server's default applies)."""
    dashed = name.replace("_", "-")
    value: str | None = None
    for line in rendered_cnf.splitlines():
        key, _, rest = line.partition("=")
        if key.strip() == dashed:
            value = rest.strip().strip('"') if rest else "ON"
    return value

