"""get_service_history: the stored transitions and events, with the ConPaaS error texts."""

from __future__ import annotations

import pytest

from tests.integration.harness import Manager, rpc_error

pytestmark = pytest.mark.integration


def test_history_of_the_service_and_of_one_node(manager: Manager) -> None:
    manager.post("add_nodes", count=1)
    manager.wait_running(1)
    history = manager.get("get_service_history")["history"]
    assert history[0]["subject"] == "service" and history[0]["to"] == "INIT"
    added = [e for e in history if e.get("node") == 1 and e.get("to") == "PENDING"]
    assert added and added[0]["message"] == "node 1 requested from cloud default"
    assert any(e.get("node") == 1 and e.get("to") == "RUNNING" for e in history)
    assert [e["at"] for e in history] == sorted(e["at"] for e in history)

    last = manager.get("get_service_history", limit=2)["history"]
    assert last == history[-2:]
    of_node = manager.get("get_service_history", serviceNodeId="1")["history"]
    assert of_node and all(e.get("node") == 1 for e in of_node)
    assert len(of_node) < len(history)


@pytest.mark.parametrize(("params", "text"), [
    ({"limit": 0}, "Invalid argument: limit DETAIL:Input should be greater than or equal to 1"),
    ({"limit": 1001},
     "Invalid argument: limit DETAIL:Input should be less than or equal to 1000"),
    ({"limit": "ten"}, "Invalid argument: limit DETAIL:must be a positive integer"),
    ({"serviceNodeId": 42}, "Invalid argument: serviceNodeId DETAIL:no node 42 in this service"),
    ({"since": 1}, "Unexpected arguments ['since']"),
])
def test_bad_params_get_the_conpaas_texts(manager: Manager, params: dict[str, object],
                                          text: str) -> None:
    assert rpc_error(lambda: manager.get("get_service_history", **params)) == text
