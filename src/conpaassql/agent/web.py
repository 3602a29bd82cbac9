"""The agent's HTTP side: its RPC app, its server, its heartbeat client.

Kept apart from ``agent.app`` so that the agent can start mariadbd while this
(heavier) part is still being imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.requests import Request

from conpaassql.agent.api import AgentApi
from conpaassql.agent.heartbeat import Heartbeat
from conpaassql.agent.lease import leave_from
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import AuthError, ForbiddenError
from conpaassql.rpc.auth import bearer_matches
from conpaassql.rpc.grants import (
    GRANTED,
    TransferGrant,
    check_transfer_grant,
    load_public_key,
)
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

log = logging.getLogger(__name__)


class TransferGrants:
    """The manager's transfer grants for this node: each taken once, before it expires."""

    def __init__(self, node_id: int, public_pem: str | None) -> None:
        self.node_id = node_id
        self._public_pem = public_pem
        self._key: Any = None
        self._taken: dict[str, int] = {}  # nonce -> expiry

    def _public_key(self) -> Any:
        if self._key is None and self._public_pem:
            try:
                self._key = load_public_key(self._public_pem)
            except ValueError:
                log.error("the context's grant key is unreadable: no transfer grant is valid")
                self._public_pem = None
        return self._key

    def shown(self, request: Request) -> TransferGrant | None:
        """The valid, untaken grant the request shows as its bearer token, if any."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        grant = check_transfer_grant(self._public_key(), token.strip(), self.node_id)
        return None if grant is None or grant.nonce in self._taken else grant

    def take(self, request: Request, method: str) -> bool:
        """True, once, if the request shows a valid grant for ``method``."""
        grant = self.shown(request)
        if grant is None or grant.method != method:
            return False
        now = time.time()
        self._taken = {n: e for n, e in self._taken.items() if e >= now}
        self._taken[grant.nonce] = grant.expiry
        return True


def manager_only(secret: str, service_id: str,
                 grants: TransferGrants | None = None) -> Authorizer:
    """Every agent method needs the manager's certificate (its ``peer`` methods also
    take another node's of the service) and the service's credential; a ``granted``
    one may instead be called once by whoever shows the manager's grant for it."""

    async def authorize(request: Request, method: Method) -> str | None:
        peer = peer_of(request)
        if peer is None and grants is not None and method.access == "granted" and \
                grants.take(request, method.name):
            return GRANTED
        if peer is None or peer.service_id != service_id:
            raise AuthError(detail="this agent answers its manager only")
        if peer.name != MANAGER_NAME and not (method.access == "peer" and
                                              peer.node_id is not None):
            raise ForbiddenError(detail=f"{method.name} is for the manager only")
        if not bearer_matches(request, secret):
            raise AuthError(detail="this agent answers its manager only")
        return peer.name

    return authorize


def manager_gate(secret: str, service_id: str, grants: TransferGrants | None = None) -> Gate:
    """A certificate of the service and its credential (or, without a certificate, a
    transfer grant), before the body is read."""

    async def gate(request: Request) -> None:
        peer = peer_of(request)
        if peer is None and grants is not None and grants.shown(request) is not None:
            return
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
                          server_name=dns_name(context.service_id, MANAGER_NAME),
                          intent=supervisor.intent, local_address=leave_from(settings.bind))
    supervisor.intent.on_change = heartbeat.nudge
    grants = TransferGrants(settings.node_id, context.grant_key)
    app = RpcApp(api.registry(),
                 authorizer=manager_only(context.secret, context.service_id, grants),
                 gate=manager_gate(context.secret, context.service_id, grants)).asgi()
    # A client without a certificate gets as far as the gate: a transfer grant or nothing.
    options = server_options(files, client_cert_optional=True)
    server = AgentServer(uvicorn.Config(app, host=settings.bind, port=settings.agent_port,
                                        log_level="warning", lifespan="off", access_log=False,
                                        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
                                        **options),
                         on_exit=supervisor.leaving)
    api.certificates.reloaders.append(lambda: reload_chain(server.config, files))
    return AgentWeb(api, heartbeat, server)


def reload_chain(config: uvicorn.Config, files: TlsFiles) -> None:
    """Serve the node's certificate as it is now on disk (new connections get it)."""
    context = getattr(config, "ssl", None)  # made when the server starts
    if isinstance(context, ssl.SSLContext):
        context.load_cert_chain(str(files.cert), str(files.key))
