from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Manager


@pytest.fixture(scope="session")
def template_cache() -> Iterator[Path]:
    """One pre-initialised datadir shared by every manager of the session."""
    directory = Path(tempfile.mkdtemp(prefix="cq-cache-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def manager(template_cache: Path) -> Iterator[Manager]:
    running = Manager(template_cache).start()
    try:
        yield running
    finally:
        running.close()
