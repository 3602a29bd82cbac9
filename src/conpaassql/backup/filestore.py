"""``FileStore``: objects as files under a local directory.

An object is written to a temporary sibling (``.NAME.XXXX.tmp``), synced and
renamed into place, then its sidecar likewise; the directory is synced after
each rename. Files are 0600, directories 0700. Blocking calls run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path

from conpaassql.backup.errors import BackupStoreError, MissingObjectError
from conpaassql.backup.keys import BackupKey
from conpaassql.backup.store import SIDECAR, BackupStore, RawWriter, StoredObject
from conpaassql.files import write_private

READ_SIZE = 1 << 20


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter(RawWriter):
    def __init__(self, path: Path) -> None:
        self.path = path
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o600)
        self.temporary = Path(name)
        self.stream = os.fdopen(fd, "wb")
        self.placed = False

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self.stream.write, data)

    async def commit(self, record: StoredObject) -> None:
        await asyncio.to_thread(self._commit, record)

    def _commit(self, record: StoredObject) -> None:
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        sidecar = self.path.with_name(self.path.name + SIDECAR)
        sidecar.unlink(missing_ok=True)  # a replaced object is absent, never mismatched
        os.replace(self.temporary, self.path)
        self.placed = True
        write_private(sidecar, record.to_json())
        _sync_directory(self.path.parent)

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        self.temporary.unlink(missing_ok=True)
        if self.placed:  # in place without its sidecar: nothing is left under the key
            self.path.unlink(missing_ok=True)


class FileStore(BackupStore):
    """A local directory (the embedded default: ``<state dir>/backups``)."""

    def __init__(self, root: Path, key: BackupKey) -> None:
        super().__init__(key)
        self.root = root.absolute()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    async def _writer(self, key: str) -> RawWriter:
        path = self._path(key)

        def prepare() -> _FileWriter:
            try:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                return _FileWriter(path)
            except OSError as exc:
                raise BackupStoreError(f"{key} in {self.url}", detail=str(exc)) from None
        return await asyncio.to_thread(prepare)

    async def _read(self, key: str) -> AsyncGenerator[bytes, None]:
        try:
            stream = await asyncio.to_thread(self._path(key).open, "rb")
        except FileNotFoundError:
            raise MissingObjectError(f"{key} in {self.url}") from None
        try:
            while block := await asyncio.to_thread(stream.read, READ_SIZE):
                yield block
        finally:
            stream.close()

    async def _read_sidecar(self, key: str) -> bytes | None:
        sidecar = self._path(key + SIDECAR)
        try:
            return await asyncio.to_thread(sidecar.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupStoreError(f"{key} in {self.url}", detail=str(exc)) from None

    async def _list_keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            keys = []
            for directory, subdirectories, files in os.walk(self.root):
                subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
                base = Path(directory).relative_to(self.root).as_posix()
                for name in files:
                    if name.endswith(SIDECAR) and not name.startswith("."):
                        key = name.removesuffix(SIDECAR)
                        key = key if base == "." else f"{base}/{key}"
                        if key.startswith(prefix):
                            keys.append(key)
            return keys
        return await asyncio.to_thread(walk)

    async def _delete(self, key: str) -> None:
        def remove() -> None:
            path = self._path(key)
            path.with_name(path.name + SIDECAR).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            if path.parent.exists():
                _sync_directory(path.parent)
        await asyncio.to_thread(remove)
