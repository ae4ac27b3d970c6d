"""Fixtures shared by the unit tests."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest

from askr.bridge import scoreboard


@pytest.fixture
def board(tmp_path: Path):
    """A mapped scoreboard file of 4 slots, as the master creates it."""
    path = tmp_path / "scoreboard"
    path.write_bytes(b"\0" * scoreboard.file_size(4))
    with path.open("r+b") as f:
        mapped = mmap.mmap(f.fileno(), 0)
    yield mapped
    mapped.close()
