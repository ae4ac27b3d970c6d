"""One request's life over both HTTP versions: bytes in through a fake transport, a fake worker
pool standing in for PHP, bytes out decoded by a real client codec (httptools for HTTP/1.1, the
`h2` package's client for HTTP/2). Every limit and failure answer is checked on both versions;
nothing here opens a socket or starts a process, so the whole module runs in well under a second.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httptools
import pytest
from codings import incremental_decoder

import askr
from askr import config
from askr.bridge import wire
from askr.bridge.pool import Exchange
from askr.front.compression import compression_of
from askr.front.context import FrontContext
from askr.front.http1 import Http1Connection
from askr.front.http2 import Http2Connection
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Router

VERSIONS = ["1.1", "2"]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.out += data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


class FakeChannel:
    """What a stream sees of the worker that took its exchange."""

    pid = 4242
    worker_id = 0

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.reading = True
        self.exchange: Exchange | None = None

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True


class FakePool:
    """Takes exchanges instead of a PHP worker queue; `full` makes submit refuse (503)."""

    def __init__(self) -> None:
        self.submitted: list[Exchange] = []
        self.full = False
        self.timeouts: list[bytes] = []

    def submit(self, exchange: Exchange, now: float = 0.0) -> bool:
        if self.full:
            return False
        self.submitted.append(exchange)
        return True

    def resubmit(self, exchange: Exchange) -> None:
        """A retry after a crash: queued even when the wait is full."""
        self.submitted.append(exchange)

    def take(self, exchange: Exchange) -> FakeChannel:
        """A worker takes `exchange`, as WorkerPool.taken does."""
        channel = FakeChannel()
        channel.exchange = exchange
        exchange.channel = channel  # type: ignore[assignment]
        if exchange.frames:
            channel.sent.extend(exchange.frames)
            exchange.frames = []
        if exchange.on_started is not None:
            exchange.on_started(exchange)
        return channel

    def timed_out(self, exchange: Exchange, method: bytes, url: bytes, seconds: float) -> None:
        self.timeouts.append(url)


@dataclass
class Response:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)  # every header, repeats kept
    body: bytes = b""
    informational: list[tuple[int, dict[bytes, bytes]]] = field(default_factory=list)
    complete: bool = False
    reset: bool = False


class H1Client:
    """Requests as bytes; responses decoded with httptools' response parser."""

    def __init__(self, conn: Http1Connection, transport: FakeTransport):
        self.conn, self.transport = conn, transport
        self.responses: list[Response] = []
        self._current = Response()
        self.responses_informational: list[tuple[int, dict[bytes, bytes]]] = []
        self.parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers[name.lower()] = value
        self._current.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._current.status = self.parser.get_status_code()
        if self._current.status < 200:  # a 1xx: its own message, then the final response
            self.responses_informational.append((self._current.status, self._current.headers))
            self._current = Response()

    def on_body(self, body: bytes) -> None:
        self._current.body += body

    def on_message_complete(self) -> None:
        if self._current.status >= 200:
            self._current.complete = True
            self._current.informational = self.responses_informational
            self.responses_informational = []
            self.responses.append(self._current)
            self._current = Response()

    def send(self, method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes = b"",
             end: bool = True) -> int:
        lines = [f"{method} {path} HTTP/1.1", "Host: example.test", *(f"{k}: {v}" for k, v in headers)]
        if (body or not end) and not any(k.lower() == "content-length" for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        self.conn.data_received(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return 0

    def more_body(self, _stream: int, data: bytes, end: bool = False) -> None:
        self.conn.data_received(data)

    def response(self, _stream: int = 0) -> Response:
        data = self.transport.take()
        if data:
            self.parser.feed_data(data)
        return self.responses[-1] if self.responses else self._current

    def cut(self) -> bool:
        """The server cut the connection (abort or close)."""
        return self.transport.aborted or self.transport.closed


class H2Client:
    """Requests through the `h2` client; responses collected from its events."""

    def __init__(self, conn: Http2Connection, transport: FakeTransport):
        self.conn, self.transport = conn, transport
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.initiate_connection()
        self.by_stream: dict[int, Response] = {}
        self.goaway = False
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.conn.data_received(data)
        run_pending(self.conn)
        self._read()

    def _read(self) -> None:
        data = self.transport.take()
        if not data:
            return
        for event in self.h2.receive_data(data):
            sid = getattr(event, "stream_id", 0)
            resp = self.by_stream.setdefault(sid, Response()) if sid else None
            if isinstance(event, h2.events.InformationalResponseReceived):
                headers = dict(event.headers)
                resp.informational.append((int(headers[b":status"]), headers))  # type: ignore[union-attr]
            elif isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
                resp.status = int(headers.pop(b":status"))  # type: ignore[union-attr]
                resp.headers = headers  # type: ignore[union-attr]
                resp.fields = [(k, v) for k, v in event.headers if k != b":status"]  # type: ignore[union-attr]
            elif isinstance(event, h2.events.DataReceived):
                resp.body += event.data  # type: ignore[union-attr]
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.StreamEnded):
                resp.complete = True  # type: ignore[union-attr]
            elif isinstance(event, h2.events.StreamReset):
                resp.reset = True  # type: ignore[union-attr]
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = True
        out = self.h2.data_to_send()
        if out:
            self.conn.data_received(out)
            run_pending(self.conn)

    def send(self, method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes = b"",
             end: bool = True) -> int:
        sid = self.h2.get_next_available_stream_id()
        block = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "example.test"),
                 *((k.lower(), v) for k, v in headers)]
        self.h2.send_headers(sid, [(k.encode(), v.encode()) for k, v in block], end_stream=end and not body)
        if body:
            self.h2.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def more_body(self, sid: int, data: bytes, end: bool = False) -> None:
        self.h2.send_data(sid, data, end_stream=end)
        self.flush()

    def response(self, sid: int = 1) -> Response:
        run_pending(self.conn)
        self._read()
        return self.by_stream.get(sid, Response())

    def cut(self) -> bool:
        return self.transport.aborted or self.transport.closed


