"""The agent's registration and heartbeat to its manager.

The agent calls ``register_node`` with its state every interval, and at once
when something happens (mysqld died, mysqld back); an event not delivered is
retried with the next beat. The answer renews the master's lease (``agent.lease``),
counted from when the beat was sent; a master beats three times per lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from conpaassql.agent.lease import ManagerWord
from conpaassql.agent.role import MasterIntent
from conpaassql.domain.lease import heartbeat_period
from conpaassql.errors import ConpaasSQLError
from conpaassql.protocol.report import StateReport
from conpaassql.rpc.client import RpcClient

log = logging.getLogger(__name__)

Reporter = Callable[[], Awaitable[StateReport]]


class Heartbeat:
    def __init__(self, manager_url: str, secret: str, interval: float,
                 reporter: Reporter, *, verify: Any = True,
                 server_name: str | None = None, intent: MasterIntent | None = None,
                 local_address: str | None = None) -> None:
        """``local_address``: the node's own address, which the beats leave from (on a
        machine of several nodes, as from a VM of its own)."""
        transport = httpx.AsyncHTTPTransport(verify=verify, local_address=local_address) \
            if local_address else None
        self.client = RpcClient(manager_url, token=secret, timeout=10.0, verify=verify,
                                server_name=server_name, transport=transport)
        self.interval = interval
        self.reporter = reporter
        self.events: list[str] = []
        self.registered = False
        self.failing = False  # the last beat went unanswered
        self.intent = intent  # whose lease the manager's answers renew
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
                    await asyncio.wait_for(self._wake.wait(), self.period)
            else:
                await asyncio.sleep(min(1.0, self.period))

    @property
    def period(self) -> float:
        """Seconds to the next beat: shorter for the master, whose lease it renews."""
        intent = self.intent
        lease = intent.lease.seconds if intent is not None and intent.master else None
        return heartbeat_period(self.interval, lease)

    async def beat(self) -> None:
        report = await self.reporter()
        pending = list(self.events)
        if pending:
            report = report.model_copy(update={"event": "; ".join(pending)})
        intent = self.intent
        sent, changes = time.monotonic(), intent.changes if intent is not None else 0
        # A master's beat is of no use to its lease once half of it is gone.
        timeout = intent.lease.seconds / 2 if intent is not None and intent.master else None
        try:
            reply = await self.client.call("register_node", {"state": report.wire()},
                                           timeout=timeout)
        except ConpaasSQLError as exc:
            # Once per outage: a master beats three times a lease.
            if self.registered and not self.failing:
                log.warning("heartbeat to the manager failed: %s", exc)
            self.failing = True
            return
        if self.failing:
            log.info("the manager answers heartbeats again")
        self.failing = False
        word = ManagerWord.parse(reply)
        if intent is not None and word is not None and intent.changes == changes:
            intent.lease.heard(word, sent)  # not if the role changed meanwhile
        if not self.registered:
            log.info("registered with the manager")
        self.registered = True
        del self.events[: len(pending)]

    async def aclose(self) -> None:
        await self.client.aclose()
