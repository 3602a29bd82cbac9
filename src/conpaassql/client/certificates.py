"""``client_certificate``: a key made here, signed by the service, in sysbench's layout.

The key is generated locally (EC P-256) and never sent; the manager signs a
request for it (``issue_client_certificate``). The files are named as sysbench
``--mysql-ssl=on`` looks for them in its working directory, and serve any other
client too (``mariadb --ssl-cert=client-cert.pem --ssl-key=client-key.pem
--ssl-ca=cacert.pem``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KEY_FILE = "client-key.pem"
CERT_FILE = "client-cert.pem"
CA_FILE = "cacert.pem"


@dataclass(frozen=True)
class KeyRequest:
    """A fresh private key (PEM) and a signing request for it (PEM)."""

    key_pem: bytes
    csr_pem: str

    def __repr__(self) -> str:
        return "KeyRequest(<key and request>)"


def new_key_request(label: str) -> KeyRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
               .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return KeyRequest(key_pem, request.public_bytes(serialization.Encoding.PEM).decode("ascii"))


def write_files(directory: Path, key_pem: bytes, cert_pem: str, ca_pem: str) -> list[Path]:
    """The three files in ``directory`` (made if absent), the key mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data, mode in ((KEY_FILE, key_pem, 0o600),
                             (CERT_FILE, cert_pem.encode("ascii"), 0o644),
                             (CA_FILE, ca_pem.encode("ascii"), 0o644)):
        path = directory / name
        temporary = directory / f".{name}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temporary, path)
        written.append(path)
    return written
