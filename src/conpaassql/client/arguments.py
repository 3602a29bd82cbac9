"""The pieces of ``conpaassql-client``'s command table, free of click: a command, its
arguments and options, the call it makes (``RpcCall``), and the conversions of
command-line values, which refuse a bad one (``ArgumentError``) before anything is sent."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

MAX_INT = 2**31 - 1
STDIO = "-"
LOG_KINDS = ("agent", "error", "slow")
DEFAULT_LOG_LINES = 100

Verb = Literal["GET", "POST", "UPLOAD"]
"""How a command's method is sent: a GET query, a POST of JSON, or a multipart form."""

Values = Mapping[str, Any]
"""A command's parsed arguments and options by name: ``str``, ``bool`` or ``None``."""


class ArgumentError(ValueError):
    """A command-line value that cannot be sent; nothing goes to the manager."""


@dataclass(frozen=True)
class UploadFile:
    """The file an upload sends: the form field, where to read it, the name it is sent as."""

    field: str
    path: Path | None
    """``None``: standard input."""
    filename: str


@dataclass(frozen=True)
class RpcCall:
    """One manager call, ready to send (once ``secret_missing`` is filled)."""

    method: str
    verb: Verb
    params: dict[str, Any]
    upload: UploadFile | None = None
    download: bool = False
    output: Path | None = None
    """Where a download goes; ``None``: standard output."""
    secret: str | None = None
    """The param holding a password, if the call sends one."""

    @property
    def secret_missing(self) -> bool:
        """Whether the call still needs its password."""
        return self.secret is not None and self.secret not in self.params

    def with_secret(self, password: str) -> RpcCall:
        """This call with its password; ``ArgumentError`` if it cannot be sent."""
        assert self.secret is not None, "only a call with a secret takes a password"
        return replace(self, params={**self.params, self.secret: check_password(password)})

    def redact(self, text: str) -> str:
        """``text`` with the call's password, if it appears, masked."""
        password = self.params.get(self.secret) if self.secret is not None else None
        if isinstance(password, str) and password:
            return text.replace(password, "********")
        return text


@dataclass(frozen=True)
class Arg:
    """A positional argument (a single word) of a command."""

    name: str
    metavar: str
    required: bool = True
    many: bool = False
    """It takes every remaining word (a tuple of them)."""


@dataclass(frozen=True)
class Opt:
    """An option of a command: ``--name VALUE``, or ``--name`` when ``flag``."""

    name: str
    metavar: str
    help: str
    flag: bool = False
    short: str = ""
    """A one-letter alias (``"o"`` for ``-o``), if any."""


@dataclass(frozen=True)
class Command:
    """A client command: the manager method it calls and how its params are built.

    ``upload`` names the form field of an upload, whose file is the value
    ``file``; ``download`` streams the result to the value ``output``;
    ``secret`` is the value holding a password, sent as the param ``password``
    unless ``secret_param`` says otherwise.
    """

    name: str
    method: str
    verb: Verb
    summary: str
    params: Callable[[Values], dict[str, Any]]
    arguments: tuple[Arg, ...] = ()
    options: tuple[Opt, ...] = ()
    details: str = ""
    upload: str | None = None
    download: bool = False
    secret: str | None = None
    secret_param: str = "password"

    def rpc(self, values: Values) -> RpcCall:
        """The call for these command-line values; ``ArgumentError`` if they are bad."""
        params = self.params(values)
        upload = None
        if self.upload is not None:
            upload = upload_file(self.upload, str(values["file"]))
        output = parse_output(values.get("output")) if self.download else None
        call = RpcCall(self.method, self.verb, params, upload, self.download, output,
                       self.secret_param if self.secret is not None else None)
        given = values.get(self.secret) if self.secret is not None else None
        return call.with_secret(given) if given is not None else call


def parse_positive(text: str, what: str) -> int:
    """A positive decimal integer, or ``ArgumentError`` naming ``what``."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        value = int(stripped)
        if 1 <= value <= MAX_INT:
            return value
    raise ArgumentError(f"{what} must be a positive integer, not {text!r}")


def parse_count(text: str) -> int:
    """A node count: a positive decimal integer."""
    return parse_positive(text, "count")


def parse_node_id(text: str) -> int | str:
    """A node id: sent as an int when it is all digits, as given otherwise."""
    stripped = text.strip()
    if not stripped:
        raise ArgumentError("a node id must not be empty")
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    return stripped


def parse_node_target(text: str) -> int | str:
    """A node id or ``all`` (every node)."""
    target = parse_node_id(text)
    return "all" if isinstance(target, str) and target.lower() == "all" else target


def parse_name(text: str, what: str) -> str:
    """A name (user, host, database...): sent as given, but never empty."""
    if not text.strip():
        raise ArgumentError(f"{what} must not be empty")
    return text


def parse_list(text: str, what: str) -> list[str]:
    """A comma-separated list (``SELECT,INSERT``) as its items, none empty."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise ArgumentError(f"{what} must name at least one item")
    if not all(items):
        raise ArgumentError(f"{what} has an empty item: {text!r}")
    return items


def parse_choice(text: str, choices: tuple[str, ...], what: str) -> str:
    """One of ``choices`` (any case)."""
    lowered = text.strip().lower()
    if lowered not in choices:
        raise ArgumentError(f"{what} must be one of {', '.join(choices)}, not {text!r}")
    return lowered


def check_password(password: str) -> str:
    """A password fit to send; the error never repeats it."""
    if not password:
        raise ArgumentError("the password must not be empty")
    if "\x00" in password:
        raise ArgumentError("the password must not contain NUL characters")
    return password


def upload_file(field: str, text: str) -> UploadFile:
    """The file to upload: ``-`` for standard input, else a readable file."""
    if text == STDIO:
        return UploadFile(field, None, "stdin")
    if not text:
        raise ArgumentError("FILE must name a file")
    path = Path(text)
    if not path.exists():
        raise ArgumentError(f"FILE {text!r} does not exist")
    if path.is_dir():
        raise ArgumentError(f"FILE {text!r} is a directory")
    if not os.access(path, os.R_OK):
        raise ArgumentError(f"FILE {text!r} is not readable")
    return UploadFile(field, path, path.name)


def parse_output(text: str | None) -> Path | None:
    """Where a download goes: ``None`` (or ``-``) for standard output, else a file
    in an existing directory."""
    if text is None or text == STDIO:
        return None
    if not text:
        raise ArgumentError("--output must name a file")
    path = Path(text)
    if path.is_dir():
        raise ArgumentError(f"--output {text!r} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ArgumentError(f"--output {text!r}: no directory {str(parent)!r}")
    return path


def parse_json_object(text: str) -> dict[str, Any]:
    """Params given on the command line as a JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ArgumentError(f"params are not valid JSON: {exc}") from None
    except RecursionError:
        raise ArgumentError("params are not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise ArgumentError(
            'params must be a JSON object, for example \'{"serviceNodeId": 1}\''
        )
    return value


def generic_call(method: str, params_text: str | None, *, get: bool) -> RpcCall:
    """The call of ``call METHOD [JSON_PARAMS] [--get]``."""
    name = method.strip()
    if not name:
        raise ArgumentError("the method name must not be empty")
    params = parse_json_object(params_text) if params_text is not None else {}
    return RpcCall(name, "GET" if get else "POST", params)
