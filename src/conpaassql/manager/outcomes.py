"""How the outcome of one request over several nodes is told: one error for all."""

from __future__ import annotations

from collections.abc import Sequence

from conpaassql.domain.node import Node
from conpaassql.errors import (
    AgentError,
    BadRequestError,
    ConpaasSQLError,
    MySQLError,
    RemoteError,
    WrongStateError,
)

#: How an agent's error text starts, and the JSON-RPC 2.0 code it maps to.
_CODES = (
    ("Missing argument", BadRequestError.code),
    ("Unexpected arguments", BadRequestError.code),
    ("Invalid argument", BadRequestError.code),
    ("Service in wrong state", WrongStateError.code),
    ("MySQL reported an error", MySQLError.code),
)


def describe_nodes(ids: Sequence[int]) -> str:
    return ("node " if len(ids) == 1 else "nodes ") + ", ".join(str(i) for i in ids)


def _code_of(error: ConpaasSQLError) -> int:
    text = str(error)
    if isinstance(error, RemoteError):
        for prefix, code in _CODES:
            if text.startswith(prefix):
                return code
        return AgentError.code
    return error.code


def nodes_failed(failed: Sequence[tuple[Node, ConpaasSQLError]],
                 done: Sequence[int]) -> RemoteError:
    """One error for a call that failed on some nodes: each agent's text, with its nodes.

    ``Invalid argument: username DETAIL:no user 'x'@'%' (node 1); done on node 2``
    """
    groups: dict[str, list[int]] = {}
    for node, error in failed:
        groups.setdefault(str(error), []).append(node.id)
    parts = [f"{text} ({describe_nodes(ids)})" for text, ids in groups.items()]
    if done:
        parts.append(f"done on {describe_nodes(done)}")
    return RemoteError("; ".join(parts), code=_code_of(failed[0][1]))
