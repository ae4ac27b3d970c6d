"""Failures stay small: a PHP fatal is one 500, a killed worker one 502 (a GET is retried on another
worker instead: test_retry_crashed.py), and the pool heals."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from askrtest import TESTS
from rawhttp import Conn, request_bytes

WORKER_SCRIPT = TESTS / "php" / "worker.php"  # tests/php/app in worker mode


def get(server, target: str):
    with Conn(server.host, server.port, timeout=30) as c:
        return c.request("GET", target)


def worker_pid(server) -> int:
    resp = get(server, "/pid.php")
    assert resp.status == 200, resp
    return int(resp.body)


def test_fatal_is_500_then_next_request_200(config_server):
    server = config_server(workers=1)
    resp = get(server, "/fatal.php")
    assert resp.status == 500, resp
    after = get(server, "/hello.php")
    assert after.status == 200
    assert after.body == b"hello"


def test_fatal_on_keepalive_connection_then_200(config_server):
    server = config_server(workers=1)
    with Conn(server.host, server.port, timeout=30) as c:
        assert c.request("GET", "/fatal.php").status == 500
        again = c.request("GET", "/info.php?x=1")
        assert again.status == 200
        assert again.json()["get"] == {"x": "1"}


def test_fatal_does_not_cost_the_worker(config_server):
    """An uncaught Error is an ordinary bailout: the same worker keeps serving."""
    server = config_server(workers=1)
    before = worker_pid(server)
    for _ in range(3):
        assert get(server, "/fatal.php").status == 500
    assert worker_pid(server) == before


def test_kill_9_mid_post_is_502_then_200(config_server, gate):
    """A POST is never retried ([server] retry_crashed): PHP may have acted on it before dying."""
    server = config_server(workers=1)
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("POST", gate.target, {"Content-Type": "text/plain"}, b"payload"))
        (pid,) = gate.wait_started(1)
        os.kill(pid, signal.SIGKILL)
        resp = c.read_final_response()
        assert resp.status == 502, resp
    server.wait_for_log(rf"PHP worker pid {pid} \(worker id \d+\) died while handling POST /hold\.php")
    for _ in range(3):
        new_pid = worker_pid(server)  # the replacement worker; the front waits for it
        assert new_pid != pid
    assert get(server, "/hello.php").body == b"hello"


def test_kill_9_affects_only_its_own_request(config_server, gate):
    server = config_server(workers=2)
    a = Conn(server.host, server.port, timeout=30)
    b = Conn(server.host, server.port, timeout=30)
    try:  # POSTs: a GET would be retried, and both would be 200
        a.send(request_bytes("POST", gate.target, {"Content-Type": "text/plain"}, b"a"))
        b.send(request_bytes("POST", gate.target, {"Content-Type": "text/plain"}, b"b"))
        pids = gate.wait_started(2)
        assert len(pids) == 2
        os.kill(pids[0], signal.SIGKILL)
        gate.open()
        results = {}
        for conn in (a, b):
            resp = conn.read_final_response()
            results[resp.status] = resp
        assert sorted(results) == [200, 502], results
        assert results[200].json()["pid"] == pids[1]
    finally:
        a.close()
        b.close()
    assert get(server, "/hello.php").body == b"hello"


def test_max_requests_recycles_workers(config_server):
    """At its quota a worker gets a replacement and serves on until that one is ready (so
    capacity never dips): each retired worker served at least max_requests requests."""
    server = config_server(workers=1, server={"max_requests": 2})
    pids: list[int] = []
    while len(set(pids)) < 3 and len(pids) < 2000:
        pids.append(worker_pid(server))
    distinct = list(dict.fromkeys(pids))
    assert len(distinct) == 3, pids
    for retired in distinct[:2]:
        assert pids.count(retired) >= 2, pids


def test_kill_9_after_headers_aborts_the_response(config_server, tmp_path):
    """Once the head is out, a vanished worker must not look like a complete response: no final
    chunk, the connection is aborted; the next request is served by a replacement."""
    server = config_server(workers=1)
    gate = tmp_path / "gate"
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("GET", f"/stream.php?n=3&gate={gate}"))
        head = c.read_head()
        assert head.status == 200
        assert head.chunked
        pid = int(head.header("x-worker-pid") or 0)
        assert pid > 0
        assert c.read_chunk() == b"chunk-1\n"
        os.kill(pid, signal.SIGKILL)
        rest = c.read_to_eof()
        assert not rest.endswith(b"0\r\n\r\n"), f"aborted response was terminated cleanly: {rest!r}"
    assert worker_pid(server) != pid


def test_client_leaving_an_endless_stream_frees_the_worker(config_server):
    """A client that disconnects mid-stream must not leave its worker streaming for nobody."""
    server = config_server(workers=1)
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("GET", "/forever.php"))
        seen = b""
        while seen.count(b"tick") < 3:
            chunk = c.sock.recv(65536)
            assert chunk, "stream ended early"
            seen += chunk
    # With one worker, this only answers once the streaming worker has let go.
    assert get(server, "/hello.php").body == b"hello"
    server.wait_for_log(r"php#0 \(pid \d+\) (exited|killed)")


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_request_timeout_answers_504_and_replaces_the_worker(config_server, mode):
    """Wall-clock request_timeout: sleep() does not count as PHP execution time on Debian (CPU
    time), so askr itself answers 504 and kills the worker; a fresh one serves the next request."""
    worker = {"script": str(WORKER_SCRIPT)} if mode == "worker" else None
    server = config_server(workers=1, server={"request_timeout": 1}, worker=worker)
    before = worker_pid(server)
    resp = get(server, "/sleep.php?ms=20000")
    assert resp.status == 504
    server.wait_for_log(r"request timeout: GET /sleep.php\?ms=20000 ran longer than 1 s")
    server.wait_for_log(rf"php#0 \(pid {before}\) exceeded request_timeout on /sleep.php\?ms=20000; "
                        "killing it")
    assert worker_pid(server) != before
    assert "retrying it once" not in server.log  # a kill for request_timeout is not a crash


def test_graceful_timeout_cuts_what_is_still_running(config_server):
    """SIGTERM waits graceful_timeout for in-flight requests, then cuts them off and says so."""
    server = config_server(workers=1, server={"graceful_timeout": 1})
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("GET", "/sleep.php?ms=20000"))
        for _ in range(500):  # until the worker holds the request (bounded)
            if httpx.get(server.admin_url + "/api/status", timeout=30).json()["busy"] == 1:
                break
        server.proc.send_signal(signal.SIGTERM)
        leftover = c.read_to_eof(timeout=20)  # cut off: a 502 if it makes it out before the exit
        assert leftover == b"" or leftover.startswith(b"HTTP/1.1 502 "), leftover
    assert server.proc.wait(30) == 0
    server.wait_for_log(r"graceful timeout: closing 1 connections still open")
    server.wait_for_log(r"was still running a request at shutdown; killing it")
