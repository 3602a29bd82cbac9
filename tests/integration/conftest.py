from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Manager


@pytest.fixture
def manager(template_cache: Path) -> Iterator[Manager]:
    running = Manager(template_cache).start()
    try:
        yield running
    finally:
        running.close()
