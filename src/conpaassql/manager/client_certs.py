"""``issue_client_certificate``: a certificate of the service for a MySQL client.

MariaDB checks any certificate a client presents against the service's CA and
resets the connection when it is not the CA's (10.11 has no option to ignore it),
so a client that always presents one (sysbench ``--mysql-ssl=on``, a driver set
up with one) needs one signed by the service. The client keeps its private key:
it sends a certificate signing request and gets the certificate and the CA back.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from pydantic import AfterValidator, Field

from conpaassql.errors import InvalidArgumentError
from conpaassql.manager.service import NodeService
from conpaassql.rpc.registry import CallContext, Registry
from conpaassql.rpc.types import Params

MAX_REQUEST_CHARS = 16_384
LABEL = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def _label(value: str) -> str:
    if not LABEL.fullmatch(value):
        raise ValueError("1 to 32 of a-z, 0-9 and '-', not starting with '-'")
    return value


class ClientCertificateParams(Params):
    csr: Annotated[str, Field(min_length=1, max_length=MAX_REQUEST_CHARS)]
    label: Annotated[str, AfterValidator(_label)] = "client"


class ClientCertificates:
    """Signs MySQL clients' certificate requests with the service's CA."""

    def __init__(self, nodes: NodeService) -> None:
        self.rt = nodes.rt

    def register(self, registry: Registry) -> None:
        registry.add("issue_client_certificate", "POST", self.issue,
                     ClientCertificateParams, access="owner")

    async def issue(self, params: ClientCertificateParams, ctx: CallContext) -> dict[str, Any]:
        """Sign ``csr`` (PEM) as ``mysql-client-<label>``: client use only, the key
        never leaves the client."""
        try:
            cert = self.rt.authority.sign_client_request(params.csr, params.label)
        except ValueError as exc:
            raise InvalidArgumentError("csr", detail=str(exc)) from None
        subject = cert.subject.rfc4514_string()
        self.rt.store.record_event(f"client certificate issued: {subject}")
        return {
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "ca": self.rt.authority.ca_pem,
            "subject": subject,
            "not_after": cert.not_valid_after_utc.astimezone(datetime.UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
