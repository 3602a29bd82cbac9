"""Mutual TLS between the manager and its agents, with real agents and a real manager.

The agent serves only TLS and takes only clients holding a certificate of the
service's CA: the manager's for every method, another node's for the copy
methods alone. The manager's port for agents takes only a node's certificate,
for that node's own registration, and none of a node removed from the service.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conpaassql.errors import ConpaasSQLError
from conpaassql.manager.authority import Authority, Issued
from conpaassql.rpc.client import call_blocking
from conpaassql.rpc.grants import make_grant, make_transfer_grant
from conpaassql.rpc.tls import TlsFiles, client_context, dns_name, node_name
from tests.integration.harness import Manager, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def manager(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=2)
        manager.wait_topology(2)
        yield manager
    finally:
        manager.close()


def files_of(issued: Issued, ca: Path) -> TlsFiles:
    directory = Path(tempfile.mkdtemp(prefix="client-", dir=ca.parent))  # gone with the state
    files = TlsFiles(directory / "c.crt", directory / "c.key", ca)
    files.cert.write_text(issued.cert_pem)
    files.key.write_text(issued.key_pem)
    files.key.chmod(0o600)
    return files


def authority(manager: Manager) -> Authority:
    return Authority.load_or_create(manager.state_dir / "pki", manager.service_id)


def failure(call: Any) -> str:
    """The error text of a call that must fail, by an error reply or at the connection."""
    try:
        result = call()
    except ConpaasSQLError as exc:
        return str(exc)
    raise AssertionError(f"expected a failure, got {result!r:.300}")


def state_call(url: str, verify: Any, server_name: str | None = None,
               token: str | None = None) -> Any:
    return call_blocking(url, "get_server_state", verb="GET", token=token, verify=verify,
                         server_name=server_name, timeout=10)


def test_the_agent_takes_only_the_managers_certificate(manager: Manager) -> None:
    node = manager.nodes()[0]["id"]
    url = manager.agent_url(node)
    name = dns_name(manager.service_id, node_name(node))
    ours = authority(manager)
    ca = manager.manager_tls.ca

    # The manager's certificate and the credential: answered.
    assert manager.agent_call(node, "get_server_state", verb="GET")["return"]["state"] \
        == "RUNNING"
    # Plain HTTP is not spoken at all.
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://"), params={"method": "get_server_state"},
                  timeout=5)
    # TLS without a client certificate: refused before anything is read, even with the
    # credential; only the manager's transfer grant opens a method, and only a data one.
    anonymous = ssl.create_default_context(cafile=str(ca))
    for token in (manager.agent_secret, None,
                  make_transfer_grant(ours.grant_key, node, "get_server_state")):
        text = failure(lambda t=token: state_call(url, anonymous, name, t))
        assert text.startswith("Not authorized DETAIL:this agent answers its manager only"), \
            text
    # Another service's certificate (its own CA): refused by the handshake too.
    with tempfile.TemporaryDirectory() as other_dir:
        other = Authority.load_or_create(Path(other_dir), "0therSvc")
        stranger = ssl.create_default_context(cafile=str(ca))
        stranger.load_cert_chain(str(other.manager_files.cert), str(other.manager_files.key))
        text = failure(lambda: state_call(url, stranger, name, manager.agent_secret))
        assert text.startswith(f"Cannot reach {url}"), text
    # The manager's certificate without the credential: 401.
    text = failure(lambda: state_call(url, client_context(manager.manager_tls), name))
    assert text.startswith("Not authorized"), text
    # Another node's certificate: the copy methods only.
    peer = client_context(files_of(ours.issue_node(99), ca))
    text = failure(lambda: state_call(url, peer, name, manager.agent_secret))
    assert text.startswith("Forbidden DETAIL:get_server_state is for the manager only"), text
    # ... and those only with the manager's grant for that very pair, still valid: a node
    # removed from the service (its certificate still good) gets no new one.
    def copy(grant: str | None) -> Any:
        return call_blocking(url, "copy_dump", {"grant": grant} if grant else {}, verb="GET",
                             token=manager.agent_secret, verify=peer, server_name=name,
                             timeout=10)

    key = ours.grant_key
    forged = make_grant(ec.generate_private_key(ec.SECP256R1()), node, 99, "127.0.0.1")
    for grant in (None, forged, "1:99:127.0.0.1:9999999999:" + "0" * 64,
                  make_grant(key, node, 98, "127.0.0.1"),
                  make_grant(key, node + 1, 99, "127.0.0.1"),
                  make_grant(key, node, 99, "127.0.0.1", ttl=-5)):
        text = failure(lambda g=grant: copy(g))
        assert text.startswith(f"Forbidden DETAIL:no valid grant from the manager for node "
                               f"99 to copy node {node}"), (grant, text)
    # A grant names where the copy goes: backup_push connects there and nowhere else.
    granted = make_grant(key, node, 99, "127.0.0.1")
    text = failure(lambda: call_blocking(
        url, "backup_push", {"host": "127.0.0.2", "port": 9, "ticket": "ab" * 32,
                             "grant": granted},
        token=manager.agent_secret, verify=peer, server_name=name, timeout=10))
    assert text.startswith("Forbidden DETAIL:the grant is for a copy to 127.0.0.1, not "
                           "127.0.0.2"), text
    # The agent is checked by name: node 1's agent is not taken for node 2's.
    wrong = dns_name(manager.service_id, node_name(node + 100))
    text = failure(lambda: state_call(url, client_context(manager.manager_tls), wrong,
                                        manager.agent_secret))
    assert "certificate verify failed" in text, text


def test_the_agents_port_takes_each_node_for_itself(manager: Manager) -> None:
    nodes = sorted(n["id"] for n in manager.nodes())
    ours = authority(manager)
    agents_url = f"https://127.0.0.1:{manager.agents_port}/"
    ca = manager.manager_tls.ca
    manager_name = dns_name(manager.service_id, "manager")
    report = manager.agent_call(nodes[0], "get_server_state", verb="GET")["return"]

    def register(files: TlsFiles, state: dict[str, Any], token: str | None) -> Any:
        return call_blocking(agents_url, "register_node", {"state": state}, token=token,
                             verify=client_context(files), server_name=manager_name,
                             timeout=10)

    own = files_of(ours.issue_node(nodes[0]), ca)
    assert register(own, report, manager.agent_secret)["result"] == "OK"  # and its lease
    # A node speaks for itself only.
    text = failure(lambda: register(files_of(ours.issue_node(nodes[1]), ca), report,
                                      manager.agent_secret))
    assert text.startswith(f"Forbidden DETAIL:the certificate is not node {nodes[0]}'s"), text
    text = failure(lambda: register(own, report, "not-the-secret"))
    assert text.startswith("Not authorized"), text
    # The manager's own certificate is no agent's.
    text = failure(lambda: register(manager.manager_tls, report, manager.agent_secret))
    assert text.startswith("Not authorized"), text
    # The user API does not take registrations at all.
    forged = httpx.post(manager.url, json={"method": "register_node", "id": 1, "params": {
        "state": report}}, headers={"Authorization": f"Bearer {manager.agent_secret}"})
    assert forged.status_code == 403, forged.text
    assert "agents call the manager on its TLS port" in forged.json()["error"]
    # Only register_node is served on the agents' port.
    text = failure(lambda: call_blocking(agents_url, "add_nodes", {"count": 1},
                                           token=manager.agent_secret,
                                           verify=client_context(own),
                                           server_name=manager_name))
    assert "method not found" in text, text

    # A node removed from the service cannot call back in, with its own certificate.
    removed = nodes[-1]
    context = (manager.node_dir(removed) / "context").read_text()
    assert "BEGIN CERTIFICATE" in context
    removed_files = files_of(ours.issue_node(removed), ca)
    removed_report = manager.agent_call(removed, "get_server_state", verb="GET")["return"]
    manager.post("remove_nodes", serviceNodeId=removed)
    wait_until(lambda: manager.node(removed)["state"] == "TERMINATED", 60, 0.2,
               f"node {removed} gone")
    text = failure(lambda: register(removed_files, removed_report, manager.agent_secret))
    assert text.startswith(f"Forbidden DETAIL:node {removed} is not part of this service"), \
        text


def test_the_node_material_is_private(manager: Manager) -> None:
    node = manager.nodes()[0]["id"]
    directory = manager.node_dir(node)
    for path in (directory / "context", directory / "tls" / "node.key",
                 manager.state_dir / "pki" / "ca.key", manager.state_dir / "pki" / "manager.key"):
        assert path.stat().st_mode & 0o077 == 0, path
    key = (directory / "tls" / "node.key").read_text()
    assert "PRIVATE KEY" in key
    logs = "".join(p.read_text(errors="replace") for p in
                   [directory / "agent.log", manager.state_dir / "manager.log"] if p.exists())
    body = key.splitlines()[1]
    assert body not in logs

