"""Hostile requests to every RPC method of a real manager and a real agent (hypothesis).

The method list comes from each server's own ``rpc.discover``. Every generated
request is one the server must refuse: a param it does not take is always
added, besides whatever else is wrong (types, sizes, NUL bytes, lone
surrogates, deep nesting, duplicated keys, bodies that are not JSON or not
UTF-8, the wrong verb, broken forms). Each must get a well-formed JSON reply
with an error, an expected HTTP status, no traceback and no "Unknown error."
(an exception nobody handled), in bounded time; and the service must look the
same afterwards.

``make test`` runs a fixed, derandomized set; ``make fuzz`` sets
``CONPAASSQL_FUZZ_EXAMPLES`` for a long run and prints how many requests went.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conpaassql.rpc.tls import client_context, dns_name, node_name
from tests.integration.harness import Manager

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("CONPAASSQL_FUZZ_EXAMPLES", "150"))
STATUSES = {200, 400, 401, 403, 404, 405, 413}
REPLY_LIMIT = 15.0  # seconds: the client gives up (and the test fails) on a slower reply
JUNK_KEY = "zz_not_a_param"


@dataclass
class Target:
    name: str
    client: httpx.Client
    url: str
    methods: dict[str, dict[str, Any]]
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


def _nasty_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(["", "\x00", "a\x00b", "\ud800", "all", "-1", "0", "1e309", "NaN",
                         "' OR 1=1 --", "`; DROP DATABASE mysql; --", "../../etc/passwd",
                         "%00", "\u202e", "x" * 70000]),
    )


NASTY = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
              st.floats(allow_nan=False, allow_infinity=False), _nasty_text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_nasty_text(), inner, max_size=4)),
    max_leaves=12,
)


def _no_params(text: str) -> bool:
    """Whether a GET's params text means "no params" or a JSON object (valid calls)."""
    if text.strip() in ("", "null"):
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@st.composite
def hostile_request(draw: st.DrawFn, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An HTTP request (as httpx arguments) that must be refused."""
    name = draw(st.one_of(st.sampled_from(sorted(methods)),
                          st.sampled_from(["no_such_method", "", "rpc.", "__init__"])))
    declared = [p["name"] for p in methods.get(name, {}).get("params", [])]
    keys = st.sampled_from(declared) if declared else _nasty_text()
    params: dict[str, Any] = draw(st.dictionaries(keys, NASTY, max_size=4))
    params[JUNK_KEY] = draw(NASTY)
    request_id = draw(st.one_of(st.integers(), st.text(max_size=8), st.none(),
                                st.lists(st.integers(), max_size=2)))
    shape = draw(st.sampled_from(["get", "post", "post2", "raw", "deep", "duplicate",
                                  "form", "wrongtype"]))
    if shape == "get":
        text = draw(st.one_of(st.just(json.dumps(params)),
                              _nasty_text().filter(lambda t: not _no_params(t))))
        query: dict[str, str] = {"method": name, "params": text[:20000]}
        if draw(st.booleans()):
            query["id"] = json.dumps(request_id)
        # Encoded here: httpx would refuse control characters and lone surrogates.
        return {"method": "GET", "query": "&".join(
            f"{key}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
            for key, value in query.items())}
    if shape in ("post", "post2"):
        body: dict[str, Any] = {"method": name, "params": params, "id": request_id}
        if shape == "post2":
            body["jsonrpc"] = "2.0"
        return {"method": "POST", "content": json.dumps(body).encode(),
                "headers": {"Content-Type": "application/json"}}
    if shape == "raw":
        raw = draw(st.one_of(st.binary(max_size=200), st.sampled_from([
            b"\xff\xfe{", b'{"method": "list_nodes", "params": {"a": 1}', b"[]", b"null",
            b'{"method": 5}', b'{"method": "list_nodes", "params": [1, 2]}', b"\x00" * 10])))
        return {"method": "POST", "content": raw,
                "headers": {"Content-Type": "application/json"}}
    if shape == "deep":
        depth = draw(st.integers(min_value=50, max_value=5000))
        nested = "[" * depth + "]" * depth
        return {"method": "POST", "content": (
            f'{{"method": {json.dumps(name)}, "params": {{"{JUNK_KEY}": {nested}}}, '
            '"id": 1}').encode(), "headers": {"Content-Type": "application/json"}}
    if shape == "duplicate":
        body_text = (f'{{"method": {json.dumps(name)}, "params": {{"{JUNK_KEY}": 1, '
                     f'"{JUNK_KEY}": 2}}, "id": 1, "id": 2}}')
        return {"method": "POST", "content": body_text.encode(),
                "headers": {"Content-Type": "application/json"}}
    if shape == "form":
        # Form field names as an HTTP client can send them (no lone surrogates).
        fields = {"method": name, **{k.encode("utf-8", "replace").decode(): json.dumps(v)
                                     for k, v in params.items()}}
        files = {draw(st.sampled_from(["mysqldump", "mysqldump_file", "x"])):
                 ("f.sql", draw(st.binary(max_size=300)))}
        return {"method": "POST", "data": fields, "files": files}
    return {"method": draw(st.sampled_from(["PUT", "DELETE", "PATCH", "POST"])),
            "content": json.dumps({"method": name, "params": params}).encode(),
            "headers": {"Content-Type": draw(st.sampled_from(
                ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                 "application/json; charset=latin-1"]))}}


def check_reply(target: Target, request: dict[str, Any]) -> None:
    request = dict(request)
    query = request.pop("query", None)
    url = target.url + (f"?{query}" if query is not None else "")
    response = target.client.request(url=url, **request)
    target.sent += 1
    target.statuses[response.status_code] = target.statuses.get(response.status_code, 0) + 1
    assert response.status_code in STATUSES, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and "error" in body, body
    error = body["error"]
    assert error, f"a hostile request was accepted: {request!r:.300} -> {body!r:.300}"
    text = json.dumps(error)
    assert "Traceback" not in text and 'File "' not in text, text
    assert "Unknown error." not in text, f"unhandled exception for {request!r:.300}"


@pytest.fixture(scope="module")
def service(template_cache: Path) -> Iterator[Manager]:
    manager = Manager(template_cache).start()
    try:
        manager.post("add_nodes", count=1)
        manager.wait_topology(1)
        yield manager
    finally:
        manager.close()


def snapshot(manager: Manager) -> Any:
    info = manager.get("get_service_info")
    nodes = manager.get("list_nodes")
    master = nodes["masters"][0]
    return (info["state"], nodes, manager.get("get_users", serviceNodeId=master),
            manager.get("list_databases", serviceNodeId=master),
            manager.sql(master, "SELECT @@gtid_binlog_pos").stdout)


def discover(client: httpx.Client, url: str) -> dict[str, dict[str, Any]]:
    reply = client.get(url, params={"method": "rpc.discover"})
    document = reply.json()["result"]
    assert document["openrpc"] and document["methods"]
    return {m["name"]: m for m in document["methods"]}


def fuzz(service: Manager, target: Target) -> None:
    """Send the generated requests to ``target``; the service must look the same after."""
    before = snapshot(service)

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(hostile_request(target.methods))
    def run(request: dict[str, Any]) -> None:
        check_reply(target, request)

    run()
    assert snapshot(service) == before
    print(f"\nfuzz {target.name}: {target.sent} requests, statuses {target.statuses}")


def test_the_manager_refuses_every_hostile_request(service: Manager) -> None:
    with httpx.Client(timeout=REPLY_LIMIT) as client:
        target = Target("manager", client, service.url, discover(client, service.url))
        assert {"add_nodes", "load_dump", "register_node", "rpc.discover"} <= set(target.methods)
        fuzz(service, target)


def test_the_agent_refuses_every_hostile_request(service: Manager) -> None:
    node = service.nodes()[0]["id"]
    url = service.agent_url(node)
    tls = client_context(service.manager_tls)
    headers = {"Authorization": f"Bearer {service.agent_secret}"}
    name = dns_name(service.service_id, node_name(node))
    with httpx.Client(verify=tls, headers=headers, timeout=REPLY_LIMIT) as client:
        client.event_hooks["request"] = [
            lambda request: request.extensions.update({"sni_hostname": name})]
        target = Target("agent", client, url, discover(client, url))
        assert {"fence", "seed_from", "backup_push", "send_mysqldump"} <= set(target.methods)
        fuzz(service, target)
        state = service.agent_call(node, "get_server_state", verb="GET")["return"]
        assert state["state"] == "RUNNING" and state["mysqld"]["answering"]


def test_the_description_matches_what_is_accepted(service: Manager) -> None:
    with httpx.Client() as client:
        methods = discover(client, service.url)
    assert methods["add_nodes"]["x-verb"] == "POST"
    assert methods["load_dump"]["x-verb"] == "UPLOAD"
    assert "mysqldump_file" in [p["name"] for p in methods["load_dump"]["params"]]
    assert methods["register_node"]["x-access"] == "agent"
    assert all(m["x-unexpected-params"] == "refused" for m in methods.values())
    described = {p["name"] for p in methods["configure_user"]["params"]}
    assert {"username", "password", "host", "database", "privileges"} <= described
