"""The master's lease, as its agent holds it (the rules: ``domain.lease``).

``/primary`` is 200 only while the lease is held. The manager renews it with each
heartbeat it answers: ``{"lease": seconds, "slaves": ["host:health_port", ...],
"source": "host:mysql_port"}`` for the master, ``{"lease": 0}`` for any other node.
While the manager cannot be reached, ``LeaseKeeper`` asks the slaves it named, on
their health ports (``GET /source?host=H&port=P&nonce=N``), whether they replicate
from this node with the IO thread running; a majority of signed yeses renews it. The
moment the lease runs out the keeper sets ``read_only`` itself (``server_fence``: or
kills mysqld); only the manager makes the server writable again
(``set_up_replica_master``), which also gives a lease and its length. Each heartbeat
tells the manager which slaves the lease holds (``as_held``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from conpaassql.domain.lease import CHECK_INTERVAL, DEFAULT_LEASE, ask_slaves, slaves_renew
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError
from conpaassql.mysql import replication
from conpaassql.mysql.connection import ConnectInfo
from conpaassql.protocol.report import LeaseHeld
from conpaassql.rpc.endpoint import base_url, check_host

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"


@dataclass(frozen=True)
class ManagerWord:
    """What the manager's answer to a heartbeat says of the lease."""

    seconds: float  # 0: this node is not the master
    slaves: tuple[str, ...] = ()  # their health ports, host:port
    source: str | None = None  # host:port the slaves replicate this node from

    @classmethod
    def parse(cls, reply: Any) -> ManagerWord | None:
        """The word in a ``register_node`` answer; None when it says nothing of it."""
        if not isinstance(reply, dict):
            return None
        seconds = reply.get("lease")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not math.isfinite(seconds) or seconds < 0:
            return None
        slaves = reply.get("slaves")
        source = reply.get("source")
        return cls(float(seconds),
                   tuple(s for s in slaves if isinstance(s, str)) if isinstance(slaves, list)
                   else (),
                   source if isinstance(source, str) else None)


