"""[worker] max_memory: a worker whose anonymous memory is over the limit after a request is
replaced the way max_requests replaces one (successor first), with the reason logged, counted in
/api/status, /metrics and `askr status`."""

from __future__ import annotations

import re

import httpx
from askrtest import TESTS, run_askr
from test_metrics import scrape, value

LEAKY_WORKER = TESTS / "php" / "recycle" / "leaky_worker.php"
RECYCLED = re.compile(r"php#(\d) \(pid (\d+)\) holds ([\d.]+) MiB of anonymous memory after a request, "
                      r"over max_memory \(([\d.]+) MiB\); starting its replacement")


def recycled_counts(server) -> dict[str, int]:
    return httpx.get(server.admin_url + "/api/status", timeout=30).json()["recycled"]


def metric(server, reason: str) -> float:
    return value(scrape(server), "askr_php_workers_recycled_total", reason=reason)


def assert_successor_first(server, old_pid: int) -> None:
    """The replacement was ready before the old worker was told to stop: capacity never dipped."""
    ready = server.wait_for_log(rf"php#\d \(pid \d+\) ready; retiring pid {old_pid}\b")
    retired = server.wait_for_log(rf"php#\d \(pid {old_pid}\) retired")
    lines = server.lines
    assert lines.index(ready.string) < lines.index(retired.string)


def test_a_leaking_worker_script_is_recycled_for_memory(config_server):
    """Worker mode: the leaky script keeps 1 MiB more per request in a static array. With
    max_memory = 32M a worker serves until it holds more than that (a fresh worker holds ~6 MiB,
    so a few dozen requests), then is replaced; no request fails meanwhile."""
    server = config_server(workers=2, worker={"script": str(LEAKY_WORKER), "max_memory": "32M"})
    served_by: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(400):  # bounded: 2 workers cross 32 MiB well before
            resp = client.get("/anything")
            assert resp.status_code == 200, resp.text
            body = resp.json()
            served_by[body["pid"]] = body["served"]
            if recycled_counts(server)["max_memory"] >= 1 and len(served_by) >= 3:
                break
    m = server.wait_for_log(RECYCLED.pattern)
    old_pid, held, limit = int(m.group(2)), float(m.group(3)), float(m.group(4))
    assert limit == 32.0 and held > limit
    assert served_by[old_pid] >= 10, served_by  # its memory grew to the limit; not recycled at once
    assert_successor_first(server, old_pid)
    counts = recycled_counts(server)
    assert counts["max_memory"] >= 1 and counts["max_requests"] == 0
    for w in httpx.get(server.admin_url + "/api/status", timeout=30).json()["workers"]:
        assert 0 < w["rss_anon_kib"] < w["rss_kib"]  # what max_memory compares, and all resident pages
    assert metric(server, "max_memory") == counts["max_memory"]
    code, out = run_askr(["status", "--admin", server.admin_url.removeprefix("http://")])
    assert code == 0, out
    assert re.search(r"^recycled: max_requests 0 · max_memory \d+$", out, re.M), out


def test_memory_held_outside_phps_allocator_counts(config_server):
    """Why RssAnon and not memory_get_usage(): a C library's leak (here libxml's parsed documents,
    kept in a static array) grows the process while PHP's own figure stays flat. The worker is
    recycled for it all the same."""
    server = config_server(workers=1, worker={"script": str(LEAKY_WORKER), "max_memory": "32M"})
    seen: list[dict] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(200):  # bounded: each request keeps ~2 MiB of libxml nodes
            resp = client.get("/anything", params={"dom": 1, "kb": 64})
            assert resp.status_code == 200, resp.text
            seen.append(resp.json())
            if recycled_counts(server)["max_memory"] >= 1:
                break
    m = server.wait_for_log(RECYCLED.pattern)
    old = [s for s in seen if s["pid"] == int(m.group(2))]
    assert len(old) >= 5, seen  # it took a few documents to get there
    assert max(s["php_memory"] for s in old) < 16 * 2**20  # PHP's allocator never saw 32 MiB


def test_classic_workers_are_recycled_for_memory(config_server):
    """Classic mode checks after every response too: with a limit below what any worker holds
    (1M), each worker asks to be replaced after its first request, and every request still
    succeeds while they turn over."""
    server = config_server(workers=2, worker={"max_memory": "1M"})
    pids = set()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):  # bounded
            resp = client.get("/pid.php")
            assert resp.status_code == 200, resp.text
            pids.add(int(resp.text))
            if len(pids) >= 4 and recycled_counts(server)["max_memory"] >= 2:
                break
    m = server.wait_for_log(RECYCLED.pattern)
    assert float(m.group(4)) == 1.0 and float(m.group(3)) > 1.0
    assert_successor_first(server, int(m.group(2)))
    counts = recycled_counts(server)
    assert counts["max_memory"] >= 2, counts
    assert metric(server, "max_memory") >= 2
    assert metric(server, "max_requests") == 0


def test_max_requests_recycles_are_counted_by_reason(config_server):
    server = config_server(workers=1, server={"max_requests": 3})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/hello.php").status_code == 200
    server.wait_for_log(r"php#0 \(pid \d+\) reached max_requests \(3\); starting its replacement")
    assert recycled_counts(server) == {"max_requests": 1, "max_memory": 0}
    assert metric(server, "max_requests") == 1
