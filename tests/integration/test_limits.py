"""[limits]: request line / head / header count / body size limits, timeouts, and the queue bound.

Defaults are checked on the shared `php_app` server; small configured limits on a server started
from a tmp askr.toml. Slow clients are paced deliberately, every loop is bounded.
"""

from __future__ import annotations

import selectors

import pytest
from askrtest import write_config
from rawhttp import Conn, one_shot, request_bytes

LIMITS = {
    "max_body_size": "64K",
    "max_request_line": "1K",
    "max_header_size": "4K",
    "max_headers": 20,
    "header_timeout": 1,
    "body_timeout": 1,
    "body_min_rate": "1K",
    "keepalive_timeout": 1,
}


@pytest.fixture(scope="module")
def limited(askr_module_server, tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("limited"), workers=2, limits=LIMITS)
    return askr_module_server("--config", path)


def get(server, target: str, headers=None):
    with Conn(server.host, server.port) as c:
        return c.request("GET", target, headers)


# -- defaults ------------------------------------------------------------------------------------


def test_default_request_line_limit_8k(php_app):
    assert get(php_app, "/?" + "a" * 7000).status == 200
    resp, _ = one_shot(php_app.host, php_app.port, request_bytes("GET", "/?" + "a" * 9000))
    assert resp.status == 414


def test_default_header_size_limit_16k(php_app):
    assert get(php_app, "/hello.php", [("X-A", "a" * 7000), ("X-B", "b" * 7000)]).status == 200
    resp, _ = one_shot(
        php_app.host,
        php_app.port,
        request_bytes("GET", "/hello.php", [("X-A", "a" * 9000), ("X-B", "b" * 9000)]),
    )
    assert resp.status == 431


def test_default_header_count_limit_100(php_app):
    assert get(php_app, "/hello.php", [(f"X-H{i}", "v") for i in range(90)]).status == 200
    resp, _ = one_shot(
        php_app.host, php_app.port, request_bytes("GET", "/hello.php", [(f"X-H{i}", "v") for i in range(110)])
    )
    assert resp.status == 431


def test_default_body_limit_8m(php_app):
    with Conn(php_app.host, php_app.port) as c:
        c.send(request_bytes("POST", "/info.php", [("Content-Length", str(8 * 1024 * 1024 + 1))]))
        resp = c.read_final_response()  # no body was sent: the answer cannot wait for it
        assert resp.status == 413


# -- configured limits ---------------------------------------------------------------------------


def test_request_line_limit(limited):
    assert get(limited, "/?" + "a" * 900).status == 200
    resp, _ = one_shot(limited.host, limited.port, request_bytes("GET", "/?" + "a" * 1100))
    assert resp.status == 414


def test_header_size_limit(limited):
    assert get(limited, "/hello.php", [("X-Big", "a" * 3000)]).status == 200
    resp, _ = one_shot(
        limited.host, limited.port, request_bytes("GET", "/hello.php", [("X-Big", "a" * 5000)])
    )
    assert resp.status == 431


def test_header_count_limit(limited):
    assert get(limited, "/hello.php", [(f"X-H{i}", "v") for i in range(15)]).status == 200
    resp, _ = one_shot(
        limited.host, limited.port, request_bytes("GET", "/hello.php", [(f"X-H{i}", "v") for i in range(25)])
    )
    assert resp.status == 431


def test_body_at_limit_is_accepted(limited):
    body = b"z" * (64 * 1024)
    with Conn(limited.host, limited.port) as c:
        resp = c.request("POST", "/info.php", [("Content-Type", "text/plain")], body)
        assert resp.status == 200
        assert len(resp.json()["input"]) == 64 * 1024


def test_content_length_over_limit_413_without_body(limited):
    """The body is never sent; a server that waited for it would hit body_timeout (408)."""
    with Conn(limited.host, limited.port) as c:
        c.send(request_bytes("POST", "/info.php", [("Content-Length", str(64 * 1024 + 1))]))
        resp = c.read_final_response()
        assert resp.status == 413, resp


def test_content_length_far_over_limit_413(limited):
    with Conn(limited.host, limited.port) as c:
        c.send(request_bytes("POST", "/upload.php", [("Content-Length", str(10**10))]))
        assert c.read_final_response().status == 413


def test_chunked_body_over_limit_413_before_the_end(limited):
    """66 KB of chunks and no terminating chunk: the limit, not the end of the body, triggers 413."""
    with Conn(limited.host, limited.port) as c:
        c.send(request_bytes("POST", "/info.php", [("Transfer-Encoding", "chunked")]))
        piece = b"y" * 6144
        for _ in range(11):
            if not c.try_send(b"%x\r\n" % len(piece) + piece + b"\r\n"):
                break
        resp = c.read_final_response()
        assert resp.status == 413, resp


