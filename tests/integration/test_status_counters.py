"""php-fpm's status counters in /api/status, /api/status?full, ?format=openmetrics, /metrics and
`askr status`: requests waiting for a worker (now and at most), times every worker was busy,
slow requests, accepted connections, each worker's latest request; and the access log's client
behind a trusted proxy."""

from __future__ import annotations

import re
import threading

import httpx
import pytest
from askrtest import TESTS, admin_status, run_askr, wait_until
from prometheus_client.openmetrics.parser import text_string_to_metric_families

WORKER_SCRIPT = TESTS / "php" / "worker.php"  # tests/php/app in worker mode


def openmetrics(server) -> dict[str, float]:
    r = httpx.get(server.admin_url + "/api/status?format=openmetrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")
    return {s.name: s.value for family in text_string_to_metric_families(r.text) for s in family.samples
            if not s.labels}


def test_waiting_requests_and_all_busy_are_counted(config_server, gate):
    # one front: every count below is that front's own, exact (docs/admin.md)
    server = config_server(workers=2, server={"fronts": 1}, log={"slow_request": 0.5})
    before = admin_status(server)
    assert before["requests_waiting"] == before["max_requests_waiting"] == before["all_workers_busy"] == 0
    results: list[int] = []

    def get(url: str) -> None:
        results.append(httpx.get(server.url + url, timeout=60).status_code)

    holders = [threading.Thread(target=get, args=(gate.target,)) for _ in range(2)]
    for t in holders:
        t.start()
    gate.wait_started(2)  # both workers busy
    waiters = [threading.Thread(target=get, args=("/hello.php",)) for _ in range(3)]
    for t in waiters:
        t.start()
    busy = wait_until(lambda: (s := admin_status(server))["requests_waiting"] == 3 and s, timeout=30,
                      what="3 requests waiting for a worker")
    assert busy["max_requests_waiting"] == 3
    assert busy["all_workers_busy"] == 1
    assert busy["busy"] == 2
    samples = openmetrics(server)
    assert samples["askr_requests_waiting"] == 3 and samples["askr_requests_waiting_max"] == 3
    assert samples["askr_all_workers_busy_total"] == 1
    gate.open()
    for t in holders + waiters:
        t.join(60)
    assert results == [200] * 5
    after = wait_until(lambda: (s := admin_status(server))["requests_waiting"] == 0
                       and s["slow_requests"] >= 2 and s,
                       what="the queue to empty and the held requests to count as slow")
    assert after["max_requests_waiting"] == 3 and after["all_workers_busy"] == 1
    # the held two, and the waiting ones that waited long enough: the time counted is what the
    # client waited, time waiting for a worker included
    slow = after["slow_requests"]
    assert 2 <= slow <= 5 and after["slow_request_seconds"] == 0.5
    assert after["accepted_connections"] >= 5
    assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200  # fast: not slow
    later = wait_until(lambda: (s := admin_status(server))["accepted_connections"]
                       > after["accepted_connections"] and s, what="the next stats from the front")
    assert later["slow_requests"] == slow
    metrics = httpx.get(server.admin_url + "/metrics", timeout=30).text
    assert re.search(rf"(?m)^askr_slow_requests_total {slow}\.0$", metrics)
    assert re.search(r"(?m)^askr_requests_waiting_max 3\.0$", metrics)
    assert re.search(r"(?m)^askr_accepted_connections_total \d+\.0$", metrics)


def test_accepted_connections_count_every_connection(config_server):
    server = config_server(workers=1)
    for _ in range(4):  # a connection each
        assert httpx.get(server.url + "/style.css", timeout=30).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as c:  # one keep-alive connection
        for _ in range(3):
            assert c.get("/hello.php").status_code == 200
    wait_until(lambda: admin_status(server)["accepted_connections"] == 5, what="5 accepted connections")


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_full_status_shows_each_workers_latest_request(config_server, mode):
    worker = {"script": str(WORKER_SCRIPT)} if mode == "worker" else None
    server = config_server(workers=1, worker=worker)
    (w,) = admin_status(server, "?full")["workers"]
    assert w["last_request_seconds"] is None  # nothing served yet
    r = httpx.get(server.url + "/alloc.php?mb=16&cpu_ms=150", timeout=60)
    assert r.status_code == 200 and r.json()["bytes"] == 16 << 20
    (w,) = admin_status(server, "?full")["workers"]
    assert w["last_request_seconds"] >= 0.15
    assert 0 < w["last_request_cpu_seconds"] <= w["last_request_seconds"] + 0.05
    assert 16 << 20 <= w["last_request_peak_bytes"] < 64 << 20
    assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200
    (w,) = admin_status(server, "?full")["workers"]
    assert w["last_request_peak_bytes"] < 8 << 20  # each request's own peak, not the largest so far
    (plain,) = admin_status(server)["workers"]
    assert "last_request_seconds" not in plain  # only with ?full
    code, out = run_askr(["status", "--admin", server.admin_url.removeprefix("http://")])
    assert code == 0, out
    assert "requests: 0 waiting for a worker (at most 0)" in out
    assert re.search(r"php#0 .* \d+\.\dms +\d+\.\dms +\d+\.\dM$", out, re.M), out


def test_access_log_names_the_forwarded_client_of_a_trusted_proxy(config_server, tmp_path):
    log_file = tmp_path / "access.log"
    server = config_server(workers=1, server={"trusted_proxies": ["127.0.0.2"]},
                           log={"access": "combined", "access_file": str(log_file)})
    forwarded = {"X-Forwarded-For": "203.0.113.7, 127.0.0.2"}
    via_proxy = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=via_proxy, timeout=30) as proxy:
        assert proxy.get(server.url + "/hello.php?proxied", headers=forwarded).status_code == 200
    assert httpx.get(server.url + "/hello.php?direct", headers=forwarded, timeout=30).status_code == 200

    def two_lines():
        lines = log_file.read_text().splitlines() if log_file.exists() else []
        return lines if len(lines) >= 2 else None

    lines = wait_until(two_lines, what="two access log lines")
    by_uri = {re.search(r'"GET (\S+)', line).group(1): line for line in lines}
    assert by_uri["/hello.php?proxied"].startswith("203.0.113.7 - - [")
    assert by_uri["/hello.php?direct"].startswith("127.0.0.1 - - [")  # not a trusted proxy: its own address

