"""Wiring of the agent daemon.

mariadbd is started first, while the HTTP side is imported and built in a
thread: a new node answers SQL as early as it can. Then the agent serves its
RPC methods and registers with the manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import ConpaasSQLError
from conpaassql.logs import setup_logging

if TYPE_CHECKING:
    from conpaassql.agent.health_http import HealthListener
    from conpaassql.agent.lease import LeaseKeeper
    from conpaassql.agent.web import AgentWeb

log = logging.getLogger(__name__)


def _build_web(settings: AgentSettings, supervisor: Supervisor) -> AgentWeb:
    from conpaassql.agent import web

    return web.build(settings, supervisor)


async def _start_health(settings: AgentSettings, supervisor: Supervisor) -> HealthListener | None:
    """The plain-HTTP health port; the agent goes on without it if it cannot listen."""
    from conpaassql.agent.health import HealthProbe
    from conpaassql.agent.health_http import HealthListener
    from conpaassql.agent.lease import source_key

    probe = HealthProbe(supervisor, supervisor.intent,
                        source_key=source_key(settings.context.secret))
    listener = HealthListener(probe, settings.bind,
                              settings.health_port, settings.health_max_lag)
    try:
        await listener.start()
    except OSError as exc:
        log.error("no health port %s:%d: %s", settings.bind, settings.health_port,
                  exc.strerror or exc)
        return None
    return listener


def _lease_keeper(settings: AgentSettings, supervisor: Supervisor) -> LeaseKeeper:
    """Keeps the master's lease; sets its server read-only once the lease ran out."""
    from conpaassql.agent.lease import LeaseKeeper, leave_from, server_fence, source_key

    intent = supervisor.intent
    return LeaseKeeper(intent.lease, lambda: intent.master, server_fence(supervisor),
                       local_address=leave_from(settings.bind),
                       key=source_key(settings.context.secret))


async def serve(settings: AgentSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.write_tls_files()  # before mariadbd starts: it serves TLS with them
    setup_logging(settings.log_file)
    settings.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    early_events: list[str] = []
    supervisor = Supervisor(settings, early_events.append)
    booting = asyncio.create_task(supervisor.boot(), name="boot mariadbd")
    web = await asyncio.to_thread(_build_web, settings, supervisor)
    supervisor.on_event = web.heartbeat.push
    for event in early_events:
        web.heartbeat.push(event)
    log.info("agent of node %d starting on %s:%d", settings.node_id, settings.bind,
             settings.agent_port)
    health = await _start_health(settings, supervisor)
    serving = asyncio.create_task(web.server.serve(), name="agent http")
    background: list[asyncio.Task[None]] = []
    try:
        try:
            await booting
        except ConpaasSQLError as exc:
            log.error("mysqld did not start: %s", exc)
            web.heartbeat.push(f"mysqld did not start: {exc}")
        background = [asyncio.create_task(web.heartbeat.run(), name="heartbeat"),
                      asyncio.create_task(_lease_keeper(settings, supervisor).run(), name="lease"),
                      asyncio.create_task(web.api.sample_forever(), name="sampler")]
        await serving
    finally:
        if health is not None:
            await health.close()
        for task in (*background, booting):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConpaasSQLError):
                await task
        await web.api.archive.close()
        await web.api.dump_logins.close()
        with contextlib.suppress(ConpaasSQLError):
            await supervisor.stop()
        supervisor.session.close()
        await web.heartbeat.aclose()
        with contextlib.suppress(OSError):
            settings.pid_file.unlink()
        log.info("agent stopped")
