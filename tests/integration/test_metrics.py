"""GET /metrics on the admin listener (askr/metrics.py), read with Prometheus' own text parser."""

from __future__ import annotations

import httpx
from askrtest import wait_until
from prometheus_client.parser import text_string_to_metric_families


def scrape(server) -> dict[tuple[str, tuple], float]:
    r = httpx.get(server.admin_url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_move_as_requests_are_served(config_server):
    server = config_server(workers=2)
    before = scrape(server)
    assert value(before, "askr_php_workers", state="idle") == 2
    assert value(before, "askr_php_generation") == 1
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for _ in range(20):
            assert c.get("/hello.php").status_code == 200
        for _ in range(5):
            assert c.get("/.env").status_code in (403, 404)  # dotfiles are refused

    def counted():
        now = scrape(server)
        return now if value(now, "askr_http_requests_total", code="4xx") >= 5 + value(
            before, "askr_http_requests_total", code="4xx") else None

    after = wait_until(counted, what="the front's counters to reach the master")  # sent every second
    assert value(after, "askr_http_requests_total", code="2xx") - value(
        before, "askr_http_requests_total", code="2xx") == 20
    count = value(after, "askr_http_request_duration_seconds_count")
    assert count - value(before, "askr_http_request_duration_seconds_count") == 25
    assert value(after, "askr_http_request_duration_seconds_bucket", le="+Inf") == count
    assert value(after, "askr_http_request_duration_seconds_sum") > 0
    assert value(after, "askr_requests_waiting") == 0
    assert value(after, "askr_reloads_total", outcome="complete") == 0


def test_reloads_and_restarts_are_counted(config_server):
    server = config_server(workers=1)
    assert httpx.post(server.admin_url + "/api/reload", timeout=10).status_code == 202
    wait_until(lambda: value(scrape(server), "askr_reloads_total", outcome="complete") == 1,
               what="the reload to be counted")
    samples = scrape(server)
    assert value(samples, "askr_php_generation") == 2
    assert value(samples, "askr_php_worker_crashes_total") == 0
    assert value(samples, "askr_scheduler_runs_total", result="ok") == 0
    assert httpx.post(server.admin_url + "/metrics", timeout=10).status_code == 405
