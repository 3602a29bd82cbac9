"""The service's server configuration: options set once on the manager, on every node.

The manager keeps the options (``Store.server_options``). A change is checked by
every running node against its own server first (a dry run: names it knows,
values of their type, no protected option); only when all agree is it stored and
applied: dynamic options at once (``SET GLOBAL``), the others by a rolling
restart: the slaves one at a time, each back and replicating before the next,
then a switchover to a slave already restarted, then the old master. The
reconcile loop gives the options to any running node that does not hold them (a
node added or copied later, one that was away). One long action at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import (
    BusyError,
    ConpaasSQLError,
    InvalidArgumentError,
    RemoteError,
    WrongStateError,
)
from conpaassql.manager.cycle import Act, Outcome, Snapshot
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService
from conpaassql.protocol.agent import (
    OptionNamesRequest,
    ServiceOptionsRequest,
    ServiceOptionsSet,
    ServiceOptionsState,
)
from conpaassql.protocol.options import generation, option_key, wire_value

log = logging.getLogger(__name__)

Apply = Literal["immediate", "next-restart"]
RESTART_TIMEOUT = 300.0  # seconds an agent may take to restart mysqld (and roll back)
CATCH_UP_TIMEOUT = 120.0  # seconds a restarted slave has to replicate and catch up
SWITCHOVER_RETRIES = 50


class ServiceConfiguration:
    """Set, reset, show and roll out the service's server options."""

    def __init__(self, nodes: NodeService, replication: Replication) -> None:
        self.nodes = nodes
        self.replication = replication
        self.rt = nodes.rt
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._restarting: set[int] = set()
        self._refused: dict[int, str] = {}  # node -> generation it refused (not retried)
        self.last_restart: dict[str, Any] | None = None

    # -- queries ------------------------------------------------------------

    def expects_down(self, node_id: int) -> bool:
        """Is the node's mysqld down because this module restarts it?"""
        return node_id in self._restarting

    @property
    def busy(self) -> bool:
        return self._lock.locked() or (self._task is not None and not self._task.done())

    def check_idle(self) -> None:
        """BusyError while a change of the configuration or a rolling restart runs."""
        if self.busy:
            raise BusyError(detail="busy: the server configuration is being applied "
                            "(a rolling restart is in progress)")

    def _check_all_idle(self) -> None:
        """BusyError if any long action (ours, a topology change, a copy) runs."""
        self.check_idle()
        if self.replication.topology_lock.locked():
            raise BusyError(detail="busy: a topology change is in progress")
        if self.replication.seeding:
            raise BusyError(detail=f"busy: node {', '.join(map(str, self.replication.seeding))}"
                            " is being copied")

    def _targets(self) -> list[Node]:
        return [node for node in self.nodes.live_nodes()
                if node.state is NodeState.RUNNING and node.ip is not None
                and node.id not in self.replication.seeding]

    async def describe(self) -> dict[str, Any]:
        """The service's options, and each running node's view of them."""
        options = self.rt.store.server_options()
        targets = self._targets()
        answers = await asyncio.gather(
            *(self.rt.agents.get_service_options(node, OptionNamesRequest(
                names=sorted(options)), timeout=self.rt.config.probe_timeout + 5)
              for node in targets), return_exceptions=True)
        wanted = generation(options)
        shown, unreachable = [], []
        for node, answer in zip(targets, answers, strict=True):
            if not isinstance(answer, ServiceOptionsState):
                unreachable.append(node.id)
                continue
            shown.append({
                "id": node.id, "role": node.role.value, "generation": answer.generation,
                "in_sync": answer.generation == wanted or (
                    not options and answer.generation is None),
                "effective": {name: answer.effective.get(name) for name in sorted(options)},
                "pending_restart": answer.pending_restart,
                "restart_pending": bool(answer.pending_restart)})
        return {"options": options, "generation": wanted, "nodes": shown,
                "unreachable": unreachable, "restart": self.last_restart}

    # -- changes --------------------------------------------------------------

    async def set_options(self, given: Mapping[str, object], apply: Apply) -> dict[str, Any]:
        """Add or change options (checked on every node first), then apply them."""
        self._check_all_idle()
        changes = {option_key(name): wire_value(value) for name, value in given.items()}
        async with self._lock:
            current = self.rt.store.server_options()
            shown = ", ".join(f"{name}={value}" for name, value in changes.items())
            return await self._change(current, {**current, **changes}, apply,
                                      f"server configuration: set {shown}"[:500])

    async def reset_options(self, names: list[str], apply: Apply) -> dict[str, Any]:
        """Drop options from the service's configuration (back to the server's own)."""
        self._check_all_idle()
        dropped = [option_key(name) for name in names]
        async with self._lock:
            current = self.rt.store.server_options()
            unknown = [name for name in dropped if name not in current]
            if unknown:
                raise InvalidArgumentError("options", detail=f"{unknown[0]}: not in the "
                                           "service's configuration")
            wanted = {k: v for k, v in current.items() if k not in dropped}
            return await self._change(current, wanted, apply,
                                      f"server configuration: reset {', '.join(dropped)}")

    async def restart_nodes(self, node_id: int | None) -> dict[str, Any]:
        """A rolling restart on request (of one node, or of every running node)."""
        self._check_all_idle()
        if node_id is not None:
            node = self.nodes.node(node_id)
            if node.state is not NodeState.RUNNING:
                raise WrongStateError(detail=f"node {node_id} is {node.state}, not RUNNING")
            chosen = [node_id]
        else:
            chosen = [node.id for node in self._targets()]
            if not chosen:
                raise WrongStateError(detail="no running node to restart")
        self._start_rolling(chosen, "asked for", None)
        return {"restart": "started", "nodes": chosen, **self._single_note(chosen)}

    async def _change(self, current: dict[str, str], wanted: dict[str, str], apply: Apply,
                      reason: str) -> dict[str, Any]:
        targets = self._targets()
        if not targets:
            raise WrongStateError(detail="no running node to check the options against")
        checked = await self._dry_run(targets, wanted)
        wanted_generation = generation(checked.options)
        self.rt.store.set_server_options(checked.options, reason)
        try:
            replies = await self._push(targets, checked.options, wanted_generation)
        except ConpaasSQLError as exc:
            self.rt.store.set_server_options(current, f"server configuration: change undone "
                                             f"({str(exc)[:300]})")
            await self._push_quietly(targets, current)
            raise
        pending = {node.id: reply.pending_restart
                   for node, reply in zip(targets, replies, strict=True) if reply.pending_restart}
        result: dict[str, Any] = {
            "options": checked.options, "generation": wanted_generation,
            "dynamic": checked.dynamic, "static": checked.static,
            "applied": sorted({name for reply in replies for name in reply.applied}),
            "pending_restart": {str(node): names for node, names in pending.items()},
            "restart": None}
        if pending and apply == "immediate":
            chosen = sorted(pending)
            self._start_rolling(chosen, reason, current)
            result["restart"] = "started"
            result.update(self._single_note(chosen))
        return result

    def _single_note(self, chosen: list[int]) -> dict[str, str]:
        if len(self._targets()) == 1:
            return {"note": f"the service has one node: node {chosen[0]} restarts, and "
                    "takes no query until it is back"}
        return {}

    async def _dry_run(self, targets: list[Node], wanted: dict[str, str]) -> ServiceOptionsSet:
        answers = await asyncio.gather(
            *(self.rt.agents.set_service_options(node, ServiceOptionsRequest(
                options=wanted, generation=generation(wanted), dry_run=True),
                timeout=self.rt.config.probe_timeout + 20) for node in targets),
            return_exceptions=True)
        for node, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                raise _refusal(node, answer)
        first = answers[0]
        assert isinstance(first, ServiceOptionsSet)
        return first

    async def _push(self, targets: list[Node], options: dict[str, str],
                    digest: str) -> list[ServiceOptionsSet]:
        answers = await asyncio.gather(
            *(self.rt.agents.set_service_options(node, ServiceOptionsRequest(
                options=options, generation=digest), timeout=60) for node in targets),
            return_exceptions=True)
        for node, answer in zip(targets, answers, strict=True):
            if isinstance(answer, BaseException):
                raise _refusal(node, answer)
        return [answer for answer in answers if isinstance(answer, ServiceOptionsSet)]

    async def _push_quietly(self, targets: list[Node], options: dict[str, str]) -> None:
        try:
            await self._push(targets, options, generation(options))
        except ConpaasSQLError as exc:
            log.warning("could not put the previous options back everywhere: %s", exc)

    # -- the rolling restart ------------------------------------------------------

    def _start_rolling(self, chosen: list[int], why: str,
                       undo: dict[str, str] | None) -> None:
        self.last_restart = {"state": "running", "nodes": chosen, "started_at": time.time(),
                             "reason": why}
        self._task = asyncio.create_task(self._rolling(chosen, why, undo),
                                         name="rolling restart")

    async def _rolling(self, chosen: list[int], why: str, undo: dict[str, str] | None) -> None:
        started = time.monotonic()
        store = self.rt.store
        where: int | None = None
        try:
            master = self.nodes.master()
            slaves = [n for n in self._targets() if n.id in chosen and n.role is Role.SLAVE]
            store.record_event(f"rolling restart ({why}): node(s) "
                               f"{', '.join(map(str, chosen))}, slaves first")
            for slave in slaves:
                where = slave.id
                await self._restart_slave(slave)
            block = None
            if master is not None and master.id in chosen:
                where = master.id
                block = await self._restart_master(master, [s.id for s in slaves])
            elapsed = time.monotonic() - started
            store.record_event(f"rolling restart done in {elapsed:.1f} s"
                               + ("" if block is None else f"; writes blocked {block:.3f} s"))
            self.last_restart = {**(self.last_restart or {}), "state": "done",
                                 "seconds": round(elapsed, 3), "write_block_seconds": block}
        except ConpaasSQLError as exc:
            store.record_event(f"rolling restart stopped at node {where}: {exc}"[:2000], where)
            self.last_restart = {**(self.last_restart or {}), "state": "failed",
                                 "node": where, "error": str(exc)}
            if undo is not None:
                store.set_server_options(undo, "server configuration: change undone (a node "
                                         "did not start with it)")
                await self._push_quietly(self._targets(), undo)
        except Exception:
            log.exception("rolling restart crashed")
            self.last_restart = {**(self.last_restart or {}), "state": "failed",
                                 "node": where, "error": "crashed"}

    async def _restart_slave(self, node: Node) -> None:
        """Restart a slave; it is back and replicating (and caught up) after."""
        self.rt.store.record_event(f"rolling restart: restarting node {node.id} (slave)",
                                   node.id)
        seconds = await self._restart(node)
        await self._wait_replicating(node)
        self.rt.store.record_event(f"rolling restart: node {node.id} back in {seconds:.1f} s "
                                   "and replicating", node.id)

    async def _restart(self, node: Node) -> float:
        """Restart mysqld on ``node`` (the reconcile loop leaves it alone meanwhile)."""
        self._restarting.add(node.id)
        failure: ConpaasSQLError | None = None
        seconds = 0.0
        try:
            async with self.replication.topology_lock:
                try:
                    answer = await self.rt.agents.restart_for_options(
                        node, timeout=RESTART_TIMEOUT)
                    seconds = answer.seconds
                except ConpaasSQLError as exc:
                    failure = exc  # the agent has put the previous options back
                await self._rejoin(self.nodes.node(node.id))
        finally:
            self._restarting.discard(node.id)
        if failure is not None:
            raise failure
        return seconds

    async def _rejoin(self, node: Node) -> None:
        """A restarted server starts read-only and without semi-sync: its role back."""
        if node.role is Role.MASTER:
            await self.replication._make_master(node, semi_sync=False)
        elif node.role is Role.SLAVE:
            await self.replication._point_at_master(node, None)

    async def _restart_master(self, master: Node, restarted: list[int]) -> float | None:
        """Switch over to a slave (one restarted already if any), then restart the old
        master as a slave. A service of one node just restarts it."""
        slaves = [n for n in self._targets() if n.role is Role.SLAVE]
        if not slaves:
            self.rt.store.record_event(f"rolling restart: node {master.id} is the only node: "
                                       "restarting it; no query until it is back", master.id)
            began = time.monotonic()
            await self._restart(master)
            down = time.monotonic() - began
            self.rt.store.record_event(f"rolling restart: node {master.id} back in "
                                       f"{down:.1f} s", master.id)
            return down
        target = next((n for n in slaves if n.id in restarted), slaves[0])
        switched = await self._switchover(target.id)
        await self._restart_slave(self.nodes.node(master.id))
        return float(switched["write_block_seconds"])

    async def _switchover(self, target_id: int) -> dict[str, Any]:
        for _ in range(SWITCHOVER_RETRIES):
            try:
                return await self.replication.switchover(target_id)
            except BusyError:  # a reconcile cycle holds the topology for a moment
                await asyncio.sleep(0.2)
        raise BusyError(detail="busy: the topology stayed locked; no switchover")

    async def _wait_replicating(self, node: Node) -> None:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            with contextlib.suppress(ConpaasSQLError):
                status = await self.rt.agents.get_replication_status(node, timeout=10)
                slave = status.slave if status is not None else None
                if slave is not None and slave.replicating and \
                        (slave.seconds_behind_master or 0) <= 1:
                    return
                last = "not replicating" if slave is None else \
                    f"io {slave.io_running}, sql {slave.sql_running}, " \
                    f"{slave.seconds_behind_master} s behind"
            await asyncio.sleep(0.2)
        raise WrongStateError(detail=f"node {node.id} is not back replicating after "
                              f"{CATCH_UP_TIMEOUT:.0f} s ({last})")

    # -- the reconcile loop's hook ----------------------------------------------

    async def reconcile(self, snapshot: Snapshot) -> list[Outcome]:
        """Give the service's options to every running node that does not hold them."""
        if self.busy or self.replication.topology_lock.locked():
            return []
        options = self.rt.store.server_options()
        digest = generation(options)
        done = []
        for node in snapshot.in_state(NodeState.RUNNING):
            report = snapshot.report(node.id)
            if node.ip is None or node.id in snapshot.seeding or report is None or \
                    not report.mysqld_answering:
                continue
            held = report.options_generation
            if held == digest or (held is None and not options) or \
                    self._refused.get(node.id) == digest:
                continue
            done.append(await self._give(node, options, digest))
        return done

    async def _give(self, node: Node, options: dict[str, str], digest: str) -> Outcome:
        try:
            reply = await self.rt.agents.set_service_options(node, ServiceOptionsRequest(
                options=options, generation=digest), timeout=60)
        except ConpaasSQLError as exc:
            if not str(exc).startswith("Invalid argument"):
                log.warning("giving node %d the service's options failed: %s", node.id, exc)
                return Outcome(None, node.id, Act.FAILED,
                               f"node {node.id}: giving the server configuration failed")
            self._refused[node.id] = digest  # not again: it would refuse again
            self.rt.store.record_event(f"node {node.id} refused the service's server "
                                       f"configuration: {str(exc)[:300]}", node.id)
            return Outcome(None, node.id, Act.FAILED,
                           f"node {node.id}: server configuration refused")
        self.rt.store.record_event(f"node {node.id} has the service's server configuration"
                                   + (f"; restart pending for {', '.join(reply.pending_restart)}"
                                      if reply.pending_restart else ""), node.id)
        if reply.pending_restart and node.role is Role.SLAVE and not self.busy:
            self._start_rolling([node.id], f"node {node.id} given the service's options", None)
        return Outcome(None, node.id, Act.CONFIGURE,
                       f"node {node.id}: server configuration given")


def _refusal(node: Node, exc: BaseException) -> ConpaasSQLError:
    """A node's refusal as the caller's error (the agent's own words)."""
    if isinstance(exc, RemoteError):
        text = str(exc)
        if text.startswith("Invalid argument: options DETAIL:"):
            return InvalidArgumentError("options", detail=text.split("DETAIL:", 1)[1])
        return RemoteError(f"node {node.id}: {text}")
    if isinstance(exc, ConpaasSQLError):
        return exc
    return RemoteError(f"node {node.id}: {exc}")
