"""Wiring of the manager daemon: the one place its parts are put together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import uvicorn
from starlette.requests import Request

from conpaassql.cloud.base import CloudDriver
from conpaassql.cloud.local import LocalDriver
from conpaassql.config import ManagerConfig
from conpaassql.errors import AuthError, ConfigError
from conpaassql.logs import setup_logging
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.api import ManagerApi
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.manager.store import Store
from conpaassql.rpc.auth import bearer_matches
from conpaassql.rpc.registry import Method
from conpaassql.rpc.server import Authorizer, RpcApp

log = logging.getLogger(__name__)


def build_driver(config: ManagerConfig, state_dir: Path) -> CloudDriver:
    if config.driver == "LOCAL":
        return LocalDriver(state_dir, config.local)
    raise ConfigError(config.path or "configuration", detail=f"unknown driver {config.driver}")


def reachable_host(bind: str) -> str:
    """The address agents use to call a manager bound to ``bind``."""
    return "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind


def agent_authorizer(secret: str) -> Authorizer:
    """Methods for agents need the service's agent credential as a bearer token."""

    async def authorize(request: Request, method: Method) -> str | None:
        if method.access != "agent":
            return "user"
        if not bearer_matches(request, secret):
            raise AuthError(detail="this method is for the service's agents")
        return "agent"

    return authorize


async def serve(config: ManagerConfig, state_dir: Path, bind: str, port: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "manager.log"
    setup_logging(log_file)
    store = Store(state_dir / "manager.db")
    secrets = ServiceSecrets.load(state_dir)
    driver = build_driver(config, state_dir)
    runtime = Runtime(
        config=config, store=store, driver=driver,
        agents=AgentLink(secrets.agent_secret),
        secrets=secrets,
        manager_url=f"http://{reachable_host(bind)}:{port}/",
    )
    nodes = NodeService(runtime)
    replication = Replication(nodes)
    reconciler = Reconciler(runtime, nodes, replication)
    api = ManagerApi(nodes, reconciler, replication, log_file)
    app = RpcApp(api.registry(), authorizer=agent_authorizer(secrets.agent_secret)).asgi()
    server = uvicorn.Server(uvicorn.Config(app, host=bind, port=port, log_level="warning",
                                           lifespan="off", access_log=False))
    prepare = asyncio.create_task(driver.prepare(), name="prepare cloud")
    await reconciler.start()
    loop_task = asyncio.create_task(reconciler.run(), name="reconcile")
    log.info("manager of service %s listening on http://%s:%d/ (state in %s)",
             store.service_id, bind, port, state_dir)
    try:
        await server.serve()
    finally:
        for task in (loop_task, prepare):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await nodes.close()
        await runtime.agents.aclose()
        store.close()
        log.info("manager stopped; nodes keep running")
