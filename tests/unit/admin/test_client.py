"""`askr status`'s text rendering of /api/status."""

from __future__ import annotations

from askr.admin.client import render

STATUS = {
    "version": "0.1.0", "uptime_seconds": 12.0, "mode": "worker", "generation": 1,
    "workers_ready": 2, "workers_configured": 2, "busy": 0, "idle": 2, "restarts": 0,
    "recycled": {"max_requests": 4, "max_memory": 1}, "last_reload": None, "failing": {},
    "workers": [], "queue_workers": [], "scheduler": None,
}


def test_recycles_are_shown_by_reason() -> None:
    assert "\nrecycled: max_requests 4 · max_memory 1\n" in render(STATUS)


def test_a_master_without_recycle_counts_renders_without_the_line() -> None:
    status = {k: v for k, v in STATUS.items() if k != "recycled"}
    assert "recycled" not in render(status)
