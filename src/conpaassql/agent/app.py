"""Wiring of the agent daemon: HTTP first, then the server, then the heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os

import uvicorn
from starlette.requests import Request

from conpaassql.agent.api import AgentApi
from conpaassql.agent.heartbeat import Heartbeat
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import AuthError, ConpaasSQLError
from conpaassql.logs import setup_logging
from conpaassql.rpc.registry import Method
from conpaassql.rpc.server import Authorizer, RpcApp

log = logging.getLogger(__name__)


def manager_only(secret: str) -> Authorizer:
    """Every agent method needs the service's credential as a bearer token."""

    async def authorize(request: Request, method: Method) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(),
                                                                 secret.encode()):
            raise AuthError(detail="this agent answers its manager only")
        return "manager"

    return authorize


async def serve(settings: AgentSettings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    setup_logging(settings.log_file)
    settings.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
    secret = settings.context.secret
    supervisor_events: list[str] = []
    heartbeat: Heartbeat | None = None

    def on_event(event: str) -> None:
        if heartbeat is not None:
            heartbeat.push(event)
        else:
            supervisor_events.append(event)

    supervisor = Supervisor(settings, on_event)
    api = AgentApi(settings, supervisor)
    heartbeat = Heartbeat(settings.context.manager_url, secret,
                          settings.context.heartbeat_interval, api.state_report)
    app = RpcApp(api.registry(), authorizer=manager_only(secret)).asgi()
    server = uvicorn.Server(uvicorn.Config(app, host=settings.bind, port=settings.agent_port,
                                           log_level="warning", lifespan="off",
                                           access_log=False))
    log.info("agent of node %d starting on %s:%d", settings.node_id, settings.bind,
             settings.agent_port)
    serving = asyncio.create_task(server.serve(), name="agent http")
    background: list[asyncio.Task[None]] = []
    try:
        try:
            await supervisor.boot()
        except ConpaasSQLError as exc:
            log.error("mysqld did not start: %s", exc)
            heartbeat.push(f"mysqld did not start: {exc}")
        background = [asyncio.create_task(heartbeat.run(), name="heartbeat"),
                      asyncio.create_task(api.sample_forever(), name="sampler")]
        await serving
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(ConpaasSQLError):
            await supervisor.stop()
        await heartbeat.aclose()
        with contextlib.suppress(OSError):
            settings.pid_file.unlink()
        log.info("agent stopped")