def run_pending(conn: object) -> None:
    """HTTP/2 writes once per loop turn (call_soon): run what is scheduled."""
    loop = conn.loop  # type: ignore[attr-defined]
    if getattr(conn, "write_scheduled", False):
        conn._flush_output()  # type: ignore[attr-defined]
    del loop


@dataclass
class Setup:
    client: H1Client | H2Client
    conn: Http1Connection | Http2Connection
    pool: FakePool
    ctx: FrontContext

    def send_and_take(self, *request: Any, **options: Any) -> tuple[int, FakeChannel]:
        """The client sends a request (client.send's arguments) and a worker takes it at once:
        its stream id and the worker's channel."""
        sid = self.client.send(*request, **options)
        return sid, self.pool.take(self.pool.submitted[-1])


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.php").write_text("<?php echo 'hi';")
    (root / "style.css").write_text("body{}")
    return root


def make(version: str, docroot: Path, loop: asyncio.AbstractEventLoop, server: dict | None = None,
         **limits: object) -> Setup:
    toml = docroot.parent / "askr.toml"
    extra = "".join(f"{k} = {v!r}\n" for k, v in (server or {}).items()).replace("'", '"')
    lines = [f'[server]\nroot = "{docroot}"\nworkers = 1\nrequest_timeout = 5\n{extra}[limits]']
    lines += [f"{k} = {v!r}" for k, v in limits.items()]
    toml.write_text("\n".join(lines) + "\n")
    cfg = config.load(toml)
    ctx = FrontContext(cfg, loop, RouteCache(Router(str(docroot))), FakePool(),  # type: ignore[arg-type]
                       str(docroot).encode(), ProxyTrust(()), compression=compression_of(cfg))
    return connect(version, ctx)


def connect(version: str, ctx: FrontContext) -> Setup:
    """A client connected to the front of `ctx` (its pool a FakePool) over HTTP `version`."""
    transport = FakeTransport()
    conn: Http1Connection | Http2Connection
    if version == "1.1":
        conn = Http1Connection(ctx)
        conn.connection_made(transport)
        return Setup(H1Client(conn, transport), conn, ctx.pool, ctx)  # type: ignore[arg-type]
    conn = Http2Connection(ctx)
    conn.connection_made(transport)
    return Setup(H2Client(conn, transport), conn, ctx.pool, ctx)  # type: ignore[arg-type]


