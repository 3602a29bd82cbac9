"""The agent's HTTP side: its RPC app, its server, its heartbeat client.

Kept apart from ``agent.app`` so that the agent can start mariadbd while this
(heavier) part is still being imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.requests import Request

from conpaassql.agent.api import AgentApi
from conpaassql.agent.heartbeat import Heartbeat
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import AuthError, ForbiddenError
from conpaassql.rpc.auth import bearer_matches
from conpaassql.rpc.registry import Method
from conpaassql.rpc.server import Authorizer, Gate, RpcApp
from conpaassql.rpc.tls import (
    MANAGER_NAME,
    TlsFiles,
    client_context,
    dns_name,
    peer_of,
    server_options,
)


def manager_only(secret: str, service_id: str) -> Authorizer:
    """Every agent method needs the manager's certificate (its ``peer`` methods also
    take another node's of the service) and the service's credential."""

    async def authorize(request: Request, method: Method) -> str | None:
        peer = peer_of(request)
        if peer is None or peer.service_id != service_id:
            raise AuthError(detail="this agent answers its manager only")
        if peer.name != MANAGER_NAME and not (method.access == "peer" and
                                              peer.node_id is not None):
            raise ForbiddenError(detail=f"{method.name} is for the manager only")
        if not bearer_matches(request, secret):
            raise AuthError(detail="this agent answers its manager only")
        return peer.name

    return authorize


def manager_gate(secret: str, service_id: str) -> Gate:
    """A certificate of the service and its credential, before the body is read."""

    async def gate(request: Request) -> None:
        peer = peer_of(request)
        if peer is None or peer.service_id != service_id or not bearer_matches(request, secret):
            raise AuthError(detail="this agent answers its manager only")

    return gate


#: Seconds the agent's server waits, once told to stop, for its connections to close:
#: the manager's idle keep-alive connections answer no TLS close until it uses them again.
GRACEFUL_SHUTDOWN = 1


class AgentServer(uvicorn.Server):
    """uvicorn's server, whose SIGTERM and SIGINT are the agent's: they stop the server
    and call ``on_exit`` at once. uvicorn's own handling raises the signal again once
    the server has stopped, which ended the agent before it could stop its mariadbd.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, self._exit)
        try:
            yield
        finally:
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(number)

    def _exit(self) -> None:
        self.should_exit = True
        self.on_exit()


@dataclass
class AgentWeb:
    api: AgentApi
    heartbeat: Heartbeat
    server: uvicorn.Server


def build(settings: AgentSettings, supervisor: Supervisor) -> AgentWeb:
    context = settings.context
    files = settings.tls_files
    api = AgentApi(settings, supervisor)
    heartbeat = Heartbeat(context.manager_url, context.secret, context.heartbeat_interval,
                          api.state_report, verify=client_context(files),
                          server_name=dns_name(context.service_id, MANAGER_NAME))
    app = RpcApp(api.registry(), authorizer=manager_only(context.secret, context.service_id),
                 gate=manager_gate(context.secret, context.service_id)).asgi()
    server = AgentServer(uvicorn.Config(app, host=settings.bind, port=settings.agent_port,
                                        log_level="warning", lifespan="off", access_log=False,
                                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                                        **server_options(files)),
                         on_exit=supervisor.leaving)
    api.certificates.reloaders.append(lambda: reload_chain(server.config, files))
    return AgentWeb(api, heartbeat, server)


def reload_chain(config: uvicorn.Config, files: TlsFiles) -> None:
    """Serve the node's certificate as it is now on disk (new connections get it)."""
    context = getattr(config, "ssl", None)  # made when the server starts
    if isinstance(context, ssl.SSLContext):
        context.load_cert_chain(str(files.cert), str(files.key))
