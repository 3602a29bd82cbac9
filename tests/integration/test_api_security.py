"""The user API beyond loopback: TLS and tokens, with a real manager and the real client.

The manager runs in a network namespace of its own, bound to a non-loopback
address there (one end of a veth pair), and the client runs in the same
namespace: nothing is exposed outside this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conpaassql.manager.authority import Authority
from tests.integration.harness import REPO, claim_subnet, wait_until

pytestmark = pytest.mark.integration

CLIENT = [sys.executable, "-m", "conpaassql.client"]


@dataclass
class Remote:
    namespace: str
    address: str
    port: int
    state_dir: Path

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.namespace, *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={**os.environ, **(env or {})}, check=False)

    def client(self, *args: str, token_file: Path | None = None, https: bool = True,
               ca: bool = True, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
        options = (["--https"] if https else []) + \
            (["--token-file", str(token_file)] if token_file else [])
        settings = {"CONPAASSQL_CA_FILE": str(self.state_dir / "pki" / "ca.crt") if ca else "",
                    "CONPAASSQL_TOKEN": "", "CONPAASSQL_CERT_FILE": "",
                    "CONPAASSQL_KEY_FILE": "", **(env or {})}
        return self.run(*CLIENT, *options, self.address, str(self.port), *args, env=settings)

    def tokens(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "conpaassql", "token", *args,
                        "--state-dir", str(self.state_dir))


@contextlib.contextmanager
def started(extra_config: str = "",
            ready_env: dict[str, str] | None = None) -> Iterator[Remote]:
    """A manager in a namespace of its own, bound to a non-loopback address there."""
    subnet = claim_subnet()
    namespace = f"cq-api-{os.getpid()}-{subnet}"
    address = f"10.77.{subnet}.1"
    state_dir = Path(tempfile.mkdtemp(prefix="cq-api-", dir="/tmp"))
    steps = [["ip", "netns", "add", namespace],
             ["ip", "-n", namespace, "link", "set", "lo", "up"],
             ["ip", "-n", namespace, "link", "add", "v0", "type", "veth", "peer", "name",
              "v1"],
             ["ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "v0"],
             ["ip", "-n", namespace, "link", "set", "v1", "up"],
             ["ip", "-n", namespace, "link", "set", "v0", "up"]]
    process = None
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=10)
        remote = Remote(namespace, address, 50000, state_dir)
        (state_dir / "manager.cnf").write_text(
            "[iaas]\nDRIVER = LOCAL\n[manager]\nfind_existing_agents = false\n" + extra_config)
        with open(state_dir / "manager.out", "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, "-m", "conpaassql",
                 "manager", "-c", str(state_dir / "manager.cnf"), "-b", address,
                 "-p", "50000", "--state-dir", str(state_dir)],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=REPO)
        owner = state_dir / "secrets" / "api_token"
        wait_until(lambda: remote.client("get_service_info", token_file=owner,
                                         env=ready_env).returncode == 0,
                   60, 0.3, "the manager answering over TLS")
        yield remote
    finally:
        if process is not None:
            process.kill()
            process.wait(30)
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    with started() as remote:
        yield remote


def test_tokens_are_needed_beyond_loopback(remote: Remote) -> None:
    owner = remote.state_dir / "secrets" / "api_token"
    assert owner.stat().st_mode & 0o077 == 0
    answer = remote.client("get_service_info", token_file=owner)
    assert answer.returncode == 0 and json.loads(answer.stdout)["state"] == "INIT", answer
    # No token, a wrong one: refused, 401.
    refused = remote.client("get_service_info")
    assert refused.returncode == 1 and "Not authorized DETAIL:an API token is needed" \
        in refused.stderr, refused
    wrong = remote.state_dir / "wrong-token"
    wrong.write_text("cqt_not-a-token\n")
    refused = remote.client("get_service_info", token_file=wrong)
    assert "unknown or revoked API token" in refused.stderr, refused
    # Plain HTTP is not spoken; TLS is, with a certificate of the service's CA.
    plain = remote.client("get_service_info", token_file=owner, https=False)
    assert plain.returncode == 3, plain
    unverified = remote.client("get_service_info", token_file=owner, ca=False)
    assert unverified.returncode == 3 and "certificate verify failed" in unverified.stderr, \
        unverified


def test_a_read_only_token_reads_and_changes_nothing(remote: Remote) -> None:
    made = remote.tokens("new", "--read-only", "--label", "monitoring")
    assert made.returncode == 0, made
    value = made.stdout.strip()
    assert value.startswith("cqt_")
    token_file = remote.state_dir / "read-token"
    token_file.write_text(value + "\n")
    token_file.chmod(0o600)
    # Only its digest is kept.
    assert value not in (remote.state_dir / "secrets" / "api_tokens.json").read_text()
    assert remote.client("get_service_info", token_file=token_file).returncode == 0
    listed = remote.client("list_nodes", token_file=token_file)
    assert listed.returncode == 0 and json.loads(listed.stdout)["serviceNode"] == [], listed
    secret = remote.client("get_password", token_file=token_file)
    assert secret.returncode == 1 and "Forbidden" in secret.stderr, secret
    refused = remote.client("add_nodes", "1", token_file=token_file)
    assert refused.returncode == 1 and \
        "Forbidden DETAIL:a read-only token may call GET methods only" in refused.stderr, refused
    owner = remote.state_dir / "secrets" / "api_token"
    listed = remote.client("list_nodes", token_file=owner)
    assert json.loads(listed.stdout)["serviceNode"] == []  # nothing was made
    # Revoked: refused from the next call on.
    token_id = next(line.split("\t")[0] for line in remote.tokens("list").stdout.splitlines()
                    if line.endswith("monitoring"))
    assert remote.tokens("revoke", token_id).returncode == 0
    refused = remote.client("get_service_info", token_file=token_file)
    assert "unknown or revoked API token" in refused.stderr, refused


def test_the_owner_token_rotates(remote: Remote) -> None:
    owner = remote.state_dir / "secrets" / "api_token"
    old = remote.state_dir / "old-token"
    shutil.copy(owner, old)
    assert remote.tokens("rotate").returncode == 0
    assert owner.read_text() != old.read_text()
    time.sleep(0.05)
    assert "unknown or revoked API token" in \
        remote.client("get_service_info", token_file=old).stderr
    assert remote.client("get_service_info", token_file=owner).returncode == 0


def test_client_certificates_when_asked_for(tmp_path: Path) -> None:
    """``api_client_ca``: a token is not enough, the client shows a certificate too."""
    clients = Authority.load_or_create(tmp_path / "clients", "clients0")
    strangers = Authority.load_or_create(tmp_path / "strangers", "strang0")

    def files(authority: Authority, name: str) -> dict[str, str]:
        issued = authority.issue(name)
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        cert.write_text(issued.cert_pem)
        key.write_text(issued.key_pem)
        key.chmod(0o600)
        return {"CONPAASSQL_CERT_FILE": str(cert), "CONPAASSQL_KEY_FILE": str(key)}

    alice = files(clients, "alice")
    with started(f"api_client_ca = {clients.ca_file}\n", ready_env=alice) as remote:
        owner = remote.state_dir / "secrets" / "api_token"
        assert remote.client("get_service_info", token_file=owner, env=alice).returncode == 0
        bare = remote.client("get_service_info", token_file=owner)
        assert bare.returncode == 3, bare  # the handshake fails
        stranger = remote.client("get_service_info", token_file=owner,
                                 env=files(strangers, "mallory"))
        assert stranger.returncode == 3, stranger
        no_token = remote.client("get_service_info", env=alice)
        assert no_token.returncode == 1 and "Not authorized" in no_token.stderr, no_token
