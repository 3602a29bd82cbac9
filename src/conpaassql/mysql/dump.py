"""Loading and exporting SQL dumps with the native client programs, streamed.

A dump goes from an async iterator of chunks into ``mariadb``'s standard input
(gunzipped on the way when it is gzip), and an export comes from
``mariadb-dump``'s standard output, chunk by chunk: nothing is held whole in
memory or written to disk. Both programs log in as root through the server's
``client.cnf`` defaults file, so no password is ever on a command line.
"""

from __future__ import annotations

import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from conpaassql.errors import MySQLError
from conpaassql.mysql.binaries import find_binary
from conpaassql.mysql.paths import ServerPaths
from conpaassql.mysql.pipes import ToolOutput, block_buffered, pipe_into

log = logging.getLogger(__name__)

CLIENT = ("mariadb", "mysql")
DUMPER = ("mariadb-dump", "mysqldump")
GZIP_MAGIC = b"\x1f\x8b"
SQL_MEDIA_TYPE = "application/sql"
#: Options of every export: one consistent snapshot, with the GTID position.
EXPORT_OPTIONS = (
    "--single-transaction", "--master-data=2", "--gtid", "--routines", "--events",
    "--triggers", "--hex-blob", "--quick",
)
_CLIENT_ERROR = re.compile(r"^ERROR (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class LoadResult:
    received: int  # bytes as sent (compressed, if it was)
    loaded: int  # bytes of SQL given to the client
    seconds: float
    compressed: bool

    def as_dict(self) -> dict[str, object]:
        return {"bytes": self.received, "sql_bytes": self.loaded,
                "seconds": round(self.seconds, 3), "gzip": self.compressed}


class Gunzip:
    """Decompresses a stream that may be gzip (one or more members) or plain."""

    def __init__(self) -> None:
        self.compressed: bool | None = None
        self._inflate: zlib._Decompress | None = None
        self._head = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.compressed is None:
            self._head += chunk
            if len(self._head) < len(GZIP_MAGIC):
                return b""
            self.compressed = self._head.startswith(GZIP_MAGIC)
            chunk, self._head = self._head, b""
        if not self.compressed:
            return chunk
        out = bytearray()
        while chunk:
            if self._inflate is None:
                self._inflate = zlib.decompressobj(wbits=31)
            try:
                out += self._inflate.decompress(chunk)
            except zlib.error as exc:
                raise MySQLError(f"the dump is not valid gzip: {exc}") from None
            if not self._inflate.eof:
                break
            chunk = self._inflate.unused_data
            self._inflate = None
        return bytes(out)

    def finish(self) -> bytes:
        """What is left at the end of the stream; ``MySQLError`` if the gzip was cut."""
        if self.compressed is None:
            self.compressed = False
            rest, self._head = self._head, b""
            return rest
        if self._inflate is not None and not self._inflate.eof:
            raise MySQLError("the gzip dump ends early (truncated)")
        return b""


def client_command(paths: ServerPaths, database: str | None = None) -> list[str]:
    """``mariadb`` logged in as root over the server's socket (the password in client.cnf)."""
    args = [find_binary(*CLIENT), f"--defaults-file={paths.client_cnf}", "--batch"]
    if database is not None:
        args.append(f"--database={database}")
    return args


def dump_arguments(databases: Sequence[str] | None) -> list[str]:
    """The export's arguments but the login: one database (its tables, loadable into
    any database), or every database but the system ones (with their ``CREATE
    DATABASE``)."""
    if databases:
        return [*EXPORT_OPTIONS, "--", *databases]
    return [*EXPORT_OPTIONS, "--all-databases", "--ignore-database=mysql",
            "--ignore-database=sys"]


def dump_command(paths: ServerPaths, databases: Sequence[str] | None) -> list[str]:
    """``mariadb-dump`` logged in as root over the socket, with ``dump_arguments``."""
    return [find_binary(*DUMPER), f"--defaults-file={paths.client_cnf}",
            *dump_arguments(databases)]


def client_error(text: str, what: str) -> MySQLError:
    """The client's message as ``MySQLError``: its ``ERROR ...`` line first, then the
    statement it echoed (shortened) as the detail."""
    text = text.strip() or f"{what} failed"
    found = _CLIENT_ERROR.search(text)
    if found is None:
        return MySQLError(text[-2000:])
    message = text[found.start():].strip()
    echoed = text[:found.start()].replace("--------------", " ").split()
    statement = " ".join(echoed)
    if len(statement) > 300:
        statement = statement[:300] + "..."
    return MySQLError(message[:2000], int(found.group(1)),
                      detail=f"statement: {statement}" if statement else None)


async def load_sql(paths: ServerPaths, chunks: AsyncIterator[bytes],
                   database: str | None = None) -> LoadResult:
    """Pipe a dump into the ``mariadb`` client; its first error raises ``MySQLError``.

    The client stops at the first failing statement and its message names the
    line (``ERROR 1064 (42000) at line 12: ...``). If the upload breaks off, the
    client is killed so that a half-received statement is never run.
    """
    started = time.monotonic()
    gunzip = Gunzip()
    sizes = {"received": 0, "loaded": 0}

    async def sql() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            sizes["received"] += len(chunk)
            data = gunzip.feed(chunk)
            sizes["loaded"] += len(data)
            yield data
        rest = gunzip.finish()
        sizes["loaded"] += len(rest)
        yield rest

    status, text = await pipe_into(client_command(paths, database), sql())
    if status != 0:
        raise client_error(text, "loading the dump")
    return LoadResult(sizes["received"], sizes["loaded"], time.monotonic() - started,
                      bool(gunzip.compressed))


class Export:
    """A running ``mariadb-dump`` whose output is read as it is produced."""

    def __init__(self, output: ToolOutput) -> None:
        self._output = output

    @property
    def sent(self) -> int:
        return self._output.sent

    @classmethod
    async def start(cls, paths: ServerPaths, databases: Sequence[str] | None, *,
                    command: Sequence[str] | None = None) -> Export:
        """Start the dump (``dump_command``, or ``command``), its output in large
        blocks; a failure before its first byte raises ``MySQLError`` here."""
        output = await ToolOutput.start(block_buffered(command or dump_command(paths,
                                                                               databases)))
        if not output.first:
            status, text = await output.finish()
            raise client_error(text, f"the dump (exit status {status})")
        return cls(output)

    async def close(self) -> None:
        """Stop the dump if nobody reads it (the caller went away before the first byte)."""
        await self._output.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The dump; ``MySQLError`` at the end if ``mariadb-dump`` failed part-way."""
        try:
            async for block in self._output.blocks():
                yield block
            status, text = await self._output.finish()
            if status != 0:
                raise client_error(text, f"the dump (exit status {status})")
        finally:
            await self.close()
