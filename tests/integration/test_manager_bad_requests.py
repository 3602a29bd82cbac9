"""Bad requests get the ConPaaS error and change nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.harness import Manager

pytestmark = pytest.mark.integration


def _snapshot(manager: Manager) -> tuple[Any, ...]:
    info = manager.get("get_service_info")
    return (manager.get("list_nodes"), info["state"], info["nodes"],
            len(info["transitions"]), info["transitions"][-1])


def _get(manager: Manager, method: str | None, params: Any = None) -> httpx.Response:
    query: dict[str, str] = {"id": "7"}
    if method is not None:
        query["method"] = method
    if params is not None:
        query["params"] = params if isinstance(params, str) else json.dumps(params)
    return httpx.get(manager.url, params=query, timeout=30)


def _post(manager: Manager, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(manager.url, content=content, timeout=30,
                      headers={"Content-Type": "application/json"})


CASES: list[tuple[str, Any, int, str]] = [
    ("malformed json", b'{"method": "add_nodes", ', 400, "Invalid JSON"),
    ("not utf-8", b'{"method": "add_nodes\xff"}', 400, "Invalid JSON"),
    ("array body", [1, 2], 400, "Invalid request"),
    ("no method", {"params": {}, "id": 1}, 400, "Did not specify method"),
    ("unknown method", {"method": "drop_everything", "params": {}, "id": 1}, 404,
     "method not found"),
    ("missing node id", {"method": "remove_nodes", "params": {}, "id": 1}, 200,
     "Missing argument: serviceNodeId"),
    ("unexpected params", {"method": "add_nodes", "params": {"count": 1, "colour": "red",
                                                             "age": 3}, "id": 1},
     200, "Unexpected arguments ['age', 'colour']"),
    ("count not a number", {"method": "add_nodes", "params": {"count": "three"}, "id": 1},
     200, "Invalid argument: count"),
    ("count a bool", {"method": "add_nodes", "params": {"count": True}, "id": 1}, 200,
     "Invalid argument: count"),
    ("count zero", {"method": "add_nodes", "params": {"count": 0}, "id": 1}, 200,
     "Invalid argument: count"),
    ("count huge", {"method": "add_nodes", "params": {"count": 10**30}, "id": 1}, 200,
     "Invalid argument: count"),
    ("function other", {"method": "add_nodes", "params": {"function": "manager"}, "id": 1},
     200, "Invalid argument: function"),
    ("params a list", {"method": "add_nodes", "params": [1], "id": 1}, 200,
     "Invalid argument: params"),
    ("node id float", {"method": "remove_nodes", "params": {"serviceNodeId": 1.5}, "id": 1},
     200, "Invalid argument: serviceNodeId"),
    ("unknown node", {"method": "remove_nodes", "params": {"serviceNodeId": 42}, "id": 1},
     200, "Invalid argument: serviceNodeId"),
    ("node id with NUL", {"method": "remove_nodes", "params": {"serviceNodeId": "1\x00"},
                          "id": 1}, 200, "Invalid argument: serviceNodeId"),
    ("no register without credential", {"method": "register_node",
                                        "params": {"state": {}}, "id": 1}, 403,
     "Forbidden DETAIL:agents call the manager on its TLS port"),
    ("deep nesting", "[" * 100000, 400, "Invalid JSON"),
]


@pytest.mark.parametrize(("case", "body", "status", "text"), CASES, ids=[c[0] for c in CASES])
def test_bad_post_is_refused_and_changes_nothing(manager: Manager, case: str, body: Any,
                                                 status: int, text: str) -> None:
    before = _snapshot(manager)
    reply = _post(manager, body)
    assert reply.status_code == status
    payload = reply.json()
    assert payload["result"] is None
    assert payload["error"].startswith(text), payload["error"]
    assert "Traceback" not in reply.text
    assert _snapshot(manager) == before


def test_bad_get_and_verbs(manager: Manager) -> None:
    before = _snapshot(manager)
    assert _get(manager, None).status_code == 400
    assert _get(manager, None).json()["error"] == "Did not specify method"
    assert _get(manager, "no_such_method").status_code == 404
    bad_json = _get(manager, "get_node_info", "%7Bnot json")
    assert bad_json.status_code == 400 and bad_json.json()["error"].startswith("Invalid JSON")
    missing = _get(manager, "get_node_info", {})
    assert missing.json()["error"] == "Missing argument: serviceNodeId"
    wrong_type = _get(manager, "get_node_info", {"serviceNodeId": [1]})
    assert wrong_type.json()["error"].startswith("Invalid argument: serviceNodeId")
    # A POST method asked for with GET: refused, nothing added.
    assert _get(manager, "add_nodes", {"count": 1}).status_code == 405
    assert _get(manager, "shutdown").status_code == 405
    for verb in ("PUT", "DELETE", "PATCH"):
        reply = httpx.request(verb, manager.url, timeout=30)
        assert reply.status_code == 405
        assert reply.json()["error"]
    other_path = httpx.get(manager.url + "nodes", timeout=30)
    assert other_path.status_code == 404 and other_path.json()["error"]
    assert _snapshot(manager) == before


def test_jsonrpc2_requests_are_answered_in_kind(manager: Manager) -> None:
    good = _post(manager, {"jsonrpc": "2.0", "method": "list_nodes", "id": 5}).json()
    assert good == {"jsonrpc": "2.0", "result": {"serviceNode": [], "masters": [], "slaves": [],
                                                 "nodes": []}, "id": 5}
    unknown = _post(manager, {"jsonrpc": "2.0", "method": "nope", "id": 6}).json()
    assert unknown["error"]["code"] == -32601 and unknown["id"] == 6
    invalid = _post(manager, {"jsonrpc": "2.0", "method": "add_nodes",
                              "params": {"count": "x"}, "id": 7}).json()
    assert invalid["error"]["code"] == -32602
    assert invalid["error"]["message"].startswith("Invalid argument: count")
    state = _post(manager, {"jsonrpc": "2.0", "method": "shutdown", "id": 8}).json()
    assert state["result"] == {"state": "EPILOGUE"}
    again = _post(manager, {"jsonrpc": "2.0", "method": "shutdown", "id": 9}).json()
    assert again["error"]["message"].startswith("Service in wrong state")
    assert again["error"]["code"] == -32001
