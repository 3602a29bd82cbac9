"""What a certificate of the service names, and whether one is fit to be a node's.

A node's certificate names the node (CN ``node-N``, DNS ``node-N.<service>.conpaassql``:
its identity for the manager) and the addresses clients reach its server by: its
own, and those of the service's routers. The manager issues it again when those
change; the agent checks what it is given before it serves it.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from conpaassql.rpc.tls import ORGANIZATION


def normalise_name(name: str) -> str:
    """An IP address in its canonical form; a DNS name in lower case."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")


def name_set(names: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise_name(name) for name in names)


def names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate holds, as text, sorted."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    found = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    found += [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return sorted(name_set(found))


def names_in_pem(pem: bytes) -> list[str]:
    return names_of(x509.load_pem_x509_certificate(pem))


def _subject(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def check_holder_certificate(cert_pem: str, key_pem: str, ca_pem: bytes, service_id: str,
                             common_name: str) -> list[str]:
    """The names of ``cert_pem`` if it is ``common_name``'s of this service, issued by
    the service's CA, valid now and the pair of ``key_pem``; ``ValueError`` (a short
    reason, nothing of the key) otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        key = load_pem_private_key(key_pem.encode("ascii"), password=None)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise ValueError("not a PEM certificate and private key") from None
    if (_subject(cert, NameOID.ORGANIZATION_NAME) != ORGANIZATION
            or _subject(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) != service_id
            or _subject(cert, NameOID.COMMON_NAME) != common_name):
        raise ValueError(f"the certificate is not {common_name}'s of this service")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError("the certificate is not from the service's CA") from None
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ValueError("the certificate is not valid now")
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or \
            key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise ValueError("the private key is not the certificate's")
    return names_of(cert)