def deliver(s: Setup, fn: str, *args: object) -> None:
    """The worker answers: call the sink of the exchange it holds."""
    getattr(s.pool.submitted[-1].sink, fn)(*args)
    run_pending(s.conn)


@pytest.mark.parametrize("version", VERSIONS)
def test_php_response_reaches_the_client(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid = s.client.send("GET", "/index.php?a=1")
    assert len(s.pool.submitted) == 1
    request = s.pool.submitted[0].frames[0]
    assert b"QUERY_STRING\0a=1\0" in request and b"REQUEST_METHOD\0GET\0" in request
    s.pool.take(s.pool.submitted[0])
    deliver(s, "php_response", 200, b"Content-Type: text/plain\nX-A: 1", [b"hello"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b"hello", True)
    assert resp.headers[b"x-a"] == b"1" and resp.headers[b"content-length"] == b"5"
    assert (s.ctx.stats.count, s.ctx.stats.by_class[2]) == (1, 1)  # the /metrics counters


# -- PHP's own Date, Server and Content-Length (Laravel and Symfony set a Date on every response) --
LARAVEL_HEAD = (b"Cache-Control: no-cache, private\nDate: Mon, 07 Dec 2026 19:19:13 GMT\n"
                b"Content-Type: application/json")


def named(resp: Response, name: bytes) -> list[bytes]:
    return [value for field_name, value in resp.fields if field_name == name]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("date_name", [b"Date", b"date", b"DATE"])
def test_php_date_goes_out_once_and_the_front_adds_server(version, date_name, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, LARAVEL_HEAD.replace(b"Date", date_name), [b'{"a":', b"1}"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b'{"a":1}', True)
    assert named(resp, b"date") == [b"Mon, 07 Dec 2026 19:19:13 GMT"]  # PHP's, not a second one
    assert named(resp, b"server") == [b"askr/" + askr.__version__.encode()]
    assert named(resp, b"content-length") == [b"7"]
    assert named(resp, b"cache-control") == [b"no-cache, private"]
    assert named(resp, b"content-type") == [b"application/json"]


@pytest.mark.parametrize("version", VERSIONS)
def test_php_server_date_and_content_length_each_once(version, docroot, loop) -> None:
    """PHP's Server and Date replace the front's; its Content-Length gives way to the exact one."""
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    block = LARAVEL_HEAD + b"\nServer: my-app\nContent-Length: 999"
    deliver(s, "php_response", 200, block, [b"12345"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b"12345", True)
    assert named(resp, b"date") == [b"Mon, 07 Dec 2026 19:19:13 GMT"]
    assert named(resp, b"server") == [b"my-app"]
    assert named(resp, b"content-length") == [b"5"]


# Header lines PHP keeps as written whose name nginx refuses ("upstream sent invalid header"):
# blanks before the colon (a managed header's too), a name of blanks only, a leading blank (line
# folding), a control character, no name at all.
INVALID_NAME_LINES = [b"X-A : b", b"X-A    : b", b"X-Foo\t: bar", b" : x", b"Content-Length : 999",
                      b"content-length\t: 999", b"Date : x", b" X-Lead: y", b"X\x01A: b", b"X\x7fA: b",
                      b": x", b"X A: b"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("line", INVALID_NAME_LINES)
def test_a_php_header_name_with_blanks_or_controls_is_a_502(version, line, docroot, loop, caplog) -> None:
    """As nginx answers such a head from php-fpm, on either HTTP version: nothing of it goes out."""
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, LARAVEL_HEAD + b"\n" + line + b"\nX-After: 1", [b"12345"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (502, b"502 Bad Gateway\n", True)
    assert named(resp, b"x-after") == [] and named(resp, b"cache-control") == []
    assert not channel.closed  # the worker finished its answer: nothing to let go
    assert repr(line) in caplog.text and "answering 502" in caplog.text


@pytest.mark.parametrize("version", VERSIONS)
def test_a_streamed_php_head_with_an_invalid_name_lets_the_worker_go(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"X-A : b", [b"first"], False)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (502, b"502 Bad Gateway\n", True)
    assert channel.closed  # as nginx closes its upstream: PHP sees the abort on its next write
    assert s.pool.submitted[-1].cancelled  # what was already on its way is dropped by the channel


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("line", [b"X(A): b", b"X_U: 1", b"X-V: a : b\tc", b"X-\xc3\xa9: 1",
                                  b"Content-Lengthy: 3", b"X-E:"])
def test_php_header_names_nginx_passes_are_not_refused(version, line, docroot, loop) -> None:
    """Odd, but without blanks or controls: nginx passes these on, and so does askr (the raw
    bytes are read: a strict client parser would refuse some of them)."""
    s = make(version, docroot, loop)
    s.send_and_take("GET", "/index.php")
    s.client.transport.take()  # the HTTP/2 preface and settings
    deliver(s, "php_response", 200, LARAVEL_HEAD + b"\n" + line, [b"12345"], True)
    out = s.client.transport.take()
    if version == "1.1":
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n" + line + b"\r\n" in out
    else:
        assert b"12345" in out and b"502 Bad Gateway" not in out


@pytest.mark.parametrize("version", VERSIONS)
def test_php_date_on_a_streamed_response(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, LARAVEL_HEAD, [b"one,"], False)
    deliver(s, "php_body", [b"two"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b"one,two", True)
    assert named(resp, b"date") == [b"Mon, 07 Dec 2026 19:19:13 GMT"] and len(named(resp, b"server")) == 1
    assert not named(resp, b"content-length")
    if version == "1.1":
        assert named(resp, b"transfer-encoding") == [b"chunked"]


@pytest.mark.parametrize("version", VERSIONS)
def test_php_date_on_head_and_304(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("HEAD", "/index.php")
    deliver(s, "php_response", 200, LARAVEL_HEAD, [], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body) == (200, b"")
    assert named(resp, b"date") == [b"Mon, 07 Dec 2026 19:19:13 GMT"]
    assert not named(resp, b"content-length")  # HEAD: only a length PHP set is meaningful
    s = make(version, docroot, loop)  # a fresh client: a HEAD answer leaves its parser expecting a body
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 304, b"Date: Mon, 07 Dec 2026 19:19:13 GMT\nETag: \"x\"", [], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body) == (304, b"")
    assert named(resp, b"date") == [b"Mon, 07 Dec 2026 19:19:13 GMT"] and not named(resp, b"content-length")


def test_php_date_over_http10_and_closing_connections(docroot, loop) -> None:
    """HTTP/1.0 keep-alive and a closing response keep their connection header with PHP's Date."""
    s = make("1.1", docroot, loop)
    transport = s.conn.transport
    s.conn.data_received(b"GET /index.php HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    s.pool.take(s.pool.submitted[0])
    deliver(s, "php_response", 200, LARAVEL_HEAD, [b"x"], True)
    out = transport.take()  # type: ignore[union-attr]
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.count(b"Date:") == 1 and b"\r\ndate:" not in out
    assert b"connection: keep-alive\r\n" in out
    assert out.endswith(b"\r\n\r\nx") and b"content-length: 1\r\n" in out
    s.conn.data_received(b"GET /index.php HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    s.pool.take(s.pool.submitted[1])
    deliver(s, "php_response", 200, LARAVEL_HEAD, [b"y"], True)
    out = transport.take()  # type: ignore[union-attr]
    assert out.count(b"Date:") == 1 and b"connection: close\r\n" in out and out.endswith(b"\r\n\r\ny")
    assert transport.closed  # type: ignore[union-attr]


@pytest.mark.parametrize("version", VERSIONS)
def test_streamed_php_response_arrives_in_order(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"Content-Type: text/plain", [b"one,"], False)
    deliver(s, "php_body", [b"two,"], False)
    deliver(s, "php_body", [b"three"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b"one,two,three", True)


@pytest.mark.parametrize("version", VERSIONS)
def test_early_hints_103_then_the_response(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_informational", 103, b"Link: </a.css>; rel=preload\nSet-Cookie: no")
    deliver(s, "php_response", 200, b"", [b"x"], True)
    resp = s.client.response(sid)
    assert [status for status, _ in resp.informational] == [103]
    hints = resp.informational[0][1]
    assert hints[b"link"] == b"</a.css>; rel=preload" and b"set-cookie" not in hints
    assert resp.status == 200


@pytest.mark.parametrize("version", VERSIONS)
def test_worker_dying_before_the_head_is_502(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_failed")
    assert s.client.response(sid).status == 502


@pytest.mark.parametrize("version", VERSIONS)
def test_worker_dying_mid_response_cuts_it(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"", [b"part"], False)
    deliver(s, "php_failed")
    resp = s.client.response(sid)
    assert not resp.complete
    assert (s.client.cut() if version == "1.1" else resp.reset)  # HTTP/2: only that stream


@pytest.mark.parametrize("version", VERSIONS)
def test_full_queue_is_503_with_retry_after(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    s.pool.full = True
    resp = s.client.response(s.client.send("GET", "/index.php"))
    assert resp.status == 503 and resp.headers[b"retry-after"] == b"1"


@pytest.mark.parametrize("version", VERSIONS)
def test_request_timeout_is_504_and_the_worker_is_reported(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    s.conn.check_deadline(100.0)  # the sweeper's first look starts the clock ...
    s.conn.check_deadline(104.0)
    assert s.client.response(sid).status == 0  # ... 5 s request_timeout: not yet
    s.conn.check_deadline(105.5)
    assert s.client.response(sid).status == 504
    assert s.pool.timeouts == [b"/index.php"]


@pytest.mark.parametrize("version", VERSIONS)
def test_body_over_max_body_size_is_413(version, docroot, loop) -> None:
    s = make(version, docroot, loop, max_body_size="1K")
    sid = s.client.send("POST", "/index.php", [("Content-Length", "5000")], end=False)
    assert s.client.response(sid).status == 413
    assert s.pool.submitted == []


@pytest.mark.parametrize("version", VERSIONS)
def test_long_request_target_is_414(version, docroot, loop) -> None:
    s = make(version, docroot, loop, max_request_line="1K")
    assert s.client.response(s.client.send("GET", "/index.php?q=" + "x" * 2000)).status == 414


@pytest.mark.parametrize("version", VERSIONS)
def test_too_many_headers_is_431(version, docroot, loop) -> None:
    s = make(version, docroot, loop, max_headers=10)
    headers = [(f"X-H{i}", "v") for i in range(20)]
    assert s.client.response(s.client.send("GET", "/index.php", headers)).status == 431


@pytest.mark.parametrize("version", VERSIONS)
def test_slow_request_body_is_408(version, docroot, loop) -> None:
    s = make(version, docroot, loop, body_timeout=0.05, body_min_rate=1000)
    sid = s.client.send("POST", "/index.php", [("Content-Length", "100000")], body=b"x" * 10, end=False)

    async def wait() -> None:
        for _ in range(100):
            s.conn.check_deadline(loop.time())  # HTTP/2 judges body windows in the sweeper
            run_pending(s.conn)
            if s.client.response(sid).status:
                return
            await asyncio.sleep(0.01)

    loop.run_until_complete(wait())
    assert s.client.response(sid).status == 408


@pytest.mark.parametrize("version", VERSIONS)
def test_body_streams_to_the_worker_once_it_takes_the_request(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("POST", "/index.php", [("Content-Length", "6")], body=b"abc", end=False)
    s.client.more_body(sid, b"def", end=True)
    body = b"".join(channel.sent[1:])
    assert b"abc" in body and b"def" in body


@pytest.mark.parametrize("version", VERSIONS)
def test_static_file_is_served_by_the_front(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    resp = s.client.response(s.client.send("GET", "/style.css"))
    assert (resp.status, resp.body) == (200, b"body{}")
    assert resp.headers[b"content-type"].startswith(b"text/css") and b"etag" in resp.headers
    assert s.pool.submitted == []


@pytest.mark.parametrize("version", VERSIONS)
def test_dotfiles_and_php_source_are_refused(version, docroot, loop) -> None:
    (docroot / ".env").write_text("SECRET=1")
    s = make(version, docroot, loop)
    assert s.client.response(s.client.send("GET", "/.env")).status == 404


@pytest.mark.parametrize("version", VERSIONS)
def test_drain_lets_the_request_in_flight_finish_then_closes(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    s.ctx.draining = True
    s.conn.shutdown()
    s.client.response(sid)
    if version == "2":
        assert s.client.goaway  # GOAWAY at once: no new streams, the open one finishes
    assert not s.client.cut()
    deliver(s, "php_response", 200, b"", [b"done"], True)
    if version == "2":  # h2's client stops decoding at GOAWAY (a real one goes on): the raw DATA
        assert b"done" in s.client.transport.take()
    else:
        assert s.client.response(sid).body == b"done"
    assert s.client.cut()


@pytest.mark.parametrize("version", VERSIONS)
def test_directory_without_slash_redirects_on_the_clients_origin(version, docroot, loop) -> None:
    (docroot / "docs").mkdir()
    (docroot / "docs" / "index.php").write_text("<?php")
    s = make(version, docroot, loop)
    resp = s.client.response(s.client.send("GET", "/docs?x=1"))
    assert resp.status == 301
    assert resp.headers[b"location"] == b"http://example.test:8080/docs/?x=1"


@pytest.mark.parametrize("version", VERSIONS)
def test_body_of_unknown_length_is_collected_then_php_gets_its_length(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    if version == "1.1":
        s.conn.data_received(b"POST /index.php HTTP/1.1\r\nHost: example.test\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        sid = 0
    else:  # HTTP/2 without content-length
        sid = s.client.send("POST", "/index.php", body=b"abc", end=False)
    assert s.pool.submitted == []  # PHP waits for the whole body: CONTENT_LENGTH must be real
    if version == "1.1":
        s.conn.data_received(b"3\r\ndef\r\n0\r\n\r\n")
    else:
        s.client.more_body(sid, b"def", end=True)
    assert len(s.pool.submitted) == 1
    frames = s.pool.submitted[0].frames
    assert b"CONTENT_LENGTH\x006\x00" in frames[0]
    channel = s.pool.take(s.pool.submitted[0])
    assert b"abc" in b"".join(channel.sent[1:]) and b"def" in b"".join(channel.sent[1:])
    deliver(s, "php_response", 200, b"", [b"ok"], True)
    assert s.client.response(sid).body == b"ok"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_leaving_mid_response_closes_the_workers_channel(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"content-type: text/plain", [b"part"], False)
    assert s.client.response(sid).status == 200
    if version == "1.1":
        s.conn.connection_lost(None)
    else:  # the client cancels the stream; the connection lives on
        s.client.h2.reset_stream(sid)
        s.client.flush()
    assert channel.closed  # PHP sees the abort on its next write, as behind nginx
    assert s.pool.submitted[0].cancelled


@pytest.mark.parametrize("version", VERSIONS)
def test_every_answer_is_counted_with_its_status_class(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    s.client.response(s.client.send("GET", "/style.css"))
    s.client.response(s.client.send("GET", "/.hidden"))  # refused: 404
    sid = s.client.send("GET", "/index.php")
    deliver(s, "php_response", 500, b"", [b"oops"], True)
    s.client.response(sid)
    assert s.ctx.stats.count == 3
    assert s.ctx.stats.snapshot()["by_class"] == [0, 1, 0, 1, 1]


@pytest.mark.parametrize("version", VERSIONS)
def test_head_to_php_sends_no_body(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid = s.client.send("HEAD", "/index.php")
    assert b"REQUEST_METHOD\x00HEAD\x00" in s.pool.submitted[0].frames[0]
    deliver(s, "php_response", 200, b"content-type: text/html", [], True)
    resp = s.client.response(sid)
    assert resp.status == 200 and resp.body == b""


# -- a crashed worker's request, retried once on another ([server] retry_crashed) -----------------
def crash(s: Setup, channel: FakeChannel) -> None:
    """The worker holding the last exchange died before any of its response: the pool reports
    it with the dead worker's channel (WorkerPool.worker_gone)."""
    s.pool.submitted[-1].sink.php_failed(channel)
    run_pending(s.conn)


@pytest.mark.parametrize("version", VERSIONS)
def test_get_whose_worker_crashed_before_answering_is_retried_once(version, docroot, loop, caplog) -> None:
    s = make(version, docroot, loop)
    sid = s.client.send("GET", "/index.php?a=1")
    first = s.pool.submitted[0]
    request = first.frames[0]
    s.conn.check_deadline(100.0)  # request_timeout (5 s) starts counting
    crash(s, s.pool.take(first))
    assert s.client.response(sid).status == 0  # nothing reached the client
    assert len(s.pool.submitted) == 2
    retry = s.pool.submitted[1]
    assert retry is not first and retry.frames == [request, wire.BODY_END_FRAME]
    assert s.ctx.stats.retried == 1 and s.ctx.stats.retry_failed == 0
    assert "died before answering GET /index.php?a=1" in caplog.text and "retrying it once" in caplog.text
    s.conn.check_deadline(104.0)
    assert s.client.response(sid).status == 0
    s.conn.check_deadline(105.5)  # the deadline counts from the first try, not the retry
    assert s.client.response(sid).status == 504


@pytest.mark.parametrize("version", VERSIONS)
def test_the_retry_answers_the_client(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    crash(s, channel)
    s.pool.take(s.pool.submitted[1])
    deliver(s, "php_response", 200, b"Content-Type: text/plain", [b"ok"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, b"ok", True)
    assert s.ctx.stats.count == 1 and s.ctx.stats.by_class[2] == 1  # one request, one response


@pytest.mark.parametrize("version", VERSIONS)
def test_a_second_crash_is_502_not_a_loop(version, docroot, loop, caplog) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    crash(s, channel)
    crash(s, s.pool.take(s.pool.submitted[1]))
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 2
    assert (s.ctx.stats.retried, s.ctx.stats.retry_failed) == (1, 1)
    assert f"died on GET /index.php (HTTP/{version}) too: the retry also failed" in caplog.text


@pytest.mark.parametrize("version", VERSIONS)
def test_post_with_a_body_is_not_retried(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("POST", "/index.php", [("Content-Type", "text/plain")], body=b"abc")
    crash(s, channel)
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 1 and s.ctx.stats.retried == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_get_with_a_body_is_not_retried(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php", body=b"abc")
    crash(s, channel)
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_not_retried_once_the_response_head_came(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"", [b"part"], False)
    crash(s, channel)  # the pool says None once HEAD came; the stream holds even if it did not
    resp = s.client.response(sid)
    assert resp.status == 200 and not resp.complete
    assert (s.client.cut() if version == "1.1" else resp.reset)
    assert len(s.pool.submitted) == 1 and s.ctx.stats.retried == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_not_retried_after_early_hints(version, docroot, loop) -> None:
    """A 103 may already be with the client (it acts on its Link headers): the response began."""
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    deliver(s, "php_informational", 103, b"Link: </a.css>; rel=preload")
    crash(s, channel)
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_retry_crashed_never_answers_502_at_once(version, docroot, loop) -> None:
    s = make(version, docroot, loop, server={"retry_crashed": "never"})
    sid, channel = s.send_and_take("GET", "/index.php")
    crash(s, channel)
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 1 and s.ctx.stats.retried == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_lost_request_is_502_without_retry(version, docroot, loop) -> None:
    """Lost (WorkerPool.check_lost), not crashed: the pool gives no dead worker, and no retry."""
    s = make(version, docroot, loop)
    sid = s.client.send("GET", "/index.php")
    deliver(s, "php_failed")
    assert s.client.response(sid).status == 502
    assert len(s.pool.submitted) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_a_timed_out_request_is_not_retried_when_its_worker_is_killed(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid = s.client.send("GET", "/index.php")
    first = s.pool.submitted[0]
    channel = s.pool.take(first)
    s.conn.check_deadline(100.0)
    s.conn.check_deadline(105.5)
    assert s.client.response(sid).status == 504
    assert first.cancelled  # so WorkerPool.worker_gone reports nothing when the master kills it
    first.sink.php_failed(channel)  # and even if it did, the stream has answered
    assert len(s.pool.submitted) == 1 and s.ctx.stats.retried == 0


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("HEAD", True), ("OPTIONS", True),
                                                 ("POST", False), ("PUT", False), ("DELETE", False)])
def test_only_idempotent_methods_are_retried(version, method, retried, docroot, loop) -> None:
    """Safe methods only, even without a body: POST, PUT and DELETE may have changed state."""
    s = make(version, docroot, loop)
    sid, channel = s.send_and_take(method, "/index.php")
    crash(s, channel)
    assert len(s.pool.submitted) == (2 if retried else 1)
    assert s.client.response(sid).status == (0 if retried else 502)


# -- [compression] (on by default) ----------------------------------------------------------------
PAGE = b"<li>an item of a long streamed page</li>\n" * 100


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
@pytest.mark.parametrize("version", VERSIONS)
def test_streamed_php_response_is_compressed_piece_by_piece(version, coding, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", f"{coding}, identity;q=0.5")])
    head = b'Content-Type: text/event-stream\nContent-Length: 99999\nETag: "e1"'
    deliver(s, "php_response", 200, head, [b"data: first\n\n"], False)
    resp = s.client.response(sid)
    assert resp.headers[b"content-encoding"] == coding.encode()
    assert resp.headers[b"vary"] == b"Accept-Encoding"
    assert resp.headers[b"etag"] == b'W/"e1"' and b"content-length" not in resp.headers
    if version == "1.1":
        assert resp.headers[b"transfer-encoding"] == b"chunked"
    feed = incremental_decoder(coding)
    assert feed(resp.body) == b"data: first\n\n"  # the first flush decodes before the rest comes
    seen = len(resp.body)
    deliver(s, "php_body", [b"data: second\n\n"], False)
    assert feed(s.client.response(sid).body[seen:]) == b"data: second\n\n"
    seen = len(s.client.response(sid).body)
    deliver(s, "php_body", [PAGE], True)
    resp = s.client.response(sid)
    assert resp.complete and feed(resp.body[seen:]) == PAGE


@pytest.mark.parametrize("version", VERSIONS)
def test_complete_php_response_is_compressed_whole_with_its_length(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", "gzip")])
    head = b"Content-Type: text/html; charset=UTF-8"
    deliver(s, "php_response", 200, head, [PAGE[:2000], PAGE[2000:]], True)
    resp = s.client.response(sid)
    assert resp.headers[b"content-encoding"] == b"gzip"
    assert resp.headers[b"content-length"] == b"%d" % len(resp.body) and gzip.decompress(resp.body) == PAGE


@pytest.mark.parametrize("version", VERSIONS)
def test_php_responses_compression_leaves_alone(version, docroot, loop) -> None:
    already = gzip.compress(PAGE)
    cases = [
        (b"Content-Type: text/html\nContent-Encoding: gzip", [already]),  # zlib.output_compression
        (b"Content-Type: text/html", [b"<p>short</p>"]),  # under min_size
        (b"Content-Type: image/png", [PAGE]),
    ]
    for head, body in cases:
        s = make(version, docroot, loop)
        sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", "gzip, br")])
        deliver(s, "php_response", 200, head, body, True)
        resp = s.client.response(sid)
        assert resp.body == b"".join(body)
        assert resp.headers.get(b"content-encoding") == (b"gzip" if b"Encoding" in head else None)
        assert b"vary" not in resp.headers


@pytest.mark.parametrize("version", VERSIONS)
def test_head_to_php_gets_the_encoding_headers_of_a_get(version, docroot, loop) -> None:
    s = make(version, docroot, loop)
    sid, _ = s.send_and_take("HEAD", "/index.php", [("Accept-Encoding", "br")])
    deliver(s, "php_response", 200, b"Content-Type: text/html", [], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body) == (200, b"")
    assert resp.headers[b"content-encoding"] == b"br" and resp.headers[b"vary"] == b"Accept-Encoding"


@pytest.mark.parametrize("version", VERSIONS)
def test_static_file_is_compressed_and_a_range_is_not(version, docroot, loop) -> None:
    (docroot / "app.js").write_bytes(PAGE)
    s = make(version, docroot, loop)
    sid = s.client.send("GET", "/app.js", [("Accept-Encoding", "zstd")])
    resp = s.client.response(sid)
    assert resp.headers[b"content-encoding"] == b"zstd" and resp.headers[b"etag"].startswith(b'W/"')
    assert incremental_decoder("zstd")(resp.body) == PAGE
    sid = s.client.send("GET", "/app.js", [("Accept-Encoding", "zstd"), ("Range", "bytes=0-9")])
    resp = s.client.response(sid)
    assert (resp.status, resp.body) == (206, PAGE[:10]) and b"content-encoding" not in resp.headers
