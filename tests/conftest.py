"""Fixtures shared by the test tiers that run real managers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def template_cache() -> Iterator[Path]:
    """One pre-initialised datadir shared by every manager of the session."""
    directory = Path(tempfile.mkdtemp(prefix="cq-cache-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
