"""How far a node's backup or restore has got, asked of its agent (``get_job_progress``)
for ``list_backups`` and ``get_node_info``: one small call with a short timeout, its
answer kept a second so that callers polling together make one call a second. An
agent that does not answer gives no progress; the listing goes on without it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from conpaassql.domain.node import Node
from conpaassql.errors import ConpaasSQLError
from conpaassql.protocol.backup import JobProgressReply

#: Seconds an answer is reused.
KEPT = 1.0
#: Longest wait for the agent's answer.
TIMEOUT = 2.0


class ProgressSource(Protocol):
    async def get_job_progress(self, node: Node, *,
                               timeout: float | None = None) -> JobProgressReply: ...


class ProgressProbe:
    """The latest progress of each node's job, asked at most once per ``kept`` seconds."""

    def __init__(self, agents: Callable[[], ProgressSource], kept: float = KEPT,
                 timeout: float = TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._agents = agents
        self._kept = kept
        self._timeout = timeout
        self._clock = clock
        self._seen: dict[int, tuple[float, JobProgressReply | None]] = {}

    async def of(self, node: Node, kind: str) -> dict[str, Any] | None:
        """``{"phase", "bytes", "expected"}`` of the node's job of ``kind`` (``backup``,
        ``restore``), or None (no such job, or no answer)."""
        now = self._clock()
        seen = self._seen.get(node.id)
        if seen is None or now - seen[0] >= self._kept:
            seen = (now, await self._ask(node))
            self._seen[node.id] = seen
        reply = seen[1]
        if reply is None or reply.kind != kind:
            return None
        return {"phase": reply.phase, "bytes": reply.bytes or 0, "expected": reply.expected}

    async def _ask(self, node: Node) -> JobProgressReply | None:
        try:
            return await self._agents().get_job_progress(node, timeout=self._timeout)
        except (ConpaasSQLError, TimeoutError):
            return None