class Lease:
    """Until when this node may say it is the master, and whom to ask meanwhile.

    The slaves and source the manager last named are kept in a file beside the role,
    so that an agent started again while its manager is away knows them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds = DEFAULT_LEASE
        self.expires = -math.inf  # monotonic
        self.why = "no lease yet"
        self.denied = False  # the manager said this node is not the master
        self.slaves: tuple[str, ...] | None = None  # None: never told
        self.source: str | None = None
        self._load()

    def _load(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            word = ManagerWord.parse(data)
            if word is not None and word.seconds > 0:
                self.seconds, self.slaves, self.source = word.seconds, word.slaves, word.source

    def _save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"lease": self.seconds, "slaves": list(self.slaves or ()),
                                         "source": self.source}), encoding="utf-8")
        os.replace(temporary, self.path)

    def remaining(self, now: float | None = None) -> float:
        return self.expires - (time.monotonic() if now is None else now)

    def held(self, now: float | None = None) -> bool:
        return self.remaining(now) > 0

    def renew(self, since: float, why: str) -> None:
        """Held until ``since`` + the lease (``since``: when the renewal was asked for)."""
        self.expires = max(self.expires, since + self.seconds)
        self.denied = False
        self.why = why

    def drop(self, why: str) -> None:
        self.expires = -math.inf
        self.why = why

    def set_length(self, seconds: float) -> None:
        """The length the manager gives (kept for the next renewals)."""
        if seconds != self.seconds:
            self.seconds = seconds
            self._keep()

    def _keep(self) -> None:
        try:
            self._save()
        except OSError as exc:
            log.warning("could not keep the lease's slaves in %s: %s", self.path, exc)

    def heard(self, word: ManagerWord, sent: float) -> None:
        """The manager answered a heartbeat sent at ``sent`` with ``word``."""
        if word.seconds <= 0:
            self.denied = True
            self.drop("the manager says this node is not the master")
            return
        if (word.seconds, word.slaves, word.source) != (self.seconds, self.slaves, self.source):
            self.seconds, self.slaves, self.source = word.seconds, word.slaves, word.source
            self._keep()
        self.renew(sent, "renewed by the manager")

    def as_held(self) -> LeaseHeld:
        """What the heartbeat tells the manager of it."""
        return LeaseHeld(seconds=self.seconds,
                         slaves=None if self.slaves is None else list(self.slaves))

    def reason(self, now: float | None = None) -> str:
        """Why the lease is held, or why not."""
        left = self.remaining(now)
        if left > 0 or self.denied or not math.isfinite(left):
            return self.why
        return f"lease ran out {-left:.1f} s ago (last {self.why})"


def leave_from(bind: str) -> str | None:
    """The address a node's own calls leave from: the one it serves on, unless that is
    every address (or not an address)."""
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        return None
    return None if address.is_unspecified else str(address)


class Confirmations:
    """A slave's side: the latest moment it told a master it replicates from it
    (``/source`` 200, counted from when asked), questions under way included. From
    the agent's start at first: one given before cannot be known. The manager reads
    it (``/health``'s ``confirmed_ago``) to know until when a lost master's lease may
    have been renewed."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self._asked: list[float] = []

    def asked(self, at: float) -> None:
        self._asked.append(at)

    def answered(self, at: float, confirmed: bool) -> None:
        self._asked.remove(at)
        if confirmed:
            self.last = max(self.last, at)

    def ago(self, now: float | None = None) -> float:
        """Seconds since the latest confirmation that may have been given."""
        latest = max([self.last, *self._asked])
        return max(0.0, (time.monotonic() if now is None else now) - latest)


def health_url(address: str, path: str) -> str:
    """``http://host:port/path`` for a health port named ``host:port`` (an IPv6 address
    bare or in brackets); ``ValueError`` for one that is not."""
    host, _, port = address.rpartition(":")
    return base_url(check_host(host.removeprefix("[").removesuffix("]")), int(port),
                    https=False) + path


def source_key(secret: str) -> bytes:
    """The key a slave signs its ``/source`` yes with: drawn from the secret the service's
    agents share, for this use only (the secret itself is never sent)."""
    return hmac.new(secret.encode("utf-8"), b"conpaassql /source", hashlib.sha256).digest()


def source_proof(key: bytes, nonce: str, host: str, port: int | str) -> str:
    """A slave's yes to ``/source?host&port&nonce``, which only a holder of ``key`` makes:
    a forged 200 (anyone on the path of the unauthenticated port) renews no lease."""
    return hmac.new(key, f"{nonce}\n{host}\n{port}".encode(), hashlib.sha256).hexdigest()


def _signed(answer: object, key: bytes | None, nonce: str, host: str, port: str) -> bool:
    if not isinstance(answer, httpx.Response) or answer.status_code != 200:
        return False
    if key is None:
        return True
    try:
        proof = answer.json().get("proof")
    except (ValueError, AttributeError):
        return False
    return isinstance(proof, str) and hmac.compare_digest(
        proof, source_proof(key, nonce, host, port))


async def confirmations(slaves: tuple[str, ...], source: str, timeout: float,
                        local_address: str | None = None, key: bytes | None = None) -> int:
    """How many of ``slaves`` say they replicate from ``source`` with the IO thread running
    (asked from ``local_address``, this node's own); with ``key``, only the yeses signed
    over a nonce of this round count."""
    host, _, port = source.rpartition(":")
    nonce = secrets.token_hex(16)
    transport = httpx.AsyncHTTPTransport(local_address=local_address) if local_address \
        else None
    urls = []
    for slave in slaves:
        with contextlib.suppress(ValueError):  # not host:port: no confirmation
            urls.append(health_url(slave, "source"))
    async with httpx.AsyncClient(timeout=timeout, transport=transport) as client:
        answers = await asyncio.gather(
            *(client.get(url, params={"host": host, "port": port, "nonce": nonce})
              for url in urls), return_exceptions=True)
    return sum(1 for a in answers if _signed(a, key, nonce, host, port))


class LeaseKeeper:
    """Renews the master's lease through its slaves while the manager is away, and sets
    the server read-only the moment the lease runs out.

    The fence runs on a timer of its own (``guard_once``), not after a round of questions:
    a slow slave or manager cannot delay it. Each round of questions is bounded as a
    whole, by a quarter lease and by what is left of the lease.
    """

    def __init__(self, lease: Lease, is_master: Callable[[], bool],
                 self_fence: Callable[[], Awaitable[bool]],
                 interval: float = CHECK_INTERVAL, local_address: str | None = None,
                 key: bytes | None = None) -> None:
        """``self_fence``: sets the server read-only; False if there was nothing to do.
        ``local_address``: the node's own, which questions to the slaves leave from.
        ``key``: what the slaves' answers are signed with (``source_key``)."""
        self.lease = lease
        self.key = key
        self.local_address = local_address
        self.is_master = is_master
        self.self_fence = self_fence
        self.interval = interval
        self._fenced = False  # once per lapse

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._forever(self.guard_once), name="lease fence")
            group.create_task(self._forever(self.look), name="lease renewal")

    async def _forever(self, step: Callable[[], Awaitable[float | None]]) -> None:
        while True:
            try:
                wait = await step()
            except Exception:  # the keeper must go on
                log.exception("lease check failed")
                wait = None
            await asyncio.sleep(self.interval if wait is None else wait)

    async def guard_once(self) -> float:
        """Fence if the lease ran out; the seconds to the next look: when the lease runs
        out, at most ``interval`` (a renewal or a change of role is seen that late)."""
        await self.fence_if_lapsed()
        remaining = self.lease.remaining()
        return min(self.interval, remaining) if remaining > 0 else self.interval

    async def fence_if_lapsed(self) -> None:
        if not self.is_master() or self.lease.held():
            self._fenced = False
            return
        if self._fenced:
            return
        self._fenced = True
        try:
            if await self.self_fence():
                log.warning("%s: read_only set", self.lease.reason())
        except BaseException:
            self._fenced = False  # tried again at the next look
            raise

    async def look(self) -> None:
        """One round: if the lease ran out, fence first; ask the slaves if it is time
        (within a quarter lease, and before the lease runs out if it still holds);
        fence if it ran out."""
        lease = self.lease
        if not self.is_master():
            return
        started = time.monotonic()
        remaining = lease.remaining(started)
        if remaining <= 0:
            await self.fence_if_lapsed()
        if not lease.denied and lease.slaves is not None \
                and ask_slaves(remaining, lease.seconds):
            await self._ask(lease.slaves, started, remaining)
        await self.fence_if_lapsed()

    async def _ask(self, slaves: tuple[str, ...], started: float, remaining: float) -> None:
        lease = self.lease
        known = len(slaves)
        bound = lease.seconds / 4 if remaining <= 0 else min(lease.seconds / 4, remaining)
        confirmed = 0
        if known and lease.source is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(bound, 0.01)):
                    confirmed = await confirmations(slaves, lease.source,
                                                    max(bound, 0.01), self.local_address,
                                                    self.key)
        if slaves_renew(known, confirmed):
            lease.renew(started, "renewed by the slaves" if known else
                        "kept: no slave could take over")
        else:
            log.debug("lease: %d of %d slaves confirm", confirmed, known)


class FencingServer(Protocol):
    """What the self-fence needs of the agent's supervisor."""

    state: AgentState
    info: ConnectInfo

    async def fence(self) -> None: ...


def server_fence(server: FencingServer, within: float = CHECK_INTERVAL
                 ) -> Callable[[], Awaitable[bool]]:
    """The master's self-fence: ``read_only`` set on a connection of its own; if that is
    not confirmed within ``within`` seconds, mysqld killed at once (as ``fence`` does:
    the server stays stopped until the manager starts it again, read-only). Its thread
    is its own too: no wait for the agent's other statements to free one."""
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="self-fence")

    async def self_fence() -> bool:
        if server.state is not AgentState.RUNNING:
            return False  # it starts read-only
        try:
            async with asyncio.timeout(within):
                await replication.read_only_at_once(server.info, within, thread)
            return True
        except (TimeoutError, ConpaasSQLError) as exc:
            log.warning("read_only not confirmed within %.1f s (%s): mysqld killed",
                        within, exc or "no answer")
        await server.fence()
        return True

    return self_fence
