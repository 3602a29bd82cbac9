"""Fixtures shared by the integration tests: a manager, and one with N nodes replicating."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import workload
from tests.integration.harness import Manager


@pytest.fixture
def manager(template_cache: Path) -> Iterator[Manager]:
    running = Manager(template_cache).start()
    try:
        yield running
    finally:
        running.close()


def replicating(template_cache: Path, count: int, sections: str = "") -> Iterator[Manager]:
    """A manager with ``count`` nodes, a master and its slaves replicating, and the
    workload's table (``workload.prepare``); closed afterwards."""
    running = Manager(template_cache, sections=sections).start()
    try:
        running.post("add_nodes", count=count)
        running.wait_topology(count)
        workload.prepare(running)
        yield running
    finally:
        running.close()


@pytest.fixture
def solo(template_cache: Path) -> Iterator[Manager]:
    """One node, the master."""
    yield from replicating(template_cache, 1)


@pytest.fixture
def pair(template_cache: Path) -> Iterator[Manager]:
    """A master and a slave replicating from it."""
    yield from replicating(template_cache, 2)


@pytest.fixture
def trio(template_cache: Path) -> Iterator[Manager]:
    """A master and two slaves replicating."""
    yield from replicating(template_cache, 3)
