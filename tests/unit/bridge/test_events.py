"""Front -> master worker events: one JSON line each, read back as the same typed event."""

from __future__ import annotations

import json

import pytest

from askr.bridge import events
from askr.bridge.events import RequestTimeout, WorkerBootFailed, WorkerGone, WorkerQuota, WorkerReady


@pytest.mark.parametrize("event", [
    WorkerReady(3, 1234, 2), WorkerGone(3, 1234), WorkerQuota(0, 9), WorkerQuota(0, 9, "max_memory", 2**30),
    WorkerBootFailed(1, 5, "PHP Fatal error: x"), RequestTimeout(2, 77, "/slow?x=1"),
])
def test_round_trip(event: events.WorkerEvent) -> None:
    line = event.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert events.parse(json.loads(line)) == event


def test_the_wire_names_are_the_documented_ones() -> None:
    ready = {"event": "worker_ready", "worker_id": 1, "pid": 2, "generation": 3}
    assert WorkerReady(1, 2, 3).to_dict() == ready
    assert RequestTimeout(1, 2, "/x").to_dict() == {"event": "request_timeout", "worker_id": 1, "pid": 2,
                                                     "uri": "/x"}


def test_a_quota_without_a_reason_is_max_requests() -> None:
    """What a front of the previous release sends during an upgrade."""
    old = {"event": "worker_quota", "worker_id": 1, "pid": 2}
    assert events.parse(old) == WorkerQuota(1, 2, "max_requests", 0)


def test_unknown_or_malformed_lines_are_none() -> None:
    assert events.parse({"event": "stats", "requests": 1}) is None
    assert events.parse({"event": "worker_gone", "pid": 1}) is None  # no worker_id
    assert events.parse({}) is None
