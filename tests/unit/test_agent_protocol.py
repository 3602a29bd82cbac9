"""The agent protocol (``conpaassql.protocol``) and the manager's typed client.

The report and the replies must read what agents send and write it back
unchanged (the wire does not change); requests are refused, on either side, with
the ConPaaS texts; the agent serves exactly the methods of the table. The typed
client is run against an RPC server built from the same table, whose handlers
record the params they were given.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest

from conpaassql.agent.api import AgentApi
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState
from conpaassql.errors import (
    InvalidArgumentError,
    MissingArgumentError,
    RemoteError,
    UnexpectedArgumentsError,
)
from conpaassql.manager.agents import AgentLink
from conpaassql.mysql import socket_copy
from conpaassql.protocol import agent as protocol
from conpaassql.protocol.agent import (
    DumpRequest,
    MasterRequest,
    PushRequest,
    SeedRequest,
    SlaveRequest,
    SourceRequest,
    WaitRequest,
)
from conpaassql.protocol.report import StateReport, mysqld_answering, public_report
from conpaassql.rpc.client import RpcClient
from conpaassql.rpc.openrpc import DISCOVER, describe
from conpaassql.rpc.registry import CallContext, Registry, validate_params
from conpaassql.rpc.server import RpcApp

#: A slave's report, as an agent sends it (get_server_state's "return").
SLAVE_REPORT: dict[str, Any] = {
    "id": 2, "node_id": 2, "service_id": "s-1", "name": "conpaassql-agent-2",
    "ip": "127.0.0.3", "port": 60002, "mysqld_port": 3308, "health_port": 60010,
    "tls_names": ["127.0.0.3", "node-2.s-1.conpaassql"], "state": "RUNNING",
    "mysqld": {"answering": True, "pid": 4242, "restarts": 1,
               "last_exit": "mysqld killed by SIGKILL at 10:01:02", "last_error": None,
               "uptime": 12.5, "version": "10.11.6-MariaDB"},
    "replication": {
        "read_only": True, "gtid_current_pos": "0-1-57", "gtid_binlog_pos": "",
        "gtid_slave_pos": "0-1-57", "semi_sync_master": False, "semi_sync_slave": True,
        "semi_sync_clients": 0,
        "slave": {"master_host": "127.0.0.2", "master_port": 3307, "io_running": "Yes",
                  "sql_running": "Yes", "seconds_behind_master": 0, "gtid_io_pos": "0-1-57",
                  "last_io_errno": 0, "last_io_error": "", "last_sql_errno": 0,
                  "last_sql_error": "", "using_gtid": "Slave_Pos",
                  "sql_state": "Slave has read all relay log"},
    },
}


# -- the report -------------------------------------------------------------------


def test_a_report_round_trips_unchanged() -> None:
    report = StateReport.model_validate(SLAVE_REPORT)
    assert report.wire() == SLAVE_REPORT
    assert report.mysqld_answering
    assert report.slave is not None and report.slave.replicating
    assert report.mysqld.restarts == 1
    wrapped = protocol.ServerStateReply.model_validate({"return": SLAVE_REPORT})
    assert wrapped.wire() == {"return": SLAVE_REPORT}


def test_a_heartbeat_event_is_sent_only_when_there_is_one() -> None:
    report = StateReport.model_validate(SLAVE_REPORT)
    assert "event" not in report.wire()
    told = report.model_copy(update={"event": "mysqld restarted"})
    assert told.wire()["event"] == "mysqld restarted"
    assert StateReport.model_validate(told.wire()).event == "mysqld restarted"
    assert "event" not in public_report(told)


def test_keys_of_a_newer_agent_are_ignored() -> None:
    newer = copy.deepcopy(SLAVE_REPORT)
    newer["disk_free"] = 12
    newer["mysqld"]["threads"] = 3
    newer["replication"]["slave"]["parallel_mode"] = "optimistic"
    report = StateReport.model_validate(newer)
    assert report.wire() == SLAVE_REPORT


@pytest.mark.parametrize(("raw", "answering"), [
    (None, False),
    ({}, False),
    ({"mysqld": {}}, False),
    ({"node_id": 3, "state": "STARTING", "mysqld": {"answering": False}}, False),
    ({"mysqld": {"answering": True}}, True),
    (SLAVE_REPORT, True),
])
def test_mysqld_answering_of_partial_reports(raw: Any, answering: bool) -> None:
    report = None if raw is None else StateReport.model_validate(raw)
    assert mysqld_answering(report) is answering


def test_a_kept_report_that_is_not_one_reads_as_none() -> None:
    assert StateReport.parse(None) is None
    assert StateReport.parse("RUNNING") is None
    assert StateReport.parse({"mysqld": "up"}) is None
    kept = StateReport.parse({"state": "STOPPED", "mysqld": {"restarts": 2}})
    assert kept is not None and kept.mysqld.restarts == 2 and not kept.mysqld_answering


def test_replies_keep_their_open_keys() -> None:
    figures = {"state": "RUNNING", "queries_per_second": 2.5, "questions_per_second": 3.0,
               "connections": 1, "threads_running": 0, "uptime": 40, "questions": 90,
               "slow_queries": 0, "total_connections": 7}
    assert protocol.PerformanceReply.model_validate(figures).wire() == figures
    idle = {"state": "STOPPED", "queries_per_second": 0.0}
    assert protocol.PerformanceReply.model_validate(idle).wire() == idle
    seeded = {"return": "OK", "gtid_position": "0-1-9", "bytes": 100, "seconds": 1.5,
              "method": "physical", "transport": "socket", "binlog_file": "bin.000002",
              "prepare_seconds": 0.4}
    assert protocol.Seeded.model_validate(seeded).wire() == seeded


# -- requests ---------------------------------------------------------------------


@pytest.mark.parametrize(("model", "raw", "error", "text"), [
    (MasterRequest, {}, MissingArgumentError, "Missing argument: replication_password"),
    (MasterRequest, {"replication_password": "p", "replica_hosts": ["db.example"]},
     InvalidArgumentError, "Invalid argument: replica_hosts DETAIL:must be an IP address"),
    (MasterRequest, {"replication_password": "p", "mode": "fast", "zone": 1},
     UnexpectedArgumentsError, "Unexpected arguments ['mode', 'zone']"),
    (SlaveRequest, {"master_host": "127.0.0.2", "replication_password": "p",
                    "master_port": 70000}, InvalidArgumentError,
     "Invalid argument: master_port"),
    (WaitRequest, {"gtid_position": "0-1-2", "timeout": 0}, InvalidArgumentError,
     "Invalid argument: timeout"),
    (SeedRequest, {"source": "http://127.0.0.2:60000/"}, InvalidArgumentError,
     "Invalid argument: source DETAIL:must be an https:// URL (agents serve only TLS)"),
    (PushRequest, {"host": "127.0.0.2", "port": 4000, "ticket": "abc"},
     InvalidArgumentError, "Invalid argument: ticket"),
    (DumpRequest, {"database": "a\x00b"}, InvalidArgumentError,
     "Invalid argument: database DETAIL:must not contain NUL bytes"),
    (protocol.NoRequest, {"x": 1}, UnexpectedArgumentsError, "Unexpected arguments ['x']"),
])
def test_bad_requests_are_refused_with_the_conpaas_texts(
        model: type[protocol.Request], raw: dict[str, Any], error: type[Exception],
        text: str) -> None:
    with pytest.raises(error) as refused:  # as the agent validates
        validate_params(model, raw)
    assert str(refused.value).startswith(text)
    with pytest.raises(error) as built:  # as the manager builds one
        model(**raw)
    assert str(built.value) == str(refused.value)


def test_a_request_sends_what_its_caller_set() -> None:
    request = SlaveRequest(master_host="127.0.0.2", master_port=3307,
                           replication_password="p", semi_sync=True, gtid_position=None)
    assert request.wire() == {"master_host": "127.0.0.2", "master_port": 3307,
                              "replication_password": "p", "semi_sync": True}
    assert SourceRequest(host="::1").wire() == {"host": "::1"}
    assert DumpRequest(database=None).wire() == {}
    assert WaitRequest(gtid_position="0-1-2", timeout=30).wire() == {
        "gtid_position": "0-1-2", "timeout": 30.0}


def test_the_ticket_is_the_copy_sockets() -> None:
    assert protocol.TICKET_BYTES == socket_copy.TICKET_BYTES
    ticket = socket_copy.new_ticket()
    assert PushRequest(host="127.0.0.2", port=4000, ticket=ticket).ticket == ticket


# -- the agent serves the table -----------------------------------------------------


def test_the_agent_serves_every_method_of_the_protocol() -> None:
    registry = AgentApi(cast(Any, None), cast(Any, None)).registry()
    served = {method.name: method for method in registry}
    assert set(served) - {DISCOVER} == {method.name for method in protocol.METHODS}
    for spec in protocol.METHODS:
        method = served[spec.name]
        assert (method.verb, method.params, method.files, method.access) == \
            (spec.verb, spec.request, spec.files, spec.access)
    described = {m["name"] for m in describe(registry, "agent")["methods"]}
    assert described == set(served)


# -- the typed client ---------------------------------------------------------------

NODE = Node(id=2, name="node-2", cloud="local", state=NodeState.RUNNING, ip="127.0.0.3",
            agent_port=60002)

CANNED: dict[str, Any] = {
    "get_server_state": {"return": SLAVE_REPORT},
    "set_up_replica_slave": {"return": "OK", "replication": SLAVE_REPORT["replication"]},
    "wait_for_gtid": {"return": "OK", "reached": True, "replication": None},
    "get_replication_status": {"return": None},
    "fence": {"return": "OK", "state": "STOPPED"},
    "list_databases": {"databases": [{"database": "shop", "character_set": "utf8mb4",
                                      "collation": "utf8mb4_general_ci", "tables": 2,
                                      "views": 0, "data_bytes": 16384, "index_bytes": 0,
                                      "bytes": 16384}]},
    "get_server_performance": {"state": "RUNNING", "queries_per_second": [1]},
}


class StandIn:
    """An agent's RPC server from the protocol table, answering from ``CANNED``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        registry = Registry()
        for spec in protocol.METHODS:
            protocol.register(registry, spec, self._handler(spec.name))
        self.app = RpcApp(registry).asgi()

    def _handler(self, name: str) -> Any:
        async def handle(params: protocol.Request, ctx: CallContext) -> Any:
            self.calls.append((name, params.wire()))
            return CANNED.get(name, {"return": "OK"})
        return handle


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def agents() -> AsyncIterator[tuple[AgentLink, StandIn]]:
    stand_in = StandIn()
    link = AgentLink("secret", ssl.create_default_context(), "s-1")
    assert NODE.agent_url is not None
    link._clients[f"{NODE.id} {NODE.agent_url}"] = RpcClient(
        NODE.agent_url, transport=httpx.ASGITransport(app=stand_in.app))
    yield link, stand_in
    await link.aclose()


