"""Copy grants: the manager's leave for one node to take a copy of another, for a while.

A node's certificate shows it belongs to the service, not that it still does: a
node removed from the service keeps its certificate (and every secret it was
given). So a node asking another for a copy (``backup_stream``, ``backup_push``,
``copy_dump``) must also show a grant the manager signed for exactly that pair,
the receiver's address and a near expiry, with a key only the manager holds
(ECDSA P-256; nodes get the public half in their context). A removed node gets
no new grant and cannot make one.

Transfer grants, signed with the same key, let a client (which holds no
certificate of the service) call one data method of one node's agent once, within
a minute: the manager hands them to whoever may call its own ``load_dump`` or
``sqldump``, so that the dump's bytes go straight between that client and the node.
"""

from __future__ import annotations

import re
import secrets
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


# -- transfer grants: a client streams a dump straight to or from one node's agent ---------

TRANSFER_TTL = 60.0  # seconds: the transfer must start within this
#: The principal of a call made with a transfer grant (its caller has no certificate).
GRANTED = "granted"
_TRANSFER = re.compile(r"t1:(\d+):([a-z_]{1,40}):(\d+):([0-9a-f]{32}):([0-9a-f]{16,300})")


@dataclass(frozen=True)
class TransferGrant:
    node: int
    method: str  # the one agent method it allows (load_dump, sqldump...)
    expiry: int
    nonce: str  # makes each grant distinct: an agent takes it once


def _transfer_message(node: int, method: str, expiry: int, nonce: str) -> bytes:
    return f"conpaassql transfer grant v1: {method} on {node} until {expiry} " \
           f"({nonce})".encode()


def make_transfer_grant(key: ec.EllipticCurvePrivateKey, node: int, method: str,
                        ttl: float = TRANSFER_TTL, now: float | None = None) -> str:
    """The manager's leave for whoever it answers to call ``method`` of node ``node``'s
    agent once, within ``ttl`` seconds (no certificate of the service needed)."""
    expiry = int((time.time() if now is None else now) + ttl)
    nonce = secrets.token_hex(16)
    signature = key.sign(_transfer_message(node, method, expiry, nonce),
                         ec.ECDSA(hashes.SHA256()))
    return f"t1:{node}:{method}:{expiry}:{nonce}:{signature.hex()}"


def check_transfer_grant(public_key: ec.EllipticCurvePublicKey | None, grant: str | None,
                         node: int, now: float | None = None) -> TransferGrant | None:
    """The grant if the manager signed it for node ``node`` and it has not expired."""
    found = _TRANSFER.fullmatch(grant or "")
    if found is None or public_key is None:
        return None
    granted = TransferGrant(int(found.group(1)), found.group(2), int(found.group(3)),
                            found.group(4))
    if granted.node != node or granted.expiry < (time.time() if now is None else now):
        return None
    try:
        public_key.verify(bytes.fromhex(found.group(5)),
                          _transfer_message(granted.node, granted.method, granted.expiry,
                                            granted.nonce), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return None
    return granted
