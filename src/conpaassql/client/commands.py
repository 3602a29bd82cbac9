"""The commands of ``conpaassql-client`` and the manager calls they make.

``COMMANDS`` is the table: each command names a manager method, the verb it is
sent with and how its command-line values become the call's params. The
conversions live here, free of click, so that a bad argument is refused (as an
``ArgumentError``) before anything is sent. ``generic_call`` builds the call of
the ``call`` command, for methods the table does not know.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conpaassql.rpc.client import ClientVerb

MAX_INT = 2**31 - 1

Values = Mapping[str, Any]
"""A command's parsed arguments and options by name: ``str``, ``bool`` or ``None``."""


class ArgumentError(ValueError):
    """A command-line value that cannot be sent; nothing goes to the manager."""


@dataclass(frozen=True)
class RpcCall:
    """One manager call, ready to send."""

    method: str
    verb: ClientVerb
    params: dict[str, Any]


@dataclass(frozen=True)
class Arg:
    """A positional argument (a single word) of a command."""

    name: str
    metavar: str
    required: bool = True


@dataclass(frozen=True)
class Opt:
    """An option of a command: ``--name VALUE``, or ``--name`` when ``flag``."""

    name: str
    metavar: str
    help: str
    flag: bool = False


@dataclass(frozen=True)
class Command:
    """A client command: the manager method it calls and how its params are built."""

    name: str
    method: str
    verb: ClientVerb
    summary: str
    params: Callable[[Values], dict[str, Any]]
    arguments: tuple[Arg, ...] = ()
    options: tuple[Opt, ...] = ()
    details: str = ""

    def rpc(self, values: Values) -> RpcCall:
        """The call for these command-line values; ``ArgumentError`` if they are bad."""
        return RpcCall(self.method, self.verb, self.params(values))


def parse_count(text: str) -> int:
    """A node count: a positive decimal integer."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():
        value = int(stripped)
        if 1 <= value <= MAX_INT:
            return value
    raise ArgumentError(f"count must be a positive integer, not {text!r}")


def parse_node_id(text: str) -> int | str:
    """A node id: sent as an int when it is all digits, as given otherwise."""
    stripped = text.strip()
    if not stripped:
        raise ArgumentError("a node id must not be empty")
    if stripped.isascii() and stripped.isdigit():
        return int(stripped)
    return stripped


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


def _no_params(values: Values) -> dict[str, Any]:
    return {}


def _with_cloud(params: dict[str, Any], values: Values) -> dict[str, Any]:
    cloud = values.get("cloud")
    if cloud is not None:
        if not cloud.strip():
            raise ArgumentError("--cloud must name a cloud")
        params["cloud"] = cloud
    return params


def _add_function(values: Values) -> dict[str, Any]:
    function = str(values["function"]).strip()
    if not function:
        raise ArgumentError("FUNCTION must not be empty (the seed's form is: add_node agent)")
    return _with_cloud({"function": function}, values)


def _add_count(values: Values) -> dict[str, Any]:
    count = values.get("count")
    return _with_cloud({"count": parse_count(count) if count is not None else 1}, values)


def _remove(values: Values) -> dict[str, Any]:
    node_id = values.get("node_id")
    count = values.get("count")
    if node_id is not None and count is not None:
        raise ArgumentError("give either a node ID or --count N, not both")
    if node_id is not None:
        return {"serviceNodeId": parse_node_id(node_id)}
    if count is not None:
        return {"count": parse_count(count)}
    raise ArgumentError("give the node ID to remove, or --count N")


def _node(values: Values) -> dict[str, Any]:
    return {"serviceNodeId": parse_node_id(str(values["node_id"]))}


_CLOUD = Opt("cloud", "NAME", "Create the node(s) in this cloud (as the manager names it).")
_REMOVE_ARGS = (Arg("node_id", "[ID]", required=False),)
_REMOVE_OPTS = (Opt("count", "N", "Remove N nodes of the manager's choosing instead."),)
_REMOVE_DETAILS = "Remove the node ID (sent as serviceNodeId), or N nodes with --count N."

COMMANDS: tuple[Command, ...] = (
    Command("list_nodes", "list_nodes", "GET", "List the ids of the service's nodes.",
            _no_params),
    Command("add_node", "add_nodes", "POST",
            "Add a node: add_node agent (seed form).",
            _add_function, (Arg("function", "FUNCTION"),), (_CLOUD,),
            details="Sends add_nodes with {\"function\": FUNCTION}; the seed's form is "
                    "'add_node agent'."),
    Command("add_nodes", "add_nodes", "POST", "Add N agent nodes (default 1).",
            _add_count, (Arg("count", "[N]", required=False),), (_CLOUD,),
            details="Sends add_nodes with {\"count\": N}."),
    Command("remove_nodes", "remove_nodes", "POST", "Remove node ID, or --count N nodes.",
            _remove, _REMOVE_ARGS, _REMOVE_OPTS, details=_REMOVE_DETAILS),
    Command("delete_nodes", "remove_nodes", "POST",
            "Remove node ID (seed form of remove_nodes).",
            _remove, _REMOVE_ARGS, _REMOVE_OPTS, details=_REMOVE_DETAILS),
    Command("get_node_info", "get_node_info", "GET", "Show the details of node ID.",
            _node, (Arg("node_id", "ID"),)),
    Command("get_service_info", "get_service_info", "GET",
            "Show the service's state (and its transitions).", _no_params),
    Command("get_service_performance", "get_service_performance", "GET",
            "Show the service's performance figures.", _no_params),
    Command("getLog", "getLog", "GET", "Print the manager's log.", _no_params),
    Command("shutdown", "shutdown", "POST", "Shut the service down.", _no_params),
)
"""Every fixed command, in the order ``--help`` lists them."""

BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
