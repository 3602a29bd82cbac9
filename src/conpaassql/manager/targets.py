"""Which nodes a data or user request goes to.

Writes go to the master, the only server that accepts them: every other one is a
slave that gets its data and users through replication, or a node still being
made one (role ``none``, read-only meanwhile). A request naming one is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import AliasChoices

from conpaassql.domain.node import Node
from conpaassql.domain.states import NodeState, Role
from conpaassql.errors import NotFoundError, WrongStateError

Target = int | Literal["all"]

#: The names callers give a node id under (the seed's examples use all three).
NODE_ID_ALIASES = AliasChoices("serviceNodeId", "serviceNameId", "serviceName")


def writable(nodes: Iterable[Node]) -> list[Node]:
    """The running node that takes writes: the master (a list: none while there is none)."""
    return [n for n in nodes if n.state is NodeState.RUNNING and n.role is Role.MASTER]


def readable(nodes: Iterable[Node]) -> list[Node]:
    """Every running node, master first."""
    found = [n for n in nodes if n.state is NodeState.RUNNING]
    return sorted(found, key=lambda n: (n.role is not Role.MASTER, n.id))


def _master_of(nodes: Iterable[Node]) -> Node | None:
    return next((n for n in nodes if n.role is Role.MASTER and n.state.is_live), None)


def one_node(nodes: list[Node], node_id: int, *, write: bool) -> Node:
    """Node ``node_id`` if it is running (and, for a write, takes writes)."""
    node = next((n for n in nodes if n.id == node_id), None)
    if node is None or not node.state.is_live:
        raise NotFoundError("serviceNodeId", detail=f"no node {node_id} in this service")
    if node.state is not NodeState.RUNNING:
        raise WrongStateError(detail=f"node {node_id} is {node.state}, not RUNNING")
    if write and node.role is Role.SLAVE:
        master = _master_of(nodes)
        where = f"node {master.id}" if master is not None else "the master"
        raise WrongStateError(detail=f"node {node_id} is a slave: it replicates from {where}; "
                              "send writes to the master")
    if write and node.role is not Role.MASTER:
        raise WrongStateError(detail=f"node {node_id} is being made a slave (read-only); "
                              "send writes to the master")
    return node


def resolve(nodes: list[Node], target: Target | None, *, write: bool = True) -> list[Node]:
    """The nodes a request for ``target`` (a node id, ``'all'`` or nothing) acts on.

    ``'all'`` and nothing mean every node that takes writes (for a read, every
    running node); refuses with ``WrongStateError`` when there is none.
    """
    if isinstance(target, int):
        return [one_node(nodes, target, write=write)]
    chosen = writable(nodes) if write else readable(nodes)
    if not chosen:
        raise WrongStateError(detail="no master is RUNNING yet" if write
                              else "no node is RUNNING yet")
    return chosen


def source(nodes: list[Node], target: int | None) -> Node:
    """The node to read a whole copy from: ``target``, else the master."""
    if target is not None:
        return one_node(nodes, target, write=False)
    return resolve(nodes, None, write=True)[0]
