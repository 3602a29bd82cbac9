"""Mutual TLS between the manager and its agents: names, contexts, the peer's identity.

Every certificate of a service comes from the service's own CA and names, in
its subject, the service (OU) and who holds it (CN: ``manager`` or ``node-N``).
A server asks for the client's certificate and the handshake refuses any not
from its CA; what the certificate then says of its holder is in the request
(``peer_of``), for the authorizer to decide which methods it may call.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ORGANIZATION = "conpaassql"
MANAGER_NAME = "manager"
DOMAIN = "conpaassql"
NODE_PREFIX = "node-"


def node_name(node_id: int) -> str:
    return f"{NODE_PREFIX}{node_id}"


def node_of_name(name: str | None) -> int | None:
    """N of ``node-N`` (None for any other name)."""
    if name and name.startswith(NODE_PREFIX) and name[len(NODE_PREFIX):].isdigit():
        return int(name[len(NODE_PREFIX):])
    return None


def dns_name(service_id: str, common_name: str) -> str:
    """The DNS name in a certificate: ``node-3.<service id>.conpaassql``."""
    return f"{common_name}.{service_id}.{DOMAIN}"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path  # mode 0600
    ca: Path


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context presenting ``files.cert`` and trusting only the service's CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert), str(files.key))
    return context


def peer_context(files: TlsFiles) -> ssl.SSLContext:
    """A client context for calling another node of the service, whose address is all
    the caller knows: the peer must hold a certificate of the service's CA (only the
    service's manager and nodes do), whatever name it bears."""
    context = client_context(files)
    context.check_hostname = False
    return context


def server_options(files: TlsFiles, *, client_cert_optional: bool = False) -> dict[str, Any]:
    """uvicorn options of a server that requires a client certificate from the CA (or,
    ``client_cert_optional``, checks one if shown: the application then decides what a
    client without one may do)."""
    required = ssl.CERT_OPTIONAL if client_cert_optional else ssl.CERT_REQUIRED
    return {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key),
            "ssl_ca_certs": str(files.ca), "ssl_cert_reqs": required,
            "http": PeerCertProtocol}


@dataclass(frozen=True)
class Peer:
    """Who a verified client certificate says its holder is."""

    service_id: str
    name: str  # "manager" or "node-N"

    @property
    def node_id(self) -> int | None:
        return node_of_name(self.name)


def peer_from_cert(cert: Any) -> Peer | None:
    """The holder named by a certificate in ``getpeercert()`` form."""
    if not isinstance(cert, dict):
        return None
    fields: dict[str, str] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            fields[key] = value
    if fields.get("organizationName") != ORGANIZATION:
        return None
    service, name = fields.get("organizationalUnitName"), fields.get("commonName")
    if not service or not name:
        return None
    return Peer(service, name)


def peer_of(request: Request) -> Peer | None:
    """The verified client certificate's holder; None over plain HTTP or without one."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    return peer_from_cert(tls.get("client_cert_dict"))


class PeerCertProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the verified client certificate in the scope
    (``scope["extensions"]["tls"]["client_cert_dict"]``, as ``getpeercert()`` gives it)."""

    _peer_cert: Any = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._peer_cert = transport.get_extra_info("peercert")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer_cert is not None:
            self.scope["extensions"] = {
                "tls": {"client_cert_dict": self._peer_cert}}
