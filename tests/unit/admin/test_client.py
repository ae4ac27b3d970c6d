"""`askr status`'s text rendering of /api/status."""

from __future__ import annotations

from askr.admin.client import render

STATUS = {
    "version": "0.1.0", "uptime_seconds": 12.0, "mode": "worker", "generation": 1,
    "state": "ready", "draining": False, "traffic": {"in_flight": 0, "idle_seconds": 1.5},
    "workers_ready": 2, "workers_configured": 2, "busy": 0, "idle": 2, "restarts": 0,
    "recycled": {"max_requests": 4, "max_memory": 1}, "last_reload": None, "failing": {},
    "workers": [{"position": 0, "pid": 4242, "generation": 1, "state": "ready", "busy": False,
                 "requests": 17, "rss_kib": 40960, "rss_anon_kib": 12288}],
    "queue_workers": [], "scheduler": None,
}


def test_recycles_are_shown_by_reason() -> None:
    assert "\nrecycled: max_requests 4 · max_memory 1\n" in render(STATUS)


def test_a_master_without_recycle_counts_renders_without_the_line() -> None:
    status = {k: v for k, v in STATUS.items() if k != "recycled"}
    assert "recycled" not in render(status)


def test_the_worker_table_shows_rss_and_the_anonymous_memory_max_memory_compares() -> None:
    lines = render(STATUS).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("worker "))
    assert lines[header].split() == ["worker", "pid", "gen", "state", "busy", "requests", "rss", "anon"]
    assert lines[header + 1].split() == ["php#0", "4242", "1", "ready", "no", "17", "40.0M", "12.0M"]
