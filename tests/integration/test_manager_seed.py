"""The seed's exchanges, verbatim, against a real manager and real nodes."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.integration.harness import REPO, Manager, wait_until

pytestmark = pytest.mark.integration


def test_seed_http_exchanges_verbatim(manager: Manager) -> None:
    http = httpx.Client(base_url=manager.url, timeout=30)
    headers = {"Accept": "*/*", "Content-Type": "application/json"}

    listed = http.get("/?method=list_nodes&id=1", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == {"result": {"serviceNode": [], "masters": [], "slaves": [],
                                        "nodes": []}, "error": None, "id": "1"}

    body = '{"params": {"function": "agent"}, "method": "add_nodes", "id": "1"}'
    added = http.post("/", content=body, headers=headers)
    assert added.status_code == 200
    reply = added.json()
    assert reply["error"] is None and reply["id"] == "1"
    node = reply["result"]["serviceNode"]
    assert node["state"] == "PENDING"
    assert set(node) >= {"id", "ip", "state", "name"}
    assert node["ip"].startswith("127.0.")
    node_id = node["id"]

    assert http.get("/?method=list_nodes&id=1").json()["result"]["serviceNode"] == [node_id]

    def info() -> dict:
        url = ("/?params=%7B%22serviceNameId%22%3A+%22" + str(node_id)
               + "%22%7D&method=get_node_info&id=1")
        return http.get(url, headers=headers).json()["result"]["serviceNode"]

    # The agent's answer is recorded and the loop woken; the loop moves the node.
    shown = wait_until(lambda: (i := info())["isRunningMySQL"] and i["state"] == "RUNNING"
                       and i, 90, what="isRunningMySQL and RUNNING")
    assert shown["id"] == node_id and shown["ip"] == node["ip"]

    body = '{"params": {"serviceName": "NODE"}, "method": "remove_nodes", "id": "1"}'
    body = body.replace("NODE", str(node_id))
    removed = http.post("/", content=body, headers=headers).json()
    assert removed["error"] is None
    assert removed["result"]["result"] == "OK"
    wait_until(lambda: not manager.node_dir(node_id).exists(), 30, what="node dir removed")
    assert http.get("/?method=list_nodes&id=1").json()["result"]["serviceNode"] == []


def test_seed_client_command_lines(manager: Manager) -> None:
    script = str(REPO / "scripts" / "run-manager-client.sh")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, "127.0.0.1", str(manager.port), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    first = run("list_nodes")
    assert first.returncode == 0, first.stderr
    assert '"serviceNode": []' in first.stdout

    added = run("add_node", "agent")
    assert added.returncode == 0, added.stderr
    assert '"state": "PENDING"' in added.stdout
    node_id = manager.nodes()[0]["id"]

    listed = run("list_nodes")
    assert str(node_id) in listed.stdout

    deleted = run("delete_nodes", str(node_id))
    assert deleted.returncode == 0, deleted.stderr
    assert '"result": "OK"' in deleted.stdout

    missing = run("get_node_info", "999")
    assert missing.returncode == 1
    assert "Invalid argument: serviceNodeId" in missing.stderr
