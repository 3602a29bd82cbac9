"""The agent's side of the service's server configuration (set on the manager).

The manager sends the service's whole set of options. The agent checks them
against its own server (``mysql.options``: the names it knows, values of their
type, no protected one), and, unless it is a dry run, applies the dynamic ones
with ``SET GLOBAL``, keeps them all in ``service-options.json`` and rewrites
``my.cnf`` (so that any later start has them). Options that need a restart wait
for ``restart_for_options``, which rolls back to the options mysqld last started
with if it will not start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, MySQLError, WrongStateError
from conpaassql.mysql import options as server_options
from conpaassql.mysql.binaries import SERVER, find_binary
from conpaassql.mysql.config import render_my_cnf
from conpaassql.mysql.options import OptionInfo
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    NoRequest,
    OptionNamesRequest,
    OptionsRestarted,
    ServiceOptionsRequest,
    ServiceOptionsSet,
    ServiceOptionsState,
)
from conpaassql.protocol.options import generation
from conpaassql.rpc.registry import CallContext, Registry

log = logging.getLogger(__name__)


class OptionsApi:
    """Checks, applies and reports the service's options on this node."""

    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self._catalogue: dict[str, OptionInfo] | None = None

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.SET_SERVICE_OPTIONS, self.set_service_options)
        protocol.register(registry, protocol.GET_SERVICE_OPTIONS, self.get_service_options)
        protocol.register(registry, protocol.RESTART_FOR_OPTIONS, self.restart_for_options)

    async def catalogue(self) -> dict[str, OptionInfo]:
        """The options this server knows (asked once, of the running server)."""
        if self._catalogue is None:
            if self.supervisor.state is not AgentState.RUNNING:
                raise WrongStateError(detail=f"mysqld is {self.supervisor.state}: its "
                                      "options cannot be checked now")
            self._catalogue = await server_options.read_catalogue(
                self.supervisor.session, find_binary(*SERVER))
        return self._catalogue

    # -- methods ------------------------------------------------------------

    async def set_service_options(self, params: ServiceOptionsRequest,
                                  ctx: CallContext) -> dict[str, Any]:
        """Check the service's options here; unless a dry run, apply and keep them."""
        catalogue = await self.catalogue()
        checked = server_options.check_options(params.options, catalogue)
        dynamic = sorted(name for name in checked if catalogue[name].dynamic)
        static = sorted(name for name in checked if not catalogue[name].dynamic)
        if params.dry_run:
            return ServiceOptionsSet(generation=params.generation, options=checked,
                                     dynamic=dynamic, static=static).wire()
        before, _ = self.settings.service_options()
        dropped = [name for name in before if name not in checked]
        applied = await self._set_globals(checked, dropped, catalogue)
        self.settings.save_service_options(checked, params.generation)
        self.supervisor.write_config()
        log.info("service options %s: %d set at once, restart pending for %s",
                 params.generation, len(applied), self.pending_restart() or "none")
        return ServiceOptionsSet(generation=params.generation, options=checked,
                                 dynamic=dynamic, static=static, applied=applied,
                                 pending_restart=self.pending_restart()).wire()

    async def get_service_options(self, params: OptionNamesRequest,
                                  ctx: CallContext) -> dict[str, Any]:
        """The node's copy of the service's options and what is in effect now."""
        options, found = self.settings.service_options()
        names = sorted(set(options) | {name.replace("-", "_").lower()
                                       for name in params.names})
        effective: dict[str, str | None] = dict.fromkeys(names)
        if self.supervisor.state is AgentState.RUNNING and names:
            rows = await self.supervisor.session.execute(
                "SELECT LOWER(VARIABLE_NAME) AS name, GLOBAL_VALUE AS value FROM "
                "information_schema.SYSTEM_VARIABLES WHERE LOWER(VARIABLE_NAME) IN ("
                + ", ".join(["%s"] * len(names)) + ")", names, idempotent=True)
            effective.update({str(row["name"]): None if row["value"] is None
                              else str(row["value"]) for row in rows})
        return ServiceOptionsState(generation=found, options=options, effective=effective,
                                   pending_restart=self.pending_restart()).wire()

    async def restart_for_options(self, params: NoRequest, ctx: CallContext) -> dict[str, Any]:
        """Restart mysqld with the options kept; if it will not start, go back to those it
        last started with (and say why, in the server's own words)."""
        started = dict(self.supervisor.started_options)
        kept, found = self.settings.service_options()
        began = time.monotonic()

        def revert() -> None:
            options, generation = self._as_started(kept, started)
            self.settings.save_service_options(options, generation)

        try:
            await self.supervisor.reconfigure(lambda: None, revert)
        except MySQLError as exc:
            await asyncio.to_thread(self.supervisor.session.close)
            raise MySQLError("mysqld did not start with the service's options; it is back "
                             "on those it ran with", detail=_server_error(exc.detail)) from None
        await asyncio.to_thread(self.supervisor.session.close)  # a new server: reconnect
        return OptionsRestarted(generation=found,
                                seconds=round(time.monotonic() - began, 3)).wire()

    # -- state ----------------------------------------------------------------

    def pending_restart(self) -> list[str]:
        """Options of ``my.cnf`` that differ from those mysqld started with and that
        ``SET GLOBAL`` could not have applied."""
        now, then = self.supervisor.written_options, self.supervisor.started_options
        changed = {name for name in set(now) | set(then) if now.get(name) != then.get(name)}
        catalogue = self._catalogue or {}
        pending = []
        for name in changed:
            info = catalogue.get(name.replace("-", "_"))
            if info is None or not info.dynamic:
                pending.append(name.replace("-", "_"))
        return sorted(pending)

    def report(self) -> dict[str, Any]:
        """The StateReport's fields on the service's options."""
        try:
            _, found = self.settings.service_options()
        except ConpaasSQLError:
            found = None
        return {"options_generation": found, "restart_pending": bool(self.pending_restart())}

    # -- helpers --------------------------------------------------------------

    async def _set_globals(self, checked: dict[str, str], dropped: list[str],
                           catalogue: dict[str, OptionInfo]) -> list[str]:
        """``SET GLOBAL`` the dynamic options, and the dropped ones back to what my.cnf
        would give them; on an error, those set so far go back and the error is raised."""
        base = render_my_cnf(self.settings.paths,
                             self.settings.server_settings(service_options=False))
        wanted: dict[str, str | None] = {
            name: value for name, value in checked.items() if catalogue[name].dynamic}
        for name in dropped:
            info = catalogue.get(name)
            if info is not None and info.dynamic:
                default = server_options.base_value(base, name)
                wanted[name] = None if default is None else \
                    server_options.check_value(info, default)
        names = sorted(wanted)
        previous = await self._globals(names)
        done: list[str] = []
        try:
            for name in names:
                await self._set_global(catalogue[name], wanted[name])
                done.append(name)
        except MySQLError:
            for name in done:
                try:
                    await self._set_global(catalogue[name], previous.get(name))
                except MySQLError as exc:
                    log.warning("could not put %s back: %s", name, exc)
            raise
        return done

    async def _set_global(self, info: OptionInfo, value: str | None) -> None:
        if value is None:
            await self.supervisor.session.execute(f"SET GLOBAL `{info.name}` = DEFAULT")
        else:
            await self.supervisor.session.execute(f"SET GLOBAL `{info.name}` = %s",
                                                  (info.sql_value(value),))

    async def _globals(self, names: list[str]) -> dict[str, str | None]:
        if not names:
            return {}
        rows = await self.supervisor.session.execute(
            "SELECT LOWER(VARIABLE_NAME) AS name, GLOBAL_VALUE AS value FROM "
            "information_schema.SYSTEM_VARIABLES WHERE LOWER(VARIABLE_NAME) IN ("
            + ", ".join(["%s"] * len(names)) + ")", names, idempotent=True)
        return {str(row["name"]): None if row["value"] is None else str(row["value"])
                for row in rows}

    def _as_started(self, kept: dict[str, str], started: dict[str, str]
                    ) -> tuple[dict[str, str], str]:
        """The service's options as they were when mysqld last started."""
        others = self.settings.server_settings(service_options=False).options
        options = {}
        for name in kept:
            dashed = name.replace("_", "-")
            if dashed in started and started[dashed] != others.get(dashed):
                options[name] = started[dashed]
        for dashed, value in started.items():
            name = dashed.replace("-", "_")
            if name not in kept and others.get(dashed) != value:
                options[name] = value
        return options, generation(options)


def _server_error(detail: str | None) -> str:
    """The server's own error lines of a failed start (its error log's ``[ERROR]``s)."""
    if not detail:
        return "no error in the server's log"
    errors = [line for line in detail.splitlines() if "[ERROR]" in line]
    return "\n".join(errors[-5:]) if errors else detail[-2000:]
