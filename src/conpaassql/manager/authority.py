"""The service's own certificate authority: who is the manager, and who is node N.

At first start the manager creates a CA (an ECDSA P-256 key, mode 0600, in
``<state dir>/pki``) and a certificate of its own from it. Every node it creates
gets a certificate in its context: the subject names the service (OU) and the
node (CN ``node-N``), and a DNS name ``node-N.<service id>.conpaassql`` lets a
client check it is talking to that very node whatever its address. Each service
has its own CA, so a certificate of another service is refused by the TLS
handshake itself.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conpaassql.files import write_private
from conpaassql.rpc.grants import public_pem
from conpaassql.rpc.tls import MANAGER_NAME, ORGANIZATION, TlsFiles, dns_name, node_name

CA_DAYS = 3650
LEAF_DAYS = 825
CA_NAME = "conpaassql service CA"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:
        return "Issued(<certificate and key>)"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Authority:
    """Issues the service's certificates; its key never leaves the state directory."""

    def __init__(self, directory: Path, service_id: str, key: ec.EllipticCurvePrivateKey,
                 cert: x509.Certificate) -> None:
        self.directory = directory
        self.service_id = service_id
        self._key = key
        self.cert = cert
        #: Signs copy grants (``rpc.grants``); nodes hold only its public half. Kept in
        #: ``grant.key`` by ``load_or_create``; a fresh one otherwise.
        self.grant_key: ec.EllipticCurvePrivateKey = ec.generate_private_key(ec.SECP256R1())

    @property
    def grant_public_pem(self) -> str:
        return public_pem(self.grant_key)

    def _load_or_make_grant_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.directory / "grant.key"
        if path.is_file():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path} is not an EC private key")
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, _key_pem(key))
        return key

    @property
    def ca_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @classmethod
    def load_or_create(cls, directory: Path, service_id: str) -> Authority:
        """The CA in ``directory``, created (with the manager's certificate) if absent."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        key_file, cert_file = directory / "ca.key", directory / "ca.crt"
        if key_file.is_file() and cert_file.is_file():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_file} is not an EC private key")
            authority = cls(directory, service_id, key,
                            x509.load_pem_x509_certificate(cert_file.read_bytes()))
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, service_id),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            ])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256())
            )
            write_private(key_file, _key_pem(key))
            write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            authority = cls(directory, service_id, key, cert)
        authority._ensure_manager_identity()
        authority.grant_key = authority._load_or_make_grant_key()
        return authority

    def issue(self, common_name: str, *, ips: tuple[str, ...] = (),
              hosts: tuple[str, ...] = ()) -> Issued:
        """A certificate for ``common_name`` of this service, for server and client use.

        Its DNS names are ``<common_name>.<service id>.conpaassql`` and ``hosts``;
        its IP addresses are ``ips``.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        names: list[x509.GeneralName] = [x509.DNSName(dns_name(self.service_id, common_name))]
        names += [x509.DNSName(host) for host in hosts]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, self.service_id),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
                      _key_pem(key).decode("ascii"))

    def issue_node(self, node_id: int, ip: str | None = None, *, ips: tuple[str, ...] = (),
                   hosts: tuple[str, ...] = ()) -> Issued:
        """Node ``node_id``'s certificate: its own name, and the addresses (``ip``,
        ``ips``) and DNS names (``hosts``) clients reach its server by."""
        every = tuple(dict.fromkeys(((ip,) if ip else ()) + ips))
        return self.issue(node_name(node_id), ips=every, hosts=hosts)

    @property
    def manager_files(self) -> TlsFiles:
        """The manager's certificate and key, and the CA, as files."""
        return TlsFiles(cert=self.directory / "manager.crt", key=self.directory / "manager.key",
                        ca=self.ca_file)

    def _ensure_manager_identity(self) -> None:
        files = self.manager_files
        if files.cert.is_file() and files.key.is_file():
            return
        issued = self.issue(MANAGER_NAME, ips=("127.0.0.1",), hosts=("localhost",))
        write_private(files.key, issued.key_pem.encode("ascii"))
        write_private(files.cert, issued.cert_pem.encode("ascii"), 0o644)
