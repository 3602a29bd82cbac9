"""The router's loop: ask the manager for the nodes, keep HAProxy's slots in step,
register with the manager, and keep routing with what it last knew while the
manager cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from conpaassql.errors import ConfigError, RemoteError, UnreachableError
from conpaassql.router.haproxy import HAProxy, HAProxyError
from conpaassql.router.settings import RouterSettings
from conpaassql.router.slots import Plan, Slots, Target, targets_of
from conpaassql.rpc.client import RpcClient

log = logging.getLogger("conpaassql.router")
CACHE_FILE = "nodes.json"
#: How long a call to the manager may take before it counts as unreachable.
CALL_TIMEOUT = 5.0
#: Registering may wait for the nodes' certificates to be issued again.
REGISTER_TIMEOUT = 60.0


class StartError(ConfigError):
    """The router cannot start: a one-line reason."""

    template = "%s"


def describe_failure(url: str, exc: Exception) -> str:
    """A failed first call to the manager, said in one line (never the token)."""
    if isinstance(exc, RemoteError):
        if exc.http_status in (401, 403):
            return f"the manager at {url} refused the token ({exc})"
        return f"the manager at {url} answered with an error: {exc}"
    detail = getattr(exc, "detail", None) or str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
        return (f"cannot verify the manager's certificate at {url} "
                "(wrong CA file, or not the manager's address?)")
    if "SSL" in detail or "TLS" in detail:
        return f"no TLS handshake with the manager at {url} ({detail})"
    return f"cannot reach the manager at {url}: {detail}"


class Router:
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.haproxy = HAProxy(settings)
        self.slots = Slots(settings.slots)
        self.client = RpcClient(settings.manager_url, token=settings.token,
                                timeout=CALL_TIMEOUT, verify=settings.verify)
        self.manager_up = False
        self.registered = False
        self.known: dict[int, Target] = {}
        self._readying: set[asyncio.Task[None]] = set()
        self._settling: set[int] = set()  # slots drained until their first checks
        self._stop = asyncio.Event()

    @property
    def cache(self) -> Path:
        return self.settings.state_dir / CACHE_FILE

    # -- start ----------------------------------------------------------------

    async def first_contact(self) -> dict[int, Target]:
        """The nodes, from the manager; from the cache if the manager cannot be reached
        but was before. ``StartError`` when neither, or when the manager refuses."""
        try:
            listed = await self.client.get("list_nodes")
        except UnreachableError as exc:
            cached = self._read_cache()
            reason = describe_failure(self.settings.manager_url, exc)
            if cached is None or "certificate" in reason or "TLS" in reason:
                raise StartError(reason) from None
            log.warning("%s; routing to the %d nodes last known meanwhile", reason,
                        len(cached))
            return cached
        except RemoteError as exc:
            raise StartError(describe_failure(self.settings.manager_url, exc)) from None
        self.manager_up = True
        return targets_of(listed.get("nodes", []))

    async def run(self) -> None:
        """Route until SIGTERM or SIGINT."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            targets = await self.first_contact()
            self.haproxy.start()
        except BaseException:
            await self.client.aclose()
            raise
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        log.info("router %s: writer %s, readers %s, manager %s", self.settings.name,
                 self.settings.writer, self.settings.readers, self.settings.manager_url)
        try:
            await self.follow(targets)
            if self.manager_up:
                await self.register()
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.poll_interval)
                if not self._stop.is_set():
                    await self.turn()
        finally:
            for task in self._readying:
                task.cancel()
            self.haproxy.stop()
            await self.client.aclose()

    # -- each turn -----------------------------------------------------------

    async def turn(self) -> None:
        """Restart HAProxy if it died, ask the manager for the nodes, follow them."""
        if not self.haproxy.running():
            log.error("HAProxy exited; starting it again")
            self.slots.clear()  # its slots are as many as before, all empty
            try:
                self.haproxy.start()
            except HAProxyError as exc:
                log.error("%s", exc)
                return
        targets = await self.poll()
        await self.follow(self.known if targets is None else targets)
        if self.manager_up and not self.registered:
            await self.register()

    async def poll(self) -> dict[int, Target] | None:
        """The nodes the manager lists, or ``None`` (logged once) if it cannot say."""
        try:
            listed = await self.client.get("list_nodes")
        except (UnreachableError, RemoteError) as exc:
            if self.manager_up:
                log.warning("%s; routing to the %d nodes last known, retrying",
                            describe_failure(self.settings.manager_url, exc),
                            len(self.known))
            self.manager_up = self.registered = False
            return None
        if not self.manager_up:
            log.info("the manager answers again")
        self.manager_up = True
        return targets_of(listed.get("nodes", []))

    async def register(self) -> None:
        params: dict[str, Any] = {"name": self.settings.name,
                                  "writer": self.settings.writer.as_dict(),
                                  "readers": self.settings.readers.as_dict()}
        if self.settings.hosts:
            params["hosts"] = list(self.settings.hosts)
        try:
            await self.client.call("register_router", params, timeout=REGISTER_TIMEOUT)
        except UnreachableError:
            return  # the next turn finds the manager away and registers when it is back
        except RemoteError as exc:
            log.warning("the manager did not register this router: %s", exc)
        else:
            log.info("registered with the manager as %s", self.settings.name)
        self.registered = True

    async def follow(self, targets: dict[int, Target]) -> None:
        """Point HAProxy's slots at ``targets``, with more slots if they are too few."""
        plan = self.slots.plan(targets)
        if plan.left_out:
            await self._grow(len(self.slots.held) - len(plan.freed) + len(plan.filled)
                             + len(plan.left_out))
            plan = self.slots.plan(targets)
        if plan.freed or plan.filled or plan.left_out:
            try:
                await self._apply(plan)
            except (HAProxyError, OSError) as exc:
                log.error("could not change HAProxy's servers: %s", exc)
                return
        if targets != self.known:
            self.known = dict(targets)
            self._write_cache()

    async def _apply(self, plan: Plan) -> None:
        for slot in plan.freed:
            log.info("node %d leaves the router", self.slots.held[slot].node_id)
            for server in self._servers(slot):
                await self.haproxy.command(f"set server {server} state maint")
                await self.haproxy.command(f"shutdown sessions server {server}")
        self.slots.apply(Plan(plan.freed, [], []))
        for slot, target in plan.filled:
            await self._fill(slot, target)
            self.slots.apply(Plan([], [(slot, target)], []))
        for target in plan.left_out:
            log.warning("no free slot for node %d (%d slots)", target.node_id,
                        self.slots.count)

    async def _grow(self, needed: int) -> None:
        """At least ``needed`` slots (twice as many as now, or more), by a seamless
        reload of HAProxy; logged and left as it was if HAProxy refuses."""
        count = max(needed, 2 * self.slots.count)
        try:
            await self.haproxy.grow(count, set(self.slots.held))
        except (HAProxyError, OSError) as exc:
            log.error("could not grow HAProxy to %d slots: %s", count, exc)
            return
        log.info("HAProxy reloaded with %d slots (was %d)", count, self.slots.count)
        self.slots.count = count
        # A slot made ready between the state's snapshot and the reload is ready in
        # the old worker only: every settled slot is made ready again.
        try:
            for slot in sorted(set(self.slots.held) - self._settling):
                for server in self._servers(slot):
                    await self.haproxy.command(f"set server {server} state ready")
        except (HAProxyError, OSError) as exc:
            log.error("could not open the nodes to connections after a reload: %s", exc)

    def _servers(self, slot: int) -> list[str]:
        servers = [f"writer/w{slot}", f"readers/r{slot}"]
        return [*servers, f"readers/m{slot}"] if self.settings.reader_fallback else servers

    async def _fill(self, slot: int, target: Target) -> None:
        """Point a slot at a node, drained (no new connections) until its checks have
        run: HAProxy counts a server leaving maintenance as up."""
        log.info("node %d (%s:%d, health port %d) joins the router", target.node_id,
                 target.ip, target.port, target.health_port)
        for server in self._servers(slot):
            await self.haproxy.command(f"set server {server} addr {target.ip} "
                                       f"port {target.port}")
            if not server.split("/")[1].startswith("m"):
                await self.haproxy.command(f"set server {server} check-port "
                                           f"{target.health_port}")
        for server in self._servers(slot):
            await self.haproxy.command(f"set server {server} state drain")
        self._settling.add(slot)
        task = asyncio.create_task(self._ready_later(slot, target))
        self._readying.add(task)
        task.add_done_callback(self._readying.discard)

    async def _ready_later(self, slot: int, target: Target) -> None:
        try:
            await asyncio.sleep(self.settings.checks.settle)
        finally:
            self._settling.discard(slot)
        if self.slots.held.get(slot) != target:
            return
        try:
            for server in self._servers(slot):
                await self.haproxy.command(f"set server {server} state ready")
        except (HAProxyError, OSError) as exc:
            log.error("could not open node %d to connections: %s", target.node_id, exc)

    # -- what it last knew ----------------------------------------------------

    def _write_cache(self) -> None:
        records = [target.as_dict() for target in self.known.values()]
        temporary = self.cache.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps({"saved": time.time(), "nodes": records}),
                                 encoding="utf-8")
            temporary.replace(self.cache)
        except OSError as exc:
            log.warning("cannot keep the nodes in %s: %s", self.cache, exc)

    def _read_cache(self) -> dict[int, Target] | None:
        try:
            saved = json.loads(self.cache.read_text(encoding="utf-8"))
            return targets_of(saved["nodes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def run(settings: RouterSettings) -> None:
    """Run a router in the foreground; ``StartError`` or ``HAProxyError`` if it
    cannot start."""
    asyncio.run(Router(settings).run())
