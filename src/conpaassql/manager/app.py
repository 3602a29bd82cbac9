"""Wiring of the manager daemon: the one place its parts are put together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import uvicorn
from starlette.requests import Request
from starlette.routing import Route

from conpaassql.cloud.clouds import build_clouds, legacy_renames
from conpaassql.config import ManagerConfig
from conpaassql.errors import AuthError, ForbiddenError
from conpaassql.logs import setup_logging
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.api import ManagerApi
from conpaassql.manager.api_security import secure_api
from conpaassql.manager.archiving import BinlogArchiving
from conpaassql.manager.authority import Authority
from conpaassql.manager.configuration import ServiceConfiguration
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.loop_monitor import LoopMonitor
from conpaassql.manager.metrics import ManagerMetrics
from conpaassql.manager.reconcile import Reconciler
from conpaassql.manager.replication import Replication
from conpaassql.manager.service import NodeService, Runtime
from conpaassql.manager.store import Store
from conpaassql.manager.tokens import TokenStore
from conpaassql.rpc.auth import bearer_matches
from conpaassql.rpc.registry import Method, Registry
from conpaassql.rpc.server import Authorizer, Gate, RpcApp
from conpaassql.rpc.tls import client_context, peer_of, server_options

log = logging.getLogger(__name__)


def reachable_host(bind: str) -> str:
    """The address agents use to call a manager bound to ``bind``."""
    return "127.0.0.1" if bind in ("0.0.0.0", "", "::") else bind


def agent_authorizer(secret: str, service_id: str) -> Authorizer:
    """The agents' port: a node's certificate of this service and the agent credential."""

    async def authorize(request: Request, method: Method) -> str | None:
        peer = peer_of(request)
        if peer is None or peer.service_id != service_id or peer.node_id is None:
            raise AuthError(detail="this port is for the service's agents")
        if method.access != "agent":
            raise ForbiddenError(detail=f"{method.name} is not an agent's method")
        if not bearer_matches(request, secret):
            raise AuthError(detail="this port is for the service's agents")
        return peer.name

    return authorize


def agent_gate(secret: str, service_id: str) -> Gate:
    """A node's certificate of this service and the agent credential, before the body."""

    async def gate(request: Request) -> None:
        peer = peer_of(request)
        if peer is None or peer.service_id != service_id or peer.node_id is None or \
                not bearer_matches(request, secret):
            raise AuthError(detail="this port is for the service's agents")

    return gate


def agents_registry(registry: Registry) -> Registry:
    """The methods agents call (and only those), for the agents' port."""
    only = Registry()
    for method in registry:
        if method.access == "agent":
            only.add(method.name, method.verb, method.handler, method.params, doc=method.doc,
                     files=method.files, access=method.access)
    return only


async def serve(config: ManagerConfig, state_dir: Path, bind: str, port: int) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    log_file = state_dir / "manager.log"
    setup_logging(log_file)
    store = await asyncio.to_thread(Store, state_dir / "manager.db")
    secrets = ServiceSecrets.load(state_dir)
    authority = Authority.load_or_create(state_dir / "pki", store.service_id)
    clouds = build_clouds(config.clouds, state_dir, store.service_id)
    for old, new in legacy_renames(config.clouds).items():
        store.rename_cloud(old, new)
    agents_bind = config.agents_bind or bind
    agents_port = config.agents_port or port + 1
    runtime = Runtime(
        config=config, store=store, clouds=clouds,
        agents=AgentLink(secrets.agent_secret, client_context(authority.manager_files),
                         store.service_id),
        secrets=secrets,
        manager_url=f"https://{reachable_host(agents_bind)}:{agents_port}/",
        authority=authority,
        state_dir=state_dir,
    )
    nodes = NodeService(runtime)
    replication = Replication(nodes)
    configuration = ServiceConfiguration(nodes, replication)
    archiving = BinlogArchiving(nodes, state_dir)
    reconciler = Reconciler(runtime, nodes, replication, configuration, archiving)
    monitor = LoopMonitor()
    api = ManagerApi(nodes, reconciler, replication, log_file, monitor)
    backups = api.backups.backups
    # A gap in the binlog archive: a new full backup starts on its own.
    archiving.request_full_backup = lambda reason: nodes.spawn(
        backups.start("full"), f"full backup after a gap in the binlog archive ({reason})")
    registry = api.registry()
    authorizer, gate, api_tls, scheme = secure_api(config, authority,
                                                   TokenStore(state_dir / "secrets"), bind)
    metrics = ManagerMetrics(nodes, reconciler, replication, gate, monitor,
                             schedule=api.backups.scheduler.service_info)
    app = RpcApp(registry, authorizer=authorizer, gate=gate, max_body=config.max_request_bytes,
                 max_upload=config.max_upload_bytes, max_active=config.max_requests,
                 body_timeout=config.request_timeout).asgi(
        routes=[Route("/metrics", metrics.serve, methods=["GET"])])
    agents_app = RpcApp(agents_registry(registry), authorizer=agent_authorizer(
        secrets.agent_secret, store.service_id),
        gate=agent_gate(secrets.agent_secret, store.service_id)).asgi()
    server = uvicorn.Server(uvicorn.Config(app, host=bind, port=port, log_level="warning",
                                           lifespan="off", access_log=False, **api_tls))
    agents_server = uvicorn.Server(uvicorn.Config(
        agents_app, host=agents_bind, port=agents_port, log_level="warning", lifespan="off",
        access_log=False, **server_options(authority.manager_files)))
    monitor.start()
    prepare = asyncio.create_task(clouds.prepare(), name="prepare clouds")
    await reconciler.start()
    await api.backups.start()
    await api.first_restore.resume()
    loop_task = asyncio.create_task(reconciler.run(), name="reconcile")
    agents_task = asyncio.create_task(agents_server.serve(), name="agents port")
    log.info("manager of service %s listening on %s://%s:%d/, agents on https://%s:%d/ "
             "(state in %s)", store.service_id, scheme, bind, port, agents_bind, agents_port,
             state_dir)
    try:
        await server.serve()
    finally:
        agents_server.should_exit = True
        for task in (loop_task, prepare, agents_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await monitor.stop()
        await reconciler.close()
        await nodes.close()
        await api.backups.close()
        await runtime.agents.aclose()
        await asyncio.to_thread(store.close)  # the last changes committed
        log.info("manager stopped; nodes keep running")
