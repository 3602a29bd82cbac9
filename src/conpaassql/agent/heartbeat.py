"""The agent's registration and heartbeat to its manager.

The agent calls ``register_node`` with its state every interval, and at once
when something happens (mysqld died, mysqld back); an event not delivered is
retried with the next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from conpaassql.errors import ConpaasSQLError
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.client import RpcClient

log = logging.getLogger(__name__)

Reporter = Callable[[], Awaitable[StateReport]]


class Heartbeat:
    def __init__(self, manager_url: str, secret: str, interval: float,
                 reporter: Reporter, *, verify: Any = True,
                 server_name: str | None = None) -> None:
        self.client = RpcClient(manager_url, token=secret, timeout=10.0, verify=verify,
                                server_name=server_name)
        self.interval = interval
        self.reporter = reporter
        self.events: list[str] = []
        self.registered = False
        self._wake = asyncio.Event()

    def push(self, event: str) -> None:
        """Tell the manager about ``event`` now (and keep it until delivered)."""
        self.events.append(event)
        self._wake.set()

    def nudge(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.beat()
            self._wake.clear()
            if not self.events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
            else:
                await asyncio.sleep(min(1.0, self.interval))

    async def beat(self) -> None:
        report = await self.reporter()
        pending = list(self.events)
        if pending:
            report = report.model_copy(update={"event": "; ".join(pending)})
        try:
            await self.client.post("register_node", state=report.wire())
        except ConpaasSQLError as exc:
            if self.registered:
                log.warning("heartbeat to the manager failed: %s", exc)
            return
        if not self.registered:
            log.info("registered with the manager")
        self.registered = True
        del self.events[: len(pending)]

    async def aclose(self) -> None:
        await self.client.aclose()
