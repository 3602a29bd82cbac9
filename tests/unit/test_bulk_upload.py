"""The upload sender of ``rpc.bulk`` against stand-in peers over real TLS that
read the request byte for byte and answer, answer early, or hang up."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from conpaassql.errors import RemoteError, UnreachableError
from conpaassql.manager.authority import Authority
from conpaassql.rpc import bulk
from conpaassql.rpc.multipart import FormReader, UploadStream
from conpaassql.rpc.tls import dns_name, node_name

SERVICE = "aa11bb22"
NODE = 3
BLOCK = bytes(range(256)) * 1024  # 256 KiB
MIB = 1 << 20


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    name: str


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    root = tmp_path_factory.mktemp("pki")
    authority = Authority.load_or_create(root / "ca", SERVICE)
    issued = authority.issue_node(NODE, "127.0.0.1")
    cert, key = root / "node.crt", root / "node.key"
    cert.write_text(issued.cert_pem)
    key.write_text(issued.key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cadata=authority.ca_pem)
    return Tls(server, client, dns_name(SERVICE, node_name(NODE)))


@dataclass
class Request:
    """What the stand-in peer read."""

    head: dict[str, str] = field(default_factory=dict)
    line: str = ""
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False


async def read_head(reader: asyncio.StreamReader, request: Request) -> None:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    request.line = lines[0]
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            request.head[name.strip().lower()] = value.strip()


async def read_body(reader: asyncio.StreamReader, request: Request, upto: int) -> None:
    """Read the body (its first ``upto`` bytes), chunked or of a given length."""
    if request.head.get("transfer-encoding") == "chunked":
        while len(request.body) < upto:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                assert await reader.readexactly(2) == b"\r\n"
                request.ended = True
                return
            request.body += await reader.readexactly(size)
            assert await reader.readexactly(2) == b"\r\n"
        return
    length = int(request.head["content-length"])
    request.body += await reader.readexactly(min(length, upto))
    request.ended = len(request.body) == length


def reply(status: int, body: dict[str, Any], *, chunked: bool = False) -> bytes:
    data = json.dumps(body).encode()
    framing = (b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(data) + data +
               b"\r\n0\r\n\r\n") if chunked else (b"Content-Length: %d\r\n\r\n" % len(data) +
                                                  data)
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            "Connection: close\r\n").encode() + framing


Peer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Request], Awaitable[None]]


async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  request: Request) -> None:
    await read_body(reader, request, 1 << 40)
    writer.write(reply(200, {"result": {"return": "OK", "got": len(request.body)},
                             "error": None, "id": "1"}, chunked=True))


async def answers_early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: Request) -> None:
    """An error after 1 MiB, then the rest read and thrown away (as a server should)."""
    await read_body(reader, request, MIB)
    writer.write(reply(413, {"result": None, "id": "1", "error": {
        "code": -32600, "message": "Upload larger than 1048576 bytes"}}))
    await writer.drain()
    while await reader.read(MIB):
        pass


async def cuts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: Request) -> None:
    await read_body(reader, request, MIB)
    writer.transport.abort()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   request: Request) -> None:
    await read_body(reader, request, 1 << 40)


async def blocks(count: int, taken: list[int]) -> AsyncIterator[bytes]:
    for _ in range(count):
        taken.append(len(BLOCK))
        yield BLOCK


def upload(tls: Tls, peer: Peer, count: int, *, size: int | None = None,
           known: bool = True, taken: list[int] | None = None) -> tuple[Any, Request]:
    """Send ``count`` blocks to ``peer`` (those taken counted in ``taken``): its
    result and what it read."""
    request = Request()
    taken = [] if taken is None else taken

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_head(reader, request)
            await peer(reader, writer, request)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def once() -> Any:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls.server)
        port = server.sockets[0].getsockname()[1]
        try:
            return await bulk.post_form(
                f"https://127.0.0.1:{port}/", {"method": "load_dump", "id": "1",
                                               "database": "db"},
                "mysqldump_file", "d.sql", blocks(count, taken),
                size=(count * len(BLOCK) if size is None else size) if known else None,
                token="grant-1", verify=tls.client, server_name=tls.name, timeout=60)
        finally:
            server.close()

    return asyncio.run(once()), request


async def parse(request: Request) -> tuple[dict[str, str], bytes]:
    """The form's fields and file, as the agent's parser reads them."""

    async def body() -> AsyncIterator[bytes]:
        yield bytes(request.body)

    reader = FormReader(request.head["content-type"], body(), max_upload=1 << 40)
    fields, data = {}, b""
    while (part := await reader.next_part()) is not None:
        if isinstance(part, UploadStream):
            assert part.name == "mysqldump_file"
            data = await part.read()
        else:
            fields[part[0]] = part[1]
    return fields, data


@pytest.mark.parametrize("known", [True, False])
def test_a_form_of_known_or_unknown_size(tls: Tls, known: bool) -> None:
    taken: list[int] = []
    result, request = upload(tls, answers, 40, known=known, taken=taken)
    assert result == {"return": "OK", "got": len(request.body)}
    assert request.ended and sum(taken) == 40 * len(BLOCK)
    assert request.line == "POST / HTTP/1.1"
    assert request.head["authorization"] == "Bearer grant-1"
    if known:
        assert int(request.head["content-length"]) == len(request.body)
        assert "transfer-encoding" not in request.head
    else:
        assert request.head["transfer-encoding"] == "chunked"
        assert "content-length" not in request.head
    fields, data = asyncio.run(parse(request))
    assert fields == {"method": "load_dump", "id": "1", "database": "db"}
    assert data == 40 * BLOCK


@pytest.mark.parametrize("known", [True, False])
def test_an_error_mid_upload_stops_it(tls: Tls, known: bool) -> None:
    count, taken = 4000, []  # 1 GiB, if it were all sent
    with pytest.raises(RemoteError) as raised:
        upload(tls, answers_early, count, known=known, taken=taken)
    assert str(raised.value) == "Upload larger than 1048576 bytes"
    assert (raised.value.code, raised.value.http_status) == (-32600, 413)
    assert sum(taken) < count * len(BLOCK)


@pytest.mark.parametrize("peer", [cuts, hangs_up])
def test_a_peer_that_hangs_up_is_out_of_reach(tls: Tls, peer: Peer) -> None:
    with pytest.raises(UnreachableError):
        upload(tls, peer, 40)


def test_a_file_shorter_than_announced_is_refused(tls: Tls) -> None:
    with pytest.raises(RemoteError, match="ended after 2621440 of its 3145728 bytes"):
        upload(tls, answers, 10, size=12 * len(BLOCK))


def test_nothing_is_taken_when_the_peer_is_out_of_reach(tls: Tls) -> None:
    taken: list[int] = []

    async def once() -> None:
        await bulk.post_form("https://127.0.0.1:9/", {"method": "m"}, "f", "f",
                             blocks(4, taken), verify=tls.client, server_name=tls.name)

    with pytest.raises(UnreachableError):
        asyncio.run(once())
    assert taken == []