def test_slowloris_head_gets_408(limited):
    """header_timeout bounds the whole head, not the gap between reads: trickled header lines
    (one every 0.3 s, for at most 15 s) must still be cut off."""
    with Conn(limited.host, limited.port) as c:
        c.send(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n")
        for i in range(50):
            if not c.try_send(b"X-Slow-%d: v\r\n" % i):
                break
            if not c.received_nothing_for(0.3):
                break
        resp = c.read_final_response()
        assert resp.status == 408, resp
        assert c.wait_closed()


def test_idle_connection_without_request_is_closed(limited):
    with Conn(limited.host, limited.port) as c:
        data = c.read_to_eof(timeout=10)
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data


def test_slow_body_gets_408(limited):
    """body_min_rate 1K over body_timeout 1 s: 10 bytes every 0.2 s (50 B/s) is too slow."""
    with Conn(limited.host, limited.port) as c:
        c.send(
            request_bytes("POST", "/info.php", [("Content-Length", "60000"), ("Content-Type", "text/plain")])
        )
        for _ in range(75):
            if not c.try_send(b"x" * 10):
                break
            if not c.received_nothing_for(0.2):
                break
        resp = c.read_final_response()
        assert resp.status == 408, resp
        assert c.wait_closed()


def test_fast_body_is_not_cut_off(limited):
    body = b"q" * 60000
    with Conn(limited.host, limited.port) as c:
        resp = c.request("POST", "/info.php", [("Content-Type", "text/plain")], body)
        assert resp.status == 200
        assert len(resp.json()["input"]) == 60000


def test_idle_keepalive_connection_closed(limited):
    """keepalive_timeout = 1: the server closes an idle connection (the default, 15 s, would not
    within this 10 s wait)."""
    with Conn(limited.host, limited.port) as c:
        assert c.request("GET", "/hello.php").body == b"hello"
        assert c.wait_closed(timeout=10)


def test_default_keepalive_keeps_connection_open(php_app):
    with Conn(php_app.host, php_app.port) as c:
        assert c.request("GET", "/hello.php").status == 200
        assert c.received_nothing_for(2.0)  # deliberate: still open well inside the 15 s default
        assert c.request("GET", "/hello.php").body == b"hello"


# -- queue bound ---------------------------------------------------------------------------------


def test_queue_full_503_with_retry_after(config_server, gate):
    # one front: max_queue is counted by each front, and with two the requests may land apart
    server = config_server(workers=1, server={"fronts": 1}, limits={"max_queue": 1})
    held = Conn(server.host, server.port)
    b = Conn(server.host, server.port)
    c = Conn(server.host, server.port)
    try:
        held.send(request_bytes("GET", gate.target))
        gate.wait_started(1)  # the only worker is busy
        b.send(request_bytes("GET", gate.target))
        c.send(request_bytes("GET", gate.target))
        # one of b/c waits in the queue (max_queue = 1); the other must be refused right away
        sel = selectors.DefaultSelector()
        sel.register(b.sock, selectors.EVENT_READ, b)
        sel.register(c.sock, selectors.EVENT_READ, c)
        ready = sel.select(timeout=20)
        sel.close()
        assert ready, "neither extra request was answered while the worker was busy"
        refused = ready[0][0].data
        waiting = c if refused is b else b
        resp = refused.read_final_response()
        assert resp.status == 503, resp
        retry = resp.header("retry-after")
        assert retry is not None
        assert retry.isdigit()
        gate.open()
        first = held.read_final_response()
        assert first.status == 200
        assert first.json()["released"] is True
        queued = waiting.read_final_response()
        assert queued.status == 200
        assert queued.json()["released"] is True
    finally:
        for conn in (held, b, c):
            conn.close()


def test_413_unread_body_is_never_parsed_as_a_request(limited, tmp_path):
    """A refused body must not be read as the next request on the connection (smuggling)."""
    marker = tmp_path / "from-body"
    inner = f"GET /mark.php?f={marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    body = inner + b"p" * (70 * 1024 - len(inner))
    with Conn(limited.host, limited.port) as c:
        c.try_send(request_bytes("POST", "/hello.php", [("Content-Length", str(len(body)))]) + body)
        resp = c.read_final_response()
        assert resp.status == 413, resp
        try:
            rest = c.read_to_eof(timeout=10)
        except TimeoutError:
            rest = c.buf
        assert b"HTTP/1.1" not in rest, f"a second response followed the 413: {rest[:300]!r}"
    with Conn(limited.host, limited.port) as c:  # the server is fine, and PHP never saw the body
        assert c.request("GET", "/hello.php").body == b"hello"
    assert not marker.exists()


def test_body_that_stalls_after_a_fast_start_gets_408(limited):
    """The rate is enforced per body_timeout window, not averaged since the start: 50 KB at once,
    then nothing, must be cut off (an average would stay above 1K/s for ~50 s)."""
    with Conn(limited.host, limited.port) as c:
        c.send(
            request_bytes("POST", "/info.php", [("Content-Length", "60000"), ("Content-Type", "text/plain")])
            + b"f" * 50000
        )
        resp = c.read_final_response()  # within the 20 s socket timeout, or the test fails
        assert resp.status == 408, resp
        assert c.wait_closed()


def test_slow_head_on_a_reused_connection_gets_408(limited):
    """header_timeout also bounds the second request's head on a keep-alive connection."""
    with Conn(limited.host, limited.port) as c:
        assert c.request("GET", "/hello.php").body == b"hello"
        c.send(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n")
        for i in range(50):
            if not c.try_send(b"X-Slow-%d: v\r\n" % i):
                break
            if not c.received_nothing_for(0.3):
                break
        resp = c.read_final_response()
        assert resp.status == 408, resp
        assert c.wait_closed()
