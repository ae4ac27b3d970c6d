"""[server] retry_crashed: a GET whose PHP worker dies before answering is sent once more, to
another worker; a request that kills every worker costs two of them and one 502, never a loop;
with "never", the 502 comes at once. (POSTs still get their 502: test_failures.py.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import pytest
from askrtest import TESTS, admin_status, wait_until
from h2client import H2Client
from rawhttp import Conn, request_bytes
from test_metrics import scrape, value

WORKER_SCRIPT = TESTS / "php" / "worker.php"  # tests/php/app in worker mode
CLIENTS = 4
KILLS = 5
KILL_EVERY = 2.0  # seconds between kills: far longer than a retried request (0.1 s) takes
MAX_REQUESTS = 2000  # per client, a bound on the load whatever happens
MAX_SECONDS = 120.0


def settled(server, workers: int, restarts: int) -> dict:
    """/api/status once `restarts` replacements were started and every worker is ready again."""
    def check() -> dict | None:
        now = admin_status(server)
        return now if now["restarts"] >= restarts and now["workers_ready"] == workers else None

    return wait_until(check, what=f"{restarts} restarts and {workers} workers ready")


def metrics_once(server, name: str, expected: float, **labels: str) -> dict:
    """/metrics once `name` reads `expected` (the fronts report their counters every second)."""
    def check() -> dict | None:
        now = scrape(server)
        return now if value(now, name, **labels) == expected else None

    return wait_until(check, what=f"{name} to reach {expected}")


@pytest.mark.parametrize("version", ["1.1", "2"])
def test_a_get_whose_worker_is_killed_is_answered_by_another(config_server, gate, version):
    server = config_server(workers=2, server={"h2c": True})
    if version == "2":
        h2 = H2Client(server.host, server.port, tls=False)
        sid = h2.request(gate.target)
    else:
        h1 = Conn(server.host, server.port, timeout=30)
        h1.send(request_bytes("GET", gate.target))
    try:
        (dead,) = gate.wait_started(1)
        os.kill(dead, signal.SIGKILL)
        other = next(pid for pid in gate.wait_started(2) if pid != dead)  # the retry reached it
        gate.open()
        if version == "2":
            h2.wait(lambda: h2.responses[sid].ended or h2.responses[sid].reset is not None)
            status, body = h2.responses[sid].status, bytes(h2.responses[sid].data)
        else:
            resp = h1.read_final_response()
            status, body = resp.status, resp.body
    finally:
        (h2 if version == "2" else h1).close()
    assert status == 200, body
    assert json.loads(body) == {"pid": other, "released": True}
    server.wait_for_log(rf"PHP worker pid {dead} \(worker id \d+\) died before answering GET /hold\.php\?\S+ "
                        rf"\(HTTP/{version}\); retrying it once on another worker")


def test_get_load_loses_nothing_while_workers_are_killed(config_server):
    """A few keep-alive clients GET a slow script while a busy PHP worker is SIGKILLed every ~2 s,
    5 times: every request gets its 200; the front's counters and log show retries did happen."""
    server = config_server(workers=3)
    done = threading.Event()
    failures: list[str] = []
    served = [0] * CLIENTS

    def client(n: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for i in range(MAX_REQUESTS):
                if done.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = c.get(f"/sleep.php?ms=100&client={n}&i={i}")
                except httpx.HTTPError as e:
                    failures.append(f"client {n} request {i}: {e!r}")
                    continue
                if r.status_code != 200:
                    failures.append(f"client {n} request {i}: {r.status_code} {r.text[:100]!r}")
                served[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    killed: list[int] = []

    def victims() -> list[int]:
        """Workers holding a request (so the kill lands mid-request: sleep.php sleeps 100 ms) that
        is not a retry already (every URI is unique): a second crash would rightly be a 502."""
        retries = server.log
        return [w["pid"] for w in admin_status(server)["workers"]
                if w["busy"] and w["state"] == "ready" and w["pid"] not in killed
                and f"answering GET {w['current_uri']} (" not in retries]

    try:
        for _ in range(KILLS):
            time.sleep(KILL_EVERY)  # pacing the kills, not waiting for anything
            victim = wait_until(victims, what="a busy worker", interval=0.01)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == [], failures
    assert min(served) > 0, served
    settled(server, 3, KILLS)

    def agreed() -> tuple[int, dict] | None:
        """The retries the fronts logged and those /metrics counted (sent every second) agree."""
        logged, now = server.log.count("retrying it once on another worker"), scrape(server)
        return (logged, now) if value(now, "askr_requests_retried_total") == logged else None

    retried, counted = wait_until(agreed, what="the retry counters to reach /metrics")
    assert 1 <= retried <= KILLS, server.log  # a kill just after a response was written costs nothing
    assert value(counted, "askr_requests_retry_failed_total") == 0
    assert value(counted, "askr_php_worker_crashes_total") == KILLS


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_a_request_that_kills_every_worker_costs_two_and_gets_one_502(config_server, mode):
    worker = {"script": str(WORKER_SCRIPT)} if mode == "worker" else None
    server = config_server(workers=2, worker=worker)
    resp = httpx.get(server.url + "/crash.php", timeout=30)
    assert resp.status_code == 502
    after = settled(server, 2, 2)
    assert after["restarts"] == 2, after  # the request's first worker and its retry's: no more
    dead = r"PHP worker pid (\d+) \(worker id \d+\) died"
    first = server.wait_for_log(dead + r" before answering GET /crash\.php \(HTTP/1\.1\); retrying it once "
                                r"on another worker")
    second = server.wait_for_log(dead + r" on GET /crash\.php \(HTTP/1\.1\) too: the retry also failed; "
                                 r"answering 502")
    assert first.group(1) != second.group(1)
    assert server.log.count("retrying it once") == 1
    samples = metrics_once(server, "askr_requests_retry_failed_total", 1)
    assert value(samples, "askr_requests_retried_total") == 1
    assert value(samples, "askr_php_worker_crashes_total") == 2
    assert value(samples, "askr_http_requests_total", code="5xx") == 1
    assert httpx.get(server.url + "/hello.php", timeout=30).text == "hello"  # the pool healed


def test_retry_crashed_never_gives_the_502_at_once(config_server):
    server = config_server(workers=2, server={"retry_crashed": "never"})
    resp = httpx.get(server.url + "/crash.php", timeout=30)
    assert resp.status_code == 502
    after = settled(server, 2, 1)
    assert after["restarts"] == 1, after  # one worker lost, as under php-fpm
    server.wait_for_log(r"PHP worker pid \d+ \(worker id \d+\) died while handling GET /crash\.php "
                        r"\(HTTP/1\.1\); answering 502")
    assert "retrying it once" not in server.log
    samples = metrics_once(server, "askr_http_requests_total", 1, code="5xx")
    assert value(samples, "askr_requests_retried_total") == 0
    assert value(samples, "askr_php_worker_crashes_total") == 1
