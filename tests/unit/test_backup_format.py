"""The stored form of backup objects (``conpaassql.backup.format``): AES-256-GCM
frames round trip, and a changed byte, a cut, frames reordered, another key or
another object key are each refused naming the object."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import pytest

from conpaassql.backup.errors import CorruptObjectError
from conpaassql.backup.format import FINAL, HEADER_BYTES, FrameDecoder, FrameEncoder
from conpaassql.backup.keys import BackupKey, load_or_create_key
from conpaassql.errors import ConfigError

KEY = BackupKey(bytes(range(32)))
NAME = "backups/20261207T103000Z-full-abcdef/data.xbstream"
FRAME = 64


def encode(data: bytes, key: BackupKey = KEY, name: str = NAME, pieces: int = 7) -> bytes:
    encoder = FrameEncoder(key, name, frame_size=FRAME)
    out = [encoder.header]
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        out.append(encoder.update(data[start:start + step]))
    out.append(encoder.finish())
    stored = b"".join(out)
    assert encoder.size == len(stored)
    return stored


def decode(stored: bytes, key: BackupKey = KEY, name: str = NAME, step: int = 37) -> bytes:
    decoder = FrameDecoder(key, name)
    out = [decoder.update(stored[start:start + step]) for start in range(0, len(stored), step)]
    decoder.finish()
    return b"".join(out)


def frames(stored: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each frame (its length word and ciphertext)."""
    header, rest, found = stored[:HEADER_BYTES], stored[HEADER_BYTES:], []
    while rest:
        (word,) = struct.unpack(">I", rest[:4])
        length = 4 + (word & ~FINAL)
        found.append(rest[:length])
        rest = rest[length:]
    return header, found


def refused(stored: bytes, key: BackupKey = KEY, name: str = NAME) -> str:
    with pytest.raises(CorruptObjectError) as caught:
        decode(stored, key, name)
    assert name in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("size", [0, 1, FRAME - 1, FRAME, FRAME + 1, 10 * FRAME, 1000])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    stored = encode(data)
    assert decode(stored) == data
    assert decode(stored, step=1) == data
    assert decode(stored, step=len(stored)) == data
    _, found = frames(stored)
    assert len(found) == max(1, -(-size // FRAME))  # an empty object: one empty frame
    assert [bool(struct.unpack(">I", f[:4])[0] & FINAL) for f in found] == \
        [False] * (len(found) - 1) + [True]


def test_each_object_has_its_own_salt() -> None:
    data = b"same bytes" * 20
    assert encode(data)[HEADER_BYTES:] != encode(data)[HEADER_BYTES:]


def test_a_changed_byte_anywhere_is_refused() -> None:
    stored = encode(os.urandom(5 * FRAME))
    for position in [0, 8, 12, 20, HEADER_BYTES - 1, HEADER_BYTES + 2, HEADER_BYTES + 10,
                     len(stored) // 2, len(stored) - 1]:
        tampered = bytearray(stored)
        tampered[position] ^= 0x01
        refused(bytes(tampered))


def test_a_changed_frame_is_named() -> None:
    stored = encode(os.urandom(5 * FRAME))
    header, found = frames(stored)
    third = bytearray(found[2])
    third[10] ^= 0x80
    message = refused(header + b"".join([*found[:2], bytes(third), *found[3:]]))
    assert "frame 2 fails authentication" in message


@pytest.mark.parametrize("cut", [1, 4, 17, "frame", "header", "all"])
def test_a_cut_object_is_refused(cut: int | str) -> None:
    stored = encode(os.urandom(4 * FRAME + 5))
    header, found = frames(stored)
    if cut == "frame":  # whole frames dropped at the end: no final frame
        short = header + b"".join(found[:-1])
    elif cut == "header":
        short = header[:30]
    elif cut == "all":
        short = b""
    else:
        short = stored[: len(stored) - int(cut)]
    assert "truncated" in refused(short) or "fails authentication" in refused(short)


def test_the_final_flag_cannot_be_set_on_an_earlier_frame() -> None:
    stored = encode(os.urandom(4 * FRAME))
    header, found = frames(stored)
    second = bytearray(found[1])
    second[0] |= 0x80  # claims to be the last frame: the cut would go unseen
    refused(header + found[0] + bytes(second))


def test_reordered_frames_are_refused() -> None:
    stored = encode(os.urandom(4 * FRAME))
    header, found = frames(stored)
    refused(header + b"".join([found[1], found[0], *found[2:]]))
    refused(header + b"".join([found[0], found[2], found[1], *found[3:]]))
    refused(header + b"".join([found[0], *found[2:]]))  # one left out


def test_frames_of_another_object_are_refused() -> None:
    one, two = encode(os.urandom(3 * FRAME)), encode(os.urandom(3 * FRAME))
    header_one, frames_one = frames(one)
    _, frames_two = frames(two)
    refused(header_one + frames_two[0] + b"".join(frames_one[1:]))


def test_data_after_the_final_frame_is_refused() -> None:
    stored = encode(os.urandom(2 * FRAME))
    assert "after the final frame" in refused(stored + stored[HEADER_BYTES:])


def test_another_key_is_refused_naming_both_ids() -> None:
    stored = encode(os.urandom(100))
    other = BackupKey(bytes(32))
    message = refused(stored, key=other)
    assert KEY.id in message and other.id in message
    assert KEY.secret.hex() not in message and KEY.to_text() not in message


def test_an_object_moved_to_another_key_is_refused() -> None:
    stored = encode(os.urandom(100))
    refused(stored, name="backups/other/data.xbstream")


def test_not_a_backup_object() -> None:
    assert "bad magic" in refused(b"PK\x03\x04" + bytes(100))


def test_the_key_file_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "backup_key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path) == key
    assert BackupKey.from_text(path.read_text()) == key
    assert key.secret.hex() not in repr(key) and key.to_text() not in repr(key)
    assert len(key.id) == 16 and key.id != load_or_create_key(tmp_path / "other").id


def test_a_bad_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup_key"
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match="not a backup key"):
        load_or_create_key(path)
