"""Client certificates for MySQL clients: the service signs a request, the key stays
with the client, and the certificate opens no port but a MySQL server's."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conpaassql.client.certificates import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    new_key_request,
    write_files,
)
from conpaassql.manager.authority import CLIENT_PREFIX, Authority
from conpaassql.rpc.tls import node_of_name


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.load_or_create(tmp_path / "pki", "aa11bb22")


def test_a_request_is_signed_for_client_use_only(authority: Authority) -> None:
    request = new_key_request("load-tool")
    cert = authority.sign_client_request(request.csr_pem, "bench")
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == CLIENT_PREFIX + "bench"
    assert node_of_name(str(common_name)) is None
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.issuer == authority.cert.subject
    cert.verify_directly_issued_by(authority.cert)
    key = serialization.load_pem_private_key(request.key_pem, None)
    assert cert.public_key() == key.public_key()


def test_the_files_verify_against_the_service_ca(authority: Authority, tmp_path: Path) -> None:
    request = new_key_request("x")
    cert = authority.sign_client_request(request.csr_pem, "x")
    written = write_files(tmp_path / "certs", request.key_pem,
                          cert.public_bytes(serialization.Encoding.PEM).decode(),
                          authority.ca_pem)
    assert [path.name for path in written] == [KEY_FILE, CERT_FILE, CA_FILE]
    assert (tmp_path / "certs" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    context = ssl.create_default_context(cafile=str(tmp_path / "certs" / CA_FILE))
    context.load_cert_chain(tmp_path / "certs" / CERT_FILE, tmp_path / "certs" / KEY_FILE)


def _request(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-1")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_the_requested_subject_is_not_kept(authority: Authority) -> None:
    cert = authority.sign_client_request(_request(ec.generate_private_key(ec.SECP256R1())),
                                         "client")
    assert "node-1" not in cert.subject.rfc4514_string()


@pytest.mark.parametrize("bad", ["", "not a request", "-----BEGIN CERTIFICATE REQUEST-----\n"
                                 "AAAA\n-----END CERTIFICATE REQUEST-----\n", "é"])
def test_garbage_is_refused(authority: Authority, bad: str) -> None:
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        authority.sign_client_request(bad, "client")


def test_weak_or_odd_keys_are_refused(authority: Authority) -> None:
    with pytest.raises(ValueError, match="at least 2048"):
        authority.sign_client_request(
            _request(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "c")
    with pytest.raises(ValueError, match="P-256 or P-384"):
        authority.sign_client_request(_request(ec.generate_private_key(ec.SECP521R1())), "c")


def test_a_request_whose_signature_does_not_match_is_refused(authority: Authority) -> None:
    der = bytearray(x509.load_pem_x509_csr(new_key_request("a").csr_pem.encode())
                    .public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    pem = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
           + "-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(ValueError, match="signature does not match"):
        authority.sign_client_request(pem, "c")
