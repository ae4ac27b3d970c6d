"""Fixtures shared by the unit tests."""

from __future__ import annotations

import asyncio
import mmap
from collections.abc import Iterator
from pathlib import Path

import pytest

from askr.bridge import scoreboard


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop for the connections a test builds by hand; closed after the test."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def board(tmp_path: Path):
    """A mapped scoreboard file of 4 slots, as the master creates it."""
    path = tmp_path / "scoreboard"
    path.write_bytes(b"\0" * scoreboard.file_size(4))
    with path.open("r+b") as f:
        mapped = mmap.mmap(f.fileno(), 0)
    yield mapped
    mapped.close()
