"""The stored form of an object: a header, then AES-256-GCM frames.

Header (56 bytes, in the clear)::

    magic "CQSQLBK" | version 1 (1) | compression 1 = zstd (1) | 0 (3)
    | frame size (4, big-endian) | key id (8) | salt (32)

Each object is encrypted with its own key, HKDF-SHA256 of the service's key with
the header's random salt, so the frame counter can be the nonce. Frames::

    length (4, big-endian: bit 31 = final frame, bits 0-30 = ciphertext bytes)
    | ciphertext with its 16-byte tag

The associated data of frame ``n`` is sha256(header + object key) | n (8) | final (1):
a changed byte anywhere, frames swapped, dropped or cut off, a header or an
object moved to another key, or another service key, and the frame is refused.
The last frame carries the final flag (it may be empty); nothing may follow it.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conpaassql.backup.errors import CorruptObjectError
from conpaassql.backup.keys import BackupKey

MAGIC = b"CQSQLBK"
VERSION = 1
ZSTD = 1
FRAME_SIZE = 1 << 20
TAG_BYTES = 16
_HEADER = struct.Struct(">7sBB3xI8s32s")
HEADER_BYTES = _HEADER.size
_LENGTH = struct.Struct(">I")
FINAL = 1 << 31
_INFO = b"conpaassql backup object v1"


def _object_cipher(key: BackupKey, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return AESGCM(hkdf.derive(key.secret))


def _associated(binding: bytes, counter: int, final: bool) -> bytes:
    return binding + counter.to_bytes(8, "big") + (b"\1" if final else b"\0")


def _binding(header: bytes, name: str) -> bytes:
    return hashlib.sha256(header + name.encode("utf-8")).digest()


class FrameEncoder:
    """Compressed bytes in, stored bytes out; the sha256 of what it gave out."""

    def __init__(self, key: BackupKey, name: str, frame_size: int = FRAME_SIZE) -> None:
        salt = os.urandom(32)
        self.header = _HEADER.pack(MAGIC, VERSION, ZSTD, frame_size,
                                   bytes.fromhex(key.id), salt)
        self._cipher = _object_cipher(key, salt)
        self._binding = _binding(self.header, name)
        self._frame_size = frame_size
        self._counter = 0
        self._pending = bytearray()
        self.digest = hashlib.sha256(self.header)
        self.size = len(self.header)

    def update(self, data: bytes) -> bytes:
        """The frames completed by ``data``; a frame is only sent once more data follows
        it, so that the last one can carry the final flag."""
        self._pending += data
        out = bytearray()
        while len(self._pending) > self._frame_size:
            with memoryview(self._pending) as view:
                out += self._frame(view[: self._frame_size], final=False)
            del self._pending[: self._frame_size]
        return self._count(bytes(out))

    def finish(self) -> bytes:
        out = self._frame(bytes(self._pending), final=True)
        self._pending.clear()
        return self._count(out)

    def _frame(self, plain: bytes | memoryview, final: bool) -> bytes:
        nonce = self._counter.to_bytes(12, "big")
        sealed = self._cipher.encrypt(nonce, plain, _associated(self._binding, self._counter,
                                                                 final))
        self._counter += 1
        return _LENGTH.pack(len(sealed) | (FINAL if final else 0)) + sealed

    def _count(self, out: bytes) -> bytes:
        self.digest.update(out)
        self.size += len(out)
        return out


class FrameDecoder:
    """Stored bytes in, authenticated compressed bytes out; refuses naming ``name``."""

    def __init__(self, key: BackupKey, name: str) -> None:
        self._key = key
        self.name = name
        self._buffer = bytearray()
        self._cipher: AESGCM | None = None
        self._binding = b""
        self._limit = 0
        self._counter = 0
        self._final = False
        self.digest = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> bytes:
        self.digest.update(data)
        self.size += len(data)
        self._buffer += data
        if self._cipher is None and not self._read_header():
            return b""
        out = bytearray()
        while (plain := self._next_frame()) is not None:
            out += plain
        return bytes(out)

    def finish(self) -> None:
        """Refuses an object cut short: without its header or final frame."""
        if self._cipher is None or not self._final:
            raise self.corrupt("truncated: it ends before its final frame")

    def corrupt(self, detail: str) -> CorruptObjectError:
        return CorruptObjectError(self.name, detail=detail)

    def _read_header(self) -> bool:
        if len(self._buffer) < HEADER_BYTES:
            return False
        header = bytes(self._buffer[:HEADER_BYTES])
        magic, version, compression, frame_size, key_id, salt = _HEADER.unpack(header)
        if magic != MAGIC:
            raise self.corrupt("not a conpaassql backup object (bad magic)")
        if version != VERSION or compression != ZSTD:
            raise self.corrupt(f"unknown format version {version} or compression "
                               f"{compression}")
        if key_id.hex() != self._key.id:
            raise self.corrupt(f"written with the backup key {key_id.hex()}, not with this "
                               f"service's key {self._key.id}")
        if not 0 < frame_size < FINAL - TAG_BYTES:
            raise self.corrupt(f"bad frame size {frame_size}")
        del self._buffer[:HEADER_BYTES]
        self._cipher = _object_cipher(self._key, salt)
        self._binding = _binding(header, self.name)
        self._limit = frame_size + TAG_BYTES
        return True

    def _next_frame(self) -> bytes | None:
        if len(self._buffer) < _LENGTH.size:
            return None
        if self._final:
            raise self.corrupt("data after the final frame")
        (word,) = _LENGTH.unpack_from(self._buffer)
        final, length = bool(word & FINAL), word & ~FINAL
        if not TAG_BYTES <= length <= self._limit:
            raise self.corrupt(f"frame {self._counter} has a bad length {length}")
        if len(self._buffer) < _LENGTH.size + length:
            return None
        assert self._cipher is not None
        try:
            with memoryview(self._buffer) as view:
                plain = self._cipher.decrypt(self._counter.to_bytes(12, "big"),
                                             view[_LENGTH.size:_LENGTH.size + length],
                                             _associated(self._binding, self._counter, final))
        except InvalidTag:
            raise self.corrupt(f"frame {self._counter} fails authentication (changed, "
                               "reordered or cut)") from None
        del self._buffer[:_LENGTH.size + length]
        self._counter += 1
        self._final = final
        return plain
