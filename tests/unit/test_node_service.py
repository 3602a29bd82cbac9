"""The node use cases' dealings with clouds: a lost node's replacement and its limits,
a node removed while its cloud was making it, and what one listing says of a node.

The manager's real store, authority and secrets; the cloud is a driver that records
what it is asked (no cloud runs in a unit test; the stand-in clouds' tests run the
real drivers end to end)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conpaassql.cloud.base import CloudDriver, CloudNode, CloudNodeState, NodeRequest
from conpaassql.cloud.clouds import Clouds
from conpaassql.config import ManagerConfig
from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, ServiceState
from conpaassql.manager.agents import AgentLink
from conpaassql.manager.authority import Authority
from conpaassql.manager.cloud_watch import IN_CLOUD_SINCE, Listing
from conpaassql.manager.credentials import ServiceSecrets
from conpaassql.manager.service import MAX_REPLACEMENTS, NodeService, Runtime
from conpaassql.manager.store import Store
from conpaassql.rpc.tls import client_context


class RecordingCloud(CloudDriver):
    """A cloud that makes a node when asked (after ``hold`` is set, if given)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.created: list[int] = []
        self.destroyed: list[str] = []
        self.hold: asyncio.Event | None = None

    async def create_node(self, request: NodeRequest) -> CloudNode:
        if self.hold is not None:
            await self.hold.wait()
        self.created.append(request.node_id)
        return CloudNode(f"vm-{request.node_id}", request.node_id, request.name, None,
                         CloudNodeState.PENDING)

    async def list_nodes(self) -> list[CloudNode]:
        return []

    async def destroy_node(self, ref: str) -> None:
        self.destroyed.append(ref)

    async def reboot_node(self, ref: str) -> None:
        pass


def service(tmp_path: Path, **config: object) -> tuple[NodeService, RecordingCloud]:
    store = Store(tmp_path / "manager.db")
    authority = Authority.load_or_create(tmp_path / "pki", store.service_id)
    secrets = ServiceSecrets.load(tmp_path)
    cloud = RecordingCloud("default")
    runtime = Runtime(
        config=replace(ManagerConfig(), **config),  # type: ignore[arg-type]
        store=store, clouds=Clouds([cloud, RecordingCloud("aws")]),
        agents=AgentLink(secrets.agent_secret, client_context(authority.manager_files),
                         store.service_id),
        secrets=secrets, manager_url="https://127.0.0.1:50001/", authority=authority)
    return NodeService(runtime), cloud


def lost_node(nodes: NodeService, *, ran: bool = True) -> Node:
    """A node that was running (or not) and that its cloud lost."""
    node = asyncio.run(nodes.add_nodes(1))[0]
    if ran:
        node = nodes.rt.store.update_node(node.id, registered_at=time.time())
    return nodes.rt.store.move_node(node.id, NodeState.TERMINATED, "gone from the cloud")


def events(nodes: NodeService) -> list[str]:
    return [entry.message for entry in nodes.rt.store.history(limit=200)]


def test_a_lost_node_is_replaced_on_its_cloud(tmp_path: Path) -> None:
    nodes, cloud = service(tmp_path)
    lost = lost_node(nodes)
    made = asyncio.run(nodes.replace_lost(lost))
    assert made is not None and made.cloud == "default" and made.state is NodeState.PENDING
    assert cloud.created == [lost.id, made.id]
    assert f"node {lost.id} was lost by cloud default; node {made.id} replaces it" in \
        events(nodes)


@pytest.mark.parametrize(("setup", "reason"), [
    ("off", "replace_lost_nodes is off"),
    ("never ran", "it never ran"),
    ("shutdown", "the service is EPILOGUE"),
    ("full", "the service has max_nodes (1) nodes"),
])
def test_a_lost_node_is_not_replaced(tmp_path: Path, setup: str, reason: str) -> None:
    nodes, cloud = service(tmp_path, replace_lost_nodes=setup != "off",
                           max_nodes=1 if setup == "full" else 64)
    lost = lost_node(nodes, ran=setup != "never ran")
    if setup == "shutdown":
        nodes.rt.store.set_service_state(ServiceState.EPILOGUE, "shutdown requested")
    if setup == "full":
        asyncio.run(nodes.add_nodes(1))  # the lost node's place is taken
    created = list(cloud.created)
    assert asyncio.run(nodes.replace_lost(lost)) is None
    assert cloud.created == created
    assert f"node {lost.id} was lost by cloud default; not replaced: {reason}" in events(nodes)


def test_a_cloud_that_keeps_losing_nodes_is_left_to_its_operator(tmp_path: Path) -> None:
    nodes, _ = service(tmp_path)
    for _ in range(MAX_REPLACEMENTS):
        assert asyncio.run(nodes.replace_lost(lost_node(nodes))) is not None
    one_more = lost_node(nodes)
    assert asyncio.run(nodes.replace_lost(one_more)) is None
    assert any(message.startswith(f"node {one_more.id} was lost by cloud default; not "
                                  f"replaced: {MAX_REPLACEMENTS} nodes of cloud default")
               for message in events(nodes))


def test_a_node_removed_while_its_cloud_makes_it_is_destroyed(tmp_path: Path) -> None:
    nodes, cloud = service(tmp_path)

    async def scenario() -> Node:
        cloud.hold = asyncio.Event()
        adding = asyncio.create_task(nodes.add_nodes(1))
        await asyncio.sleep(0.05)
        (node_id,) = nodes.creating
        nodes.shutdown()  # the node goes while its cloud is still making it
        await asyncio.sleep(0.05)
        assert nodes.rt.store.get_node(node_id).state is NodeState.TERMINATED  # type: ignore[union-attr]
        cloud.hold.set()
        (made,) = await adding
        return made

    made = asyncio.run(scenario())
    assert cloud.destroyed == [f"vm-{made.id}"]  # the VM that came too late, destroyed
    assert not nodes.creating
    assert made.cloud_ref == f"vm-{made.id}" and made.details[IN_CLOUD_SINCE] > 0


def test_what_a_listing_says_of_a_node(tmp_path: Path) -> None:
    nodes, _ = service(tmp_path)
    node = asyncio.run(nodes.add_nodes(1))[0]
    running = CloudNode(node.cloud_ref or "", node.id, "n", "10.0.0.5", CloudNodeState.RUNNING)
    ended = replace(running, state=CloudNodeState.TERMINATED)
    before, after = time.time() - 60, time.time() + 60
    assert Listing(before, {"default": {running.ref: running}}).view(node, False).running
    # Gone: judged only by a listing asked for after the cloud made the node.
    assert Listing(after, {"default": {}}).view(node, False).in_cloud is False
    assert Listing(after, {"default": {ended.ref: ended}}).view(node, False).in_cloud is False
    assert Listing(before, {"default": {}}).view(node, False).in_cloud is None
    assert Listing(after, {"default": {}}).view(node, True).in_cloud is None  # being made
    assert Listing(after, {"aws": {}}).view(node, False).in_cloud is None  # not listed
