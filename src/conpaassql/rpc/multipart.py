"""Streaming ``multipart/form-data``: read an UPLOAD part by part, write one lazily.

An upload can be larger than memory and than the disk, so neither side holds it
whole. ``FormReader`` hands the plain fields over as they come and a file part
as an ``UploadStream`` of chunks, pulled from the request as the handler
consumes it; ``encode_form`` produces the body of a form whose last part is a
file read from any async iterable of bytes.

The file must be the form's last part (as for S3 browser uploads): a method sees
its params before its file.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from conpaassql.rpc.protocol import INVALID_REQUEST, PARSE_ERROR, ProtocolError

MAX_FIELD = 1 << 20
#: Parts a form may have: a method's params are a handful of fields and one file.
MAX_PARTS = 64
_Event = tuple[str, Any]


def boundary_of(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 400 if it has none."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise ProtocolError(400, "Invalid multipart form: no boundary", PARSE_ERROR)
    return boundary


class FormReader:
    """Pulls a multipart body from ``body`` only as fast as its parts are read."""

    def __init__(self, content_type: str, body: AsyncIterator[bytes], *,
                 max_upload: int, max_field: int = MAX_FIELD) -> None:
        self._body = body
        self._events: deque[_Event] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._ended = False
        self.max_upload = max_upload
        self.max_field = max_field  # all plain fields together
        self.received = 0
        self._parts = 0
        self._field_bytes = 0
        self._parser = MultipartParser(boundary_of(content_type), callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        })

    # -- parser callbacks -------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise ProtocolError(400, "Invalid multipart form: a part has no name", PARSE_ERROR)
        filename = options.get(b"filename")
        self._events.append(("part", (
            name.decode("utf-8", "replace"),
            None if filename is None else filename.decode("utf-8", "replace"),
        )))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _part_end(self) -> None:
        self._events.append(("end", None))

    def _end(self) -> None:
        self._ended = True
        self._events.append(("done", None))

    # -- pulling ----------------------------------------------------------

    async def _next(self) -> _Event:
        while not self._events:
            if self._ended:
                return ("done", None)
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._ended = True
                raise ProtocolError(400, "Invalid multipart form: the body ended early",
                                    PARSE_ERROR) from None
            try:
                self._parser.write(chunk)
            except MultipartParseError:
                raise ProtocolError(400, "Invalid multipart form", PARSE_ERROR) from None
        return self._events.popleft()

    async def _field_value(self, name: str) -> str:
        value = bytearray()
        while (event := await self._next())[0] == "data":
            value += event[1]
            self._field_bytes += len(event[1])
            if self._field_bytes > self.max_field:
                raise ProtocolError(413, f"Form fields larger than {self.max_field} bytes "
                                    f"(at {name[:50]!r})", INVALID_REQUEST)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(400, f"Form field {name[:50]!r} is not UTF-8",
                                PARSE_ERROR) from None

    async def next_part(self) -> tuple[str, str] | UploadStream | None:
        """The next plain field as (name, value), the next file, or ``None`` at the end."""
        event = await self._next()
        if event[0] == "done":
            return None
        if event[0] != "part":
            raise ProtocolError(400, "Invalid multipart form", PARSE_ERROR)
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise ProtocolError(413, f"Form with more than {MAX_PARTS} parts", INVALID_REQUEST)
        name, filename = event[1]
        if filename is None:
            return name, await self._field_value(name)
        return UploadStream(self, name, filename)

    async def _file_chunk(self) -> bytes | None:
        event = await self._next()
        if event[0] == "end":
            return None
        if event[0] != "data":
            raise ProtocolError(400, "Invalid multipart form", PARSE_ERROR)
        data: bytes = event[1]
        self.received += len(data)
        if self.received > self.max_upload:
            raise ProtocolError(413, f"Upload larger than {self.max_upload} bytes",
                                INVALID_REQUEST)
        return data

    async def rest(self) -> list[str]:
        """Read to the end of the form; the names of the parts found there."""
        names = []
        while (part := await self.next_part()) is not None:
            if isinstance(part, UploadStream):
                await part.discard()
                names.append(part.name)
            else:
                names.append(part[0])
        return names


class UploadStream:
    """One file part of an upload, read once, in order, as it arrives."""

    def __init__(self, reader: FormReader, name: str, filename: str) -> None:
        self.name = name
        self.filename = filename
        self.size = 0
        self._reader = reader
        self._done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, chunk by chunk; ``ProtocolError`` if the upload breaks off."""
        while not self._done:
            chunk = await self._reader._file_chunk()
            if chunk is None:
                self._done = True
                return
            self.size += len(chunk)
            yield chunk

    async def read(self) -> bytes:
        """The whole file (for small files only)."""
        return b"".join([chunk async for chunk in self.chunks()])

    async def discard(self) -> None:
        """Skip what is left of the file."""
        async for _ in self.chunks():
            pass

    @property
    def finished(self) -> bool:
        return self._done

    async def close(self) -> None:
        """Nothing to release: the file never touched the disk."""


def _quote(value: str) -> str:
    if any(bad in value for bad in ('"', "\r", "\n", "\0")):
        value = value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        value = value.replace("\0", "")
    return value


def form_parts(fields: Mapping[str, str], file_field: str,
               filename: str) -> tuple[str, bytes, bytes]:
    """The content type of a form ending in a file, and what comes before and after
    the file's bytes."""
    boundary = f"conpaassql-{secrets.token_hex(16)}"
    head = bytearray()
    for name, value in fields.items():
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
                 f"\r\n\r\n").encode() + value.encode("utf-8") + b"\r\n"
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(file_field)}";'
             f' filename="{_quote(filename)}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode()
    return (f"multipart/form-data; boundary={boundary}", bytes(head),
            f"\r\n--{boundary}--\r\n".encode())


def encode_form(fields: Mapping[str, str], file_field: str, filename: str,
                chunks: AsyncIterable[bytes]) -> tuple[str, AsyncIterator[bytes]]:
    """The content type and the lazily produced body of a form ending in a file."""
    content_type, head, tail = form_parts(fields, file_field, filename)

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in chunks:
            if chunk:
                yield chunk
        yield tail

    return content_type, body()
