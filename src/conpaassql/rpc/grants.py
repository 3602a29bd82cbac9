"""Copy grants: the manager's leave for one node to take a copy of another, for a while.

A node's certificate shows it belongs to the service, not that it still does: a
node removed from the service keeps its certificate (and every secret it was
given). So a node asking another for a copy (``backup_stream``, ``backup_push``,
``copy_dump``) must also show a grant the manager signed for exactly that pair,
the receiver's address and a near expiry, with a key only the manager holds
(ECDSA P-256; nodes get the public half in their context). A removed node gets
no new grant and cannot make one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

GRANT_TTL = 600.0  # seconds: the copy must start within this
_GRANT = re.compile(r"(\d+):(\d+):([0-9a-fA-F.:]{2,45}):(\d+):([0-9a-f]{16,300})")


@dataclass(frozen=True)
class Grant:
    source: int
    receiver: int
    address: str  # where the receiver takes the copy (backup_push connects only there)
    expiry: int


def _message(source: int, receiver: int, address: str, expiry: int) -> bytes:
    return f"conpaassql copy grant v1: {source} -> {receiver} at {address} until " \
           f"{expiry}".encode()


def make_grant(key: ec.EllipticCurvePrivateKey, source: int, receiver: int, address: str,
               ttl: float = GRANT_TTL, now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + ttl)
    signature = key.sign(_message(source, receiver, address, expiry), ec.ECDSA(hashes.SHA256()))
    return f"{source}:{receiver}:{address}:{expiry}:{signature.hex()}"


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an EC public key")
    return key


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def check_grant(public_key: ec.EllipticCurvePublicKey | None, grant: str | None,
                source: int, receiver: int, now: float | None = None) -> Grant | None:
    """The grant if it lets node ``receiver`` copy node ``source`` now, else None."""
    found = _GRANT.fullmatch(grant or "")
    if found is None or public_key is None:
        return None
    granted = Grant(int(found.group(1)), int(found.group(2)), found.group(3),
                    int(found.group(4)))
    if (granted.source, granted.receiver) != (source, receiver):
        return None
    if granted.expiry < (time.time() if now is None else now):
        return None
    try:
        public_key.verify(bytes.fromhex(found.group(5)),
                          _message(granted.source, granted.receiver, granted.address,
                                   granted.expiry), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return None
    return granted
