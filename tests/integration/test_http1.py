"""HTTP/1.1 on the wire, with raw sockets: connection reuse, pipelining, request framing,
100-continue, HEAD, Connection: close, streaming, and rejection of malformed/smuggled requests."""

from __future__ import annotations

import email.utils
import hashlib
import os
import shutil
import subprocess
import threading
import time
import urllib.parse

import pytest
from askrtest import VERSION
from rawhttp import Conn, one_shot, request_bytes


def test_keepalive_reuses_connection(php_app):
    with Conn(php_app.host, php_app.port) as c:
        ports = []
        for i in range(3):
            resp = c.request("GET", f"/info.php?i={i}")
            assert resp.status == 200
            assert (resp.header("connection") or "").lower() != "close"
            body = resp.json()
            assert body["get"] == {"i": str(i)}
            ports.append(body["server"]["REMOTE_PORT"])
        assert ports == [str(c.local_port)] * 3


def test_pipelining_three_requests_in_one_send(php_app):
    with Conn(php_app.host, php_app.port) as c:
        c.send(
            request_bytes("GET", "/index.php?n=1")
            + request_bytes("GET", "/style.css")
            + request_bytes("GET", "/index.php?n=3")
        )
        first, second, third = (c.read_final_response() for _ in range(3))
        assert first.status == 200
        assert first.json()["get"] == {"n": "1"}
        assert second.status == 200
        assert second.body == b"body { color: #333; }\n"
        assert third.status == 200
        assert third.json()["get"] == {"n": "3"}


def test_pipelining_keeps_order_when_first_is_slowest(php_app):
    """Two workers could finish /hello.php before /sleep.php: responses must still be in order."""
    with Conn(php_app.host, php_app.port) as c:
        c.send(
            request_bytes("GET", "/sleep.php?ms=400")
            + request_bytes("GET", "/hello.php")
            + request_bytes("POST", "/info.php", body=b"third")
        )
        first, second, third = (c.read_final_response() for _ in range(3))
        assert first.status == 200
        assert first.json()["slept_ms"] == 400
        assert second.status == 200
        assert second.body == b"hello"
        assert third.status == 200
        assert third.json()["input"] == "third"


def test_chunked_request_body(php_app):
    body = b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    req = request_bytes(
        "POST", "/info.php", [("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")], body
    )
    with Conn(php_app.host, php_app.port) as c:
        c.send(req)
        resp = c.read_final_response()
        assert resp.status == 200, resp
        assert resp.json()["input"] == "hello world"
        # the body was framed correctly: the connection is usable for the next request
        assert c.request("GET", "/hello.php").body == b"hello"


def test_chunked_request_body_large_and_split_across_sends(php_app):
    data = os.urandom(100 * 1024).hex().encode()  # 200 KB
    with Conn(php_app.host, php_app.port) as c:
        c.send(
            request_bytes(
                "POST", "/info.php", [("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain")]
            )
        )
        for i in range(0, len(data), 8192):
            piece = data[i : i + 8192]
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        resp = c.read_final_response()
        assert resp.status == 200, resp
        got = resp.json()["input"].encode()
        assert len(got) == len(data)
        assert hashlib.md5(got).hexdigest() == hashlib.md5(data).hexdigest()


def test_expect_100_continue(php_app):
    with Conn(php_app.host, php_app.port) as c:
        c.send(
            request_bytes(
                "POST",
                "/info.php",
                [("Expect", "100-continue"), ("Content-Length", "11"), ("Content-Type", "text/plain")],
            )
        )
        interim = c.read_response()  # we send no body until the server asks for it
        assert interim.status == 100
        c.send(b"hello world")
        final = c.read_response()
        assert final.status == 200
        assert final.json()["input"] == "hello world"


def test_expect_100_continue_over_limit_gets_413_without_100(php_app):
    with Conn(php_app.host, php_app.port) as c:
        c.send(
            request_bytes(
                "POST", "/info.php", [("Expect", "100-continue"), ("Content-Length", str(9 * 1024 * 1024))]
            )
        )
        first = c.read_response()
        assert first.status == 413, first


