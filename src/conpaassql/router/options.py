"""The router's command-line values checked: addresses, the token, the TLS files
(as ``conpaassql-client`` takes them). Errors are ``OptionError``s in one line,
never quoting a token."""

from __future__ import annotations

import os
import ssl

from conpaassql.errors import ConfigError
from conpaassql.router.settings import Address
from conpaassql.rpc import endpoint

TOKEN_ENV = endpoint.TOKEN_ENV
CA_ENV = "CONPAASSQL_CA_FILE"
CERT_ENV = "CONPAASSQL_CERT_FILE"
KEY_ENV = "CONPAASSQL_KEY_FILE"


class OptionError(ConfigError):
    template = "%s"


def address(text: str, option: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise OptionError(f"{option}: {exc}") from None


def token(token_file: str | None) -> str | None:
    """From ``--token-file``, else ``$CONPAASSQL_TOKEN``, else none."""
    try:
        return endpoint.load_token(token_file)
    except ValueError as exc:
        raise OptionError(str(exc)) from None


def verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """How the manager's certificate is checked: the CA of ``--ca-file`` or
    ``$CONPAASSQL_CA_FILE`` (else the system's); a client certificate from
    ``$CONPAASSQL_CERT_FILE`` and ``$CONPAASSQL_KEY_FILE`` when given."""
    ca = (ca_file or os.environ.get(CA_ENV, "")).strip()
    cert = os.environ.get(CERT_ENV, "").strip()
    key = os.environ.get(KEY_ENV, "").strip() or None
    if not ca and not cert:
        return True
    try:
        context = ssl.create_default_context(cafile=ca or None)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise OptionError(f"cannot read the TLS files: {exc}") from None
    return context
