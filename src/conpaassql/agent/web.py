"""The agent's HTTP side: its RPC app, its server, its heartbeat client.

Kept apart from ``agent.app`` so that the agent can start mariadbd while this
(heavier) part is still being imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import uvicorn
from starlette.requests import Request

from conpaassql.agent.api import AgentApi
from conpaassql.agent.heartbeat import Heartbeat
from conpaassql.agent.settings import AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.errors import AuthError
from conpaassql.rpc.auth import bearer_matches
from conpaassql.rpc.registry import Method
from conpaassql.rpc.server import Authorizer, RpcApp


def manager_only(secret: str) -> Authorizer:
    """Every agent method needs the service's credential as a bearer token."""

    async def authorize(request: Request, method: Method) -> str | None:
        if not bearer_matches(request, secret):
            raise AuthError(detail="this agent answers its manager only")
        return "manager"

    return authorize


@dataclass
class AgentWeb:
    api: AgentApi
    heartbeat: Heartbeat
    server: uvicorn.Server


def build(settings: AgentSettings, supervisor: Supervisor) -> AgentWeb:
    secret = settings.context.secret
    api = AgentApi(settings, supervisor)
    heartbeat = Heartbeat(settings.context.manager_url, secret,
                          settings.context.heartbeat_interval, api.state_report)
    app = RpcApp(api.registry(), authorizer=manager_only(secret)).asgi()
    server = uvicorn.Server(uvicorn.Config(app, host=settings.bind, port=settings.agent_port,
                                           log_level="warning", lifespan="off",
                                           access_log=False))
    return AgentWeb(api, heartbeat, server)