def test_expect_100_continue_with_curl(php_app, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    f = tmp_path / "body.txt"
    f.write_bytes(b"x" * 5000)
    out = subprocess.run(
        [
            "curl", "-sS", "-v", "--max-time", "30", "--expect100-timeout", "20",
            "-H", "Expect: 100-continue", "-H", "Content-Type: text/plain",
            "--data-binary", f"@{f}", f"{php_app.url}/info.php",
        ],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert b"< HTTP/1.1 100 Continue" in out.stderr
    assert b"< HTTP/1.1 200" in out.stderr
    assert out.stdout.count(b"x") >= 5000


def test_head_has_no_body(php_app):
    with Conn(php_app.host, php_app.port) as c:
        get = c.request("GET", "/hello.php")
        head = c.request("HEAD", "/hello.php")
        assert head.status == 200
        assert head.body == b""
        if head.header("content-length") is not None:
            assert head.header("content-length") == get.header("content-length") == "5"
        # had the server sent body bytes after the HEAD response, this would not parse
        after = c.request("GET", "/hello.php")
        assert after.status == 200
        assert after.body == b"hello"


def test_connection_close_honoured(php_app):
    resp, closed = one_shot(
        php_app.host, php_app.port, request_bytes("GET", "/hello.php", [("Connection", "close")])
    )
    assert resp.status == 200
    assert resp.body == b"hello"
    assert (resp.header("connection") or "").lower() == "close"
    assert closed


def test_http10_without_keepalive_closes(php_app):
    resp, closed = one_shot(php_app.host, php_app.port, b"GET /hello.php HTTP/1.0\r\n\r\n")
    assert resp.status == 200
    assert resp.version == "HTTP/1.1" or resp.version == "HTTP/1.0"
    assert resp.body == b"hello"
    assert not resp.chunked
    assert closed


def test_date_and_server_headers(php_app):
    with Conn(php_app.host, php_app.port) as c:
        for target in ("/hello.php", "/style.css", "/nope/route"):
            resp = c.request("GET", target)
            assert resp.header("server") == f"askr/{VERSION}"
            date = resp.header("date")
            assert date is not None
            assert date.endswith(" GMT")
            parsed = email.utils.parsedate_to_datetime(date)
            assert abs(parsed.timestamp() - time.time()) < 3600  # a clock sanity check, not latency


def test_streaming_arrives_incrementally(php_app, tmp_path):
    """stream.php cannot produce chunk i until the test has seen chunk i-1 and opens gate i."""
    gate = tmp_path / "gate"
    q = urllib.parse.urlencode({"gate": str(gate), "n": 3})
    with Conn(php_app.host, php_app.port) as c:
        c.send(request_bytes("GET", f"/stream.php?{q}"))
        resp = c.read_head(timeout=20)
        assert resp.status == 200
        assert resp.chunked, "no Content-Length from PHP: the response must be chunked"
        assert resp.header("content-length") is None
        seen = b""
        for i in (1, 2, 3):
            for _ in range(50):
                if f"chunk-{i}\n".encode() in seen:
                    break
                seen += c.read_chunk(timeout=20)
            assert seen.endswith(f"chunk-{i}\n".encode()), seen
            if i < 3:
                (tmp_path / f"gate-{i + 1}").write_text("go")
        assert c.read_chunk(timeout=20) == b""  # last chunk
        assert seen == b"chunk-1\nchunk-2\nchunk-3\n"


def test_streaming_timed_chunks_complete(php_app):
    with Conn(php_app.host, php_app.port) as c:
        resp = c.request("GET", "/stream.php?n=3&ms=300")
        assert resp.status == 200
        assert resp.body == b"chunk-1\nchunk-2\nchunk-3\n"


MALFORMED = {
    "garbage_request_line": b"GARBAGE\r\n\r\n",
    "cl_and_te": b"POST /info.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad_chunk_size": b"POST /info.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk_longer_than_size": b"POST /info.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nhello\r\n0\r\n\r\n",
    "non_numeric_content_length": b"POST /info.php HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "negative_content_length": b"POST /info.php HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "conflicting_content_lengths": b"POST /info.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
    b"Content-Length: 4\r\n\r\nabcd",
    "space_before_colon": b"POST /info.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
    b"0\r\n\r\n",
    "space_in_header_name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    # RFC 9112 3.2: a server MUST answer 400 to a request with no Host or more than one Host.
    "missing_host": b"GET /hello.php HTTP/1.1\r\n\r\n",
    "duplicate_host": b"GET /hello.php HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    "te_not_ending_in_chunked": b"POST /info.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    "unsupported_version": b"GET /hello.php HTTP/2.0\r\nHost: x\r\n\r\n",
}


# RFC 9112 6.1 allows 501 for a transfer coding the server does not implement.
REJECT = {"te_not_ending_in_chunked": (400, 501), "unsupported_version": (505, 400)}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_400_and_close(php_app, name):
    with Conn(php_app.host, php_app.port) as c:
        c.try_send(MALFORMED[name])
        resp = c.read_final_response()
        assert resp.status in REJECT.get(name, (400,)), resp
        assert c.wait_closed(), "the connection must be closed after a 400"


def smuggle_cases(marker: str) -> dict[str, bytes]:
    inner = f"GET /mark.php?f={urllib.parse.quote(marker)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    cl_te_body = b"0\r\n\r\n" + inner
    te_cl_chunk = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    return {
        "CL.TE": b"POST /hello.php HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(cl_te_body) + cl_te_body,
        "TE.CL": b"POST /hello.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 4\r\n\r\n" + te_cl_chunk,
        "TE obfuscated": b"POST /hello.php HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n" % len(cl_te_body) + cl_te_body,
        "CL.CL": b"POST /hello.php HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
        % len(inner)
        + inner,
    }


@pytest.mark.parametrize("case", ["CL.TE", "TE.CL", "TE obfuscated", "CL.CL"])
def test_smuggled_request_never_reaches_php(php_app, tmp_path, case):
    marker = tmp_path / "smuggled"
    data = smuggle_cases(str(marker))[case]
    with Conn(php_app.host, php_app.port) as c:
        c.try_send(data)
        resp = c.read_final_response()
        assert resp.status in ((400, 501) if case == "TE obfuscated" else (400,)), resp
        assert c.wait_closed(), "only one response (the rejection), then close"
    # a normal request afterwards, so a queued smuggled request would have run by now
    check = tmp_path / "normal"
    with Conn(php_app.host, php_app.port) as c:
        assert c.request("GET", f"/mark.php?f={urllib.parse.quote(str(check))}").status == 200
    assert check.exists()
    assert not marker.exists(), f"{case}: the smuggled request reached PHP"


def test_large_php_response_intact(php_app):
    kb = 4096  # 4 MB through the worker channel and the front
    with Conn(php_app.host, php_app.port) as c:
        resp = c.request("GET", f"/big.php?kb={kb}")
        assert resp.status == 200
        assert len(resp.body) == kb * 1024
        filler = b"abcdefghijklmnop" * 64
        expected = b"".join(b"%06d" % i + filler[6:] for i in range(kb))
        assert resp.body == expected
        assert c.request("GET", "/hello.php").body == b"hello"  # framing intact afterwards


def test_concurrent_clients_get_their_own_responses(php_app):
    """8 keep-alive clients x 10 requests at once: every response belongs to its request."""
    errors: list[str] = []

    def client(n: int) -> None:
        try:
            with Conn(php_app.host, php_app.port, timeout=60) as c:
                for i in range(10):
                    resp = c.request("POST", f"/info.php?c={n}&i={i}", body=f"{n}-{i}".encode())
                    body = resp.json()
                    if resp.status != 200 or body["get"] != {"c": str(n), "i": str(i)}:
                        errors.append(f"client {n} request {i}: {resp!r}")
                    elif body["input"] != f"{n}-{i}" or body["server"]["REMOTE_PORT"] != str(c.local_port):
                        errors.append(f"client {n} request {i}: wrong body/port {body['input']!r}")
        except Exception as e:  # reported below, with the others
            errors.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
