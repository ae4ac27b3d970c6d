"""`askr status`'s rendering of /api/status?full."""

from __future__ import annotations

from askr.admin.client import render

STATUS = {
    "version": "0.1.0", "uptime_seconds": 12.0, "mode": "classic", "generation": 3, "state": "ready",
    "draining": False, "traffic": {"in_flight": 1, "idle_seconds": 0.5},
    "workers_configured": 2, "workers_ready": 2, "busy": 1, "idle": 1, "restarts": 0,
    "recycled": {"max_requests": 4, "max_memory": 1},
    "last_reload": None, "failing": {}, "queue_workers": [], "scheduler": None,
    "requests_waiting": 4, "max_requests_waiting": 9, "all_workers_busy": 2, "slow_requests": 5,
    "slow_request_seconds": 1.0, "slowlogged_requests": 3, "accepted_connections": 1234,
    "workers": [
        {"position": 0, "pid": 100, "generation": 3, "state": "ready", "busy": True, "requests": 7,
         "rss_kib": 40960, "rss_anon_kib": 12288, "last_request_seconds": 0.0123,
         "last_request_cpu_seconds": 0.004, "last_request_peak_bytes": 3 * 1048576},
        {"position": 1, "pid": 101, "generation": 3, "state": "ready", "busy": False, "requests": 0,
         "rss_kib": None, "rss_anon_kib": None, "last_request_seconds": None,
         "last_request_cpu_seconds": None, "last_request_peak_bytes": None},
    ],
}


def test_status_shows_the_pool_counters_and_each_workers_latest_request() -> None:
    lines = render(STATUS).splitlines()
    assert ("requests: 4 waiting for a worker (at most 9), all workers busy 2 times, 5 slow (>= 1 s), "
            "3 slowlogged, 1234 connections accepted") in lines
    header = next(line for line in lines if line.startswith("worker "))
    assert header.split()[-5:] == ["last", "req", "cpu", "peak", "mem"]
    php0 = next(line for line in lines if line.startswith("php#0"))
    assert php0.split()[-3:] == ["12.3ms", "4.0ms", "3.0M"]
    php1 = next(line for line in lines if line.startswith("php#1"))
    assert php1.split()[-3:] == ["-", "-", "-"]


def test_a_status_without_the_counters_still_renders() -> None:
    old = {k: v for k, v in STATUS.items() if k not in ("requests_waiting",)}
    old["workers"] = [{k: v for k, v in w.items() if not k.startswith("last_")} for w in STATUS["workers"]]
    assert not any(line.startswith("requests:") for line in render(old).splitlines())


def test_a_master_without_the_slowlog_count_leaves_it_out() -> None:
    status = {k: v for k, v in STATUS.items() if k != "slowlogged_requests"}
    assert ("requests: 4 waiting for a worker (at most 9), all workers busy 2 times, 5 slow (>= 1 s), "
            "1234 connections accepted") in render(status).splitlines()


def test_recycles_are_shown_by_reason() -> None:
    assert "\nrecycled: max_requests 4 · max_memory 1\n" in render(STATUS)


def test_a_master_without_recycle_counts_renders_without_the_line() -> None:
    status = {k: v for k, v in STATUS.items() if k != "recycled"}
    assert "recycled" not in render(status)


def test_the_worker_table_shows_rss_and_the_anonymous_memory_max_memory_compares() -> None:
    lines = render(STATUS).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("worker "))
    assert lines[header].split()[:8] == ["worker", "pid", "gen", "state", "busy", "requests", "rss", "anon"]
    assert lines[header + 1].split()[:8] == ["php#0", "100", "3", "ready", "yes", "7", "40.0M", "12.0M"]
    assert lines[header + 2].split()[:8] == ["php#1", "101", "3", "ready", "no", "0", "-", "-"]