@pytest.mark.anyio
async def test_the_typed_client_sends_and_parses(agents: tuple[AgentLink, StandIn]) -> None:
    link, stand_in = agents
    report = await link.get_server_state(NODE, timeout=5)
    assert report == StateReport.model_validate(SLAVE_REPORT)
    answer = await link.set_up_replica_slave(NODE, SlaveRequest(
        master_host="127.0.0.2", master_port=3307, replication_password="p",
        gtid_position="0-1-57"))
    assert answer.replication is not None and answer.replication.gtid_current_pos == "0-1-57"
    waited = await link.wait_for_gtid(NODE, WaitRequest(gtid_position="0-1-57", timeout=5))
    assert waited.reached and waited.replication is None
    assert await link.get_replication_status(NODE) is None
    assert (await link.fence(NODE)).state == "STOPPED"
    listed = await link.list_databases(NODE)
    assert [found.database for found in listed.databases] == ["shop"]
    assert stand_in.calls == [
        ("get_server_state", {}),
        ("set_up_replica_slave", {"master_host": "127.0.0.2", "master_port": 3307,
                                  "replication_password": "p", "gtid_position": "0-1-57"}),
        ("wait_for_gtid", {"gtid_position": "0-1-57", "timeout": 5.0}),
        ("get_replication_status", {}),
        ("fence", {}),
        ("list_databases", {}),
    ]


@pytest.mark.anyio
async def test_a_malformed_reply_is_the_agents_fault(
        agents: tuple[AgentLink, StandIn]) -> None:
    link, _ = agents
    with pytest.raises(RemoteError) as failed:
        await link.get_server_performance(NODE)
    assert str(failed.value).startswith(
        "node 2 answered get_server_performance with a malformed reply (queries_per_second:")
