"""The agent's ``install_certificate``: its certificate issued again, served at once.

The manager issues a node's certificate again when the names clients reach the
node by change (its address, once its cloud gave it one; a router's). The agent
checks it is still this node's (same CN and DNS name, from the service's CA, the
pair of the key), writes it where mysqld and the agent read theirs, and reloads it
without a restart: ``FLUSH SSL`` in mysqld, a new chain in the agent's HTTPS port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from conpaassql.agent.settings import INSTALLED_MARK, AgentSettings
from conpaassql.agent.supervisor import Supervisor
from conpaassql.domain.states import AgentState
from conpaassql.errors import ConpaasSQLError, InvalidArgumentError
from conpaassql.files import write_private
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import CertificateInstalled, CertificateRequest
from conpaassql.rpc.certificates import check_holder_certificate, names_in_pem
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.tls import node_name

log = logging.getLogger(__name__)


class CertificateApi:
    def __init__(self, settings: AgentSettings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        #: Called once a new certificate is in place (the agent's HTTPS port reloads it).
        self.reloaders: list[Callable[[], None]] = []
        self._names: tuple[int, list[str]] | None = None
        self._lock = asyncio.Lock()

    def register(self, registry: Registry) -> None:
        protocol.register(registry, protocol.INSTALL_CERTIFICATE, self.install_certificate)

    def names(self) -> list[str] | None:
        """The names the node's certificate holds (read again when the file changes)."""
        path = self.settings.tls_files.cert
        try:
            stamp = path.stat().st_mtime_ns
            if self._names is None or self._names[0] != stamp:
                self._names = (stamp, names_in_pem(path.read_bytes()))
        except (OSError, ValueError):
            return None
        return self._names[1]

    async def install_certificate(self, params: CertificateRequest,
                                  ctx: CallContext) -> dict[str, Any]:
        files = self.settings.tls_files
        context = self.settings.context
        try:
            names = check_holder_certificate(params.cert, params.key, files.ca.read_bytes(),
                                             context.service_id, node_name(context.node_id))
        except ValueError as exc:
            raise InvalidArgumentError("cert", detail=str(exc)) from None
        async with self._lock:
            await asyncio.to_thread(self._write, params.cert, params.key)
            mysqld = await self._reload_mysqld()
            https = self._reload_https()
        log.info("certificate installed, naming %s", ", ".join(names))
        return CertificateInstalled(names=names, mysqld_reloaded=mysqld,
                                    https_reloaded=https).wire()

    def _write(self, cert: str, key: str) -> None:
        files = self.settings.tls_files
        # The key first: a chain read between the two renames fails and is read again;
        # the mark last: an agent that stops in between starts again with the old pair.
        write_private(files.key, key)
        write_private(files.cert, cert)
        write_private(files.cert.parent / INSTALLED_MARK, "installed\n")

    async def _reload_mysqld(self) -> bool:
        if self.supervisor.state is not AgentState.RUNNING:
            return False  # it reads the files when it starts
        try:
            # Not binlogged: on a slave it would be an errant transaction.
            await self.supervisor.session.execute("FLUSH NO_WRITE_TO_BINLOG SSL")
        except ConpaasSQLError as exc:
            log.warning("mysqld did not reload its certificate: %s", exc)
            return False
        return True

    def _reload_https(self) -> bool:
        reloaded = bool(self.reloaders)
        for reload in self.reloaders:
            try:
                reload()
            except (OSError, ValueError) as exc:
                log.warning("the agent's port did not reload its certificate: %s", exc)
                reloaded = False
        return reloaded
