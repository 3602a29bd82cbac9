"""The service CA and mutual TLS, over real TLS connections on loopback."""

from __future__ import annotations

import asyncio
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conpaassql.manager.authority import Authority, Issued
from conpaassql.rpc.tls import TlsFiles, client_context, dns_name, peer_of, server_options
from tests.integration.harness import free_port


def write(directory: Path, name: str, issued: Issued, ca: Authority) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / f"{name}.crt", directory / f"{name}.key", ca.ca_file)
    files.cert.write_text(issued.cert_pem)
    files.key.write_text(issued.key_pem)
    files.key.chmod(0o600)
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority, Path]:
    root = tmp_path_factory.mktemp("pki")
    return (Authority.load_or_create(root / "ours", "aa11bb22"),
            Authority.load_or_create(root / "theirs", "cc33dd44"), root)


@pytest.fixture(scope="module")
def server(pki: tuple[Authority, Authority, Path]) -> Iterator[str]:
    """An HTTPS server with a node's certificate that echoes who the client is."""
    ours, _, root = pki

    async def whoami(request: Request) -> JSONResponse:
        peer = peer_of(request)
        return JSONResponse(None if peer is None else [peer.service_id, peer.name,
                                                       peer.node_id])

    app = Starlette(routes=[Route("/", whoami)])
    files = write(root / "server", "node", ours.issue_node(7, "127.0.0.1"), ours)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                            lifespan="off", **server_options(files))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"https://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def get(url: str, verify: ssl.SSLContext, sni: str | None = None) -> httpx.Response:
    async def once() -> httpx.Response:
        async with httpx.AsyncClient(verify=verify) as client:
            extensions = {"sni_hostname": sni} if sni else {}
            return await client.get(url, extensions=extensions)

    return asyncio.run(once())


def test_the_ca_key_is_private_and_reused(pki: tuple[Authority, Authority, Path]) -> None:
    ours, _, root = pki
    assert stat.S_IMODE((root / "ours" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "ours" / "manager.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "ours").stat().st_mode) == 0o700
    again = Authority.load_or_create(root / "ours", "aa11bb22")
    assert again.ca_pem == ours.ca_pem
    assert "<certificate and key>" in repr(ours.issue_node(1))


def test_who_the_client_is(server: str, pki: tuple[Authority, Authority, Path]) -> None:
    ours, _theirs, root = pki
    manager = client_context(ours.manager_files)
    assert get(server, manager).json() == ["aa11bb22", "manager", None]
    node = client_context(write(root / "clients", "node3", ours.issue_node(3), ours))
    assert get(server, node).json() == ["aa11bb22", "node-3", 3]
    # The node's name is checked, whatever address it is reached at.
    assert get(server, manager, sni=dns_name("aa11bb22", "node-7")).status_code == 200
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        get(server, manager, sni=dns_name("aa11bb22", "node-8"))


def test_clients_without_the_services_certificate_are_refused(
        server: str, pki: tuple[Authority, Authority, Path]) -> None:
    ours, theirs, _root = pki
    anonymous = ssl.create_default_context(cafile=str(ours.ca_file))
    with pytest.raises(httpx.HTTPError):
        get(server, anonymous)
    other = theirs.manager_files  # another service's manager, trusting our CA
    stranger = ssl.create_default_context(cafile=str(ours.ca_file))
    stranger.load_cert_chain(str(other.cert), str(other.key))
    with pytest.raises(httpx.HTTPError):
        get(server, stranger)
    # And a client that trusts only its own CA does not take our server for its own.
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        get(server, client_context(other))
