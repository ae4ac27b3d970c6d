"""Fixtures for the integration suite (helpers live in askrtest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from askrtest import Gate, build_docroot, write_config


@pytest.fixture
def config_server(askr_server, tmp_path) -> Callable[..., object]:
    """config_server(workers=1, limits={...}) -> a ready server started with `--config`."""

    def start(**kw: object):
        return askr_server("--config", write_config(tmp_path, **kw))  # type: ignore[arg-type]

    return start


@pytest.fixture(scope="module")
def docroot(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("docroot")
    return build_docroot(base / "public", base / "outside")


@pytest.fixture
def gate(tmp_path) -> Iterator[Gate]:
    g = Gate(tmp_path / "gate")
    yield g
    g.open()  # release held workers so the server's graceful stop is quick even after a failure
