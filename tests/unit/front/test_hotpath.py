"""askr._hotpath.parse_head, the C reader of plain request heads, against httptools.

The fast reader may decline anything (httptools then reads it, with all of askr's answers), but
what it accepts it must read exactly as httptools and Stream.add_header would: the same method,
target, version, fields, and the same end of the message. A fixed corpus covers each rule, and a
seeded mutation corpus searches for a byte it accepts that httptools would not.
"""

from __future__ import annotations

import random
import struct

import httptools
import pytest
from test_stream import docroot, make  # noqa: F401  (docroot is a fixture)

from askr.bridge import pool as pool_module
from askr.bridge import wire
from askr.bridge.pool import Exchange, WorkerChannel
from askr.front import http1
from askr.front.http1 import Request, parse_head
from askr.front.responses import DATE, SERVER_HEADER

LIMITS = (8192, 100, 16384)  # max_request_line, max_headers, max_header_size: askr's defaults
PLAIN = b"GET /index.php?a=1&b=%20 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"


class Reader:
    """What httptools and Stream.add_header make of one message (None if it is refused)."""

    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.parser = httptools.HttpRequestParser(self)
        self.keep_alive = False
        self.method = b""
        self.version = ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.method = self.parser.get_method()
        self.version = self.parser.get_http_version()
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.done = True


def httptools_reading(data: bytes) -> tuple | None:
    """(method, url, version, headers, flat) as the httptools path builds them, if `data` is
    exactly one complete keep-alive message that path accepts."""
    reader = Reader()
    try:
        reader.parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    if not reader.done or not reader.keep_alive:
        return None
    req = Request.__new__(Request)
    req.headers, req.flat_headers = {}, []
    for name, value in reader.fields:
        if not Request.add_header(req, name.lower(), name, value):
            return None
    return reader.method, reader.url, reader.version, req.headers, req.flat_headers


def incomplete_with_httptools(data: bytes) -> bool:
    reader = Reader()
    try:
        reader.parser.feed_data(data)
    except httptools.HttpParserError:
        return False
    return not reader.done


def assert_agrees(data: bytes) -> bool:
    """True if the fast reader accepted `data` (then checked against httptools)."""
    head = parse_head(data, 0, *LIMITS)
    if head is None:
        return False
    end, method, url, version, headers, flat = head
    assert httptools_reading(data[:end]) == (method, url, version, headers, flat), data
    assert incomplete_with_httptools(data[:end - 1]), data  # the message ends exactly there
    return True


@pytest.mark.parametrize("data", [
    PLAIN,
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost:a\r\nX-Tab:\tv  w\r\nCONNECTION: Keep-Alive\r\n\r\n",
    b"GET /a;b=c/~d/(e)/f'g*h+i,j:k@l!m$n HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=d\r\nX-Weird-!#$%&'*+.^_`|~: ok\r\n\r\n",
])
def test_plain_heads_are_read_as_httptools_reads_them(data: bytes) -> None:
    assert assert_agrees(data)


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",  # a method with a body
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",  # HTTP/1.0 closes unless asked
    b"GET / HTTP/1.1\r\n\r\n",  # no Host: httptools' path answers 400
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # 400 there
    b"GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nAccept: y\r\n\r\n",  # joined there
    b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n",  # obs-text
    b"GET / HTTP/1.1\nHost: a\n\n",  # bare LF
    b"GET / HTTP/1.1\r\nHost: a \r\n\r\n",  # trailing blank
    b"GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\r\n",  # empty value
    b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",  # blank before the colon
    b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
    b"GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",  # absolute-form
    b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",  # a leading empty line
    b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",  # not all here yet
    b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    b"GET / HTTP/1.1",
    b"",
])
def test_anything_unusual_is_left_to_httptools(data: bytes) -> None:
    assert parse_head(data, 0, *LIMITS) is None


def test_limits_are_left_to_httptools_paths_answers() -> None:
    target = b"/" + b"a" * 99
    line = b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n"
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))
    data = line + fields + b"\r\n"
    assert parse_head(data, 0, 100, 10, 1000) is not None
    assert parse_head(data, 0, 99, 10, 1000) is None  # 414 on the other path
    assert parse_head(data, 0, 100, 9, 1000) is None  # 431
    size = sum(len(f) + 2 for f in fields.split(b"\r\n")[:-1]) + len(b"Host") + len(b"a") + 4
    assert parse_head(data, 0, 100, 10, size) is not None
    assert parse_head(data, 0, 100, 10, size - 1) is None  # 431


def test_pipelined_heads_are_read_one_after_another() -> None:
    second = b"HEAD /b HTTP/1.1\r\nHost: a\r\n\r\n"
    data = PLAIN + second + b"GET /partial HTTP/1.1\r\nHo"
    first = parse_head(data, 0, *LIMITS)
    assert first is not None and first[0] == len(PLAIN)
    head = parse_head(data, first[0], *LIMITS)
    assert head is not None and head[:3] == (len(PLAIN) + len(second), b"HEAD", b"/b")
    assert parse_head(data, head[0], *LIMITS) is None
    assert parse_head(data, len(data), *LIMITS) is None


def test_mutated_heads_it_accepts_are_read_as_httptools_reads_them() -> None:
    """Seeded random edits (byte flips, insertions, deletions) of plain heads: whatever the fast
    reader still accepts, httptools must accept and read identically."""
    rng = random.Random(20261208)
    seeds = [PLAIN, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-A: b c\r\n\r\n",
             b"HEAD /x/y.php/z?q HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/7.88.1\r\nCookie: s=1\r\n\r\n"]
    alphabet = b" \t\r\n\0:/?#%;,HTTPGETSOhost\x7f\x80\xffAaZz019-_.~"
    accepted = 0
    for _ in range(4000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[i] = rng.choice(alphabet)
            elif op == 1:
                data.insert(i, rng.choice(alphabet))
            else:
                del data[i]
        accepted += assert_agrees(bytes(data))
    assert accepted > 500  # the corpus exercised acceptance, not only refusals


def test_a_connection_mixes_fast_and_httptools_reads_in_order(docroot, loop) -> None:  # noqa: F811
    """One read with a plain GET, a POST with a body (httptools), another plain GET: three
    requests, handed to PHP in order, each with its own params and body."""
    s = make("1.1", docroot, loop)
    s.conn.data_received(b"GET /index.php?n=1 HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"POST /index.php?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                         b"GET /index.php?n=3 HTTP/1.1\r\nHost: a\r\n\r\n")
    queued = list(s.conn.queue)  # type: ignore[union-attr]
    assert [(r.method, r.query) for r in queued] == [(b"GET", b"n=1"), (b"POST", b"n=2"), (b"GET", b"n=3")]
    assert queued[1].body == [b"abc"] and queued[1].body_complete
    for n in (1, 2, 3):
        assert len(s.pool.submitted) == n  # only the request at the head of the line runs
        exchange = s.pool.submitted[-1]
        assert b"QUERY_STRING\0n=%d\0" % n in exchange.frames[0]
        s.pool.take(exchange)
        exchange.sink.php_response(200, b"X-N: %d" % n, [b"ok"], True)
    responses = s.client.response()
    assert s.client.responses and [r.headers[b"x-n"] for r in s.client.responses] == [b"1", b"2", b"3"]
    assert responses.complete


# -- read_frames: a worker's answer ---------------------------------------------------------------
class Recorder:
    """Pool and sink in one: every call a WorkerChannel makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def taken(self, channel: WorkerChannel, request_id: int, flags: int = 0) -> None:
        self.calls.append(("taken", request_id, flags))
        channel.exchange = Exchange([], self, None)  # type: ignore[arg-type]

    def finished(self, channel: WorkerChannel) -> None:
        self.calls.append(("finished",))

    def worker_quota(self, channel: WorkerChannel, *reason: object) -> None:
        self.calls.append(("quota", *reason))

    def on_event(self, event: object) -> None:
        self.calls.append(("event", event))

    def worker_hello(self, channel: WorkerChannel) -> None:
        self.calls.append(("hello", channel.pid))

    def php_response(self, status: int, block: bytes, body: list[bytes], complete: bool) -> None:
        self.calls.append(("response", status, block, b"".join(body), complete))

    def php_body(self, body: list[bytes], complete: bool) -> None:
        self.calls.append(("body", b"".join(body), complete))

    def php_informational(self, status: int, block: bytes) -> None:
        self.calls.append(("hints", status, block))


def channel_calls(reads: list[bytes], fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    recorder = Recorder()
    channel = WorkerChannel(recorder)  # type: ignore[arg-type]
    channel.exchange = Exchange([], recorder, None)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(pool_module, "read_frames", lambda data: None)
        for data in reads:
            channel.data_received(data)
    return recorder.calls, channel.exiting, bytes(channel.buf)


def random_answer(rng: random.Random) -> bytes:
    frames = []
    if rng.random() < 0.8:
        flags = bytes([rng.randrange(4)]) if rng.random() < 0.5 else b""
        payload = struct.pack("!Q", rng.randrange(1 << 40)) + flags
        frames.append(wire.frame(wire.TAKEN, payload))
    if rng.random() < 0.1:
        frames.append(wire.frame(wire.EARLY_HINTS, struct.pack("!H", 103) + b"Link: </a.css>"))
    if rng.random() < 0.8:
        block = b"\n".join(b"X-%d: %d" % (i, i) for i in range(rng.randrange(4)))
        frames.append(wire.frame(wire.HEAD, struct.pack("!H", rng.choice((200, 404, 302))) + block))
    for _ in range(rng.randrange(11)):
        frames.append(wire.frame(wire.RESP_BODY, bytes(rng.randrange(40))))
    if rng.random() < 0.7:
        frames.append(wire.frame(wire.END, bytes([rng.randrange(4)]) if rng.random() < 0.7 else b""))
    if rng.random() < 0.1:
        frames.append(wire.frame(wire.RECYCLE, struct.pack("!BQ", 1, 123)))
    if rng.random() < 0.1:
        frames.append(wire.frame(wire.TAKEN, struct.pack("!Q", 7)) + wire.frame(wire.END))
    return b"".join(frames)


def test_worker_answers_are_read_as_the_general_frame_loop_reads_them(monkeypatch) -> None:
    """Seeded random answers, whole or cut at a random point: the same calls either way."""
    rng = random.Random(1208)
    shortcut = 0
    for _ in range(3000):
        data = random_answer(rng)
        reads = [data]
        if data and rng.random() < 0.3:
            cut = rng.randrange(len(data))
            reads = [data[:cut], data[cut:]]
        shortcut += all(pool_module.read_frames(r) is not None for r in reads)
        assert channel_calls(reads, True, monkeypatch) == channel_calls(reads, False, monkeypatch), data
    assert shortcut > 1000  # most answers took the C path


def test_an_answer_of_the_usual_shape_is_read_in_one_call() -> None:
    data = (wire.frame(wire.TAKEN, struct.pack("!QB", 41, 1)) + wire.frame(wire.HEAD, b"\x00\xc8X-A: b")
            + wire.frame(wire.RESP_BODY, b"he") + wire.frame(wire.RESP_BODY, b"llo")
            + wire.frame(wire.END, b"\x02"))
    assert pool_module.read_frames(data) == (41, 1, 200, b"X-A: b", [b"he", b"llo"], 2)
    assert pool_module.read_frames(wire.frame(wire.RESP_BODY, b"x")) == (-1, 0, -1, b"", [b"x"], -1)
    assert pool_module.read_frames(data[:-1]) is None  # the END frame is cut
    assert pool_module.read_frames(data + wire.frame(wire.END)) is None  # two answers
    assert pool_module.read_frames(wire.frame(wire.HELLO, struct.pack("!III", 0, 1, 1))) is None


# -- compose_response: a whole HTTP/1.1 response ------------------------------------------------
@pytest.mark.parametrize(("block", "body"), [
    (b"Content-type: text/html; charset=UTF-8", [b"Hello, world!\n"]),
    (b"Cache-Control: no-cache, private\nDate: Mon, 07 Dec 2026 19:19:13 GMT\nContent-Type: application/json",
     [b'{"a":1}']),
    (b"Server: app\nX-Empty: \nSet-Cookie: a=b\nSet-Cookie: c=d", [b"a", b"", b"bc"]),
    (b"", [b"no headers"]),
    (b"X-A: b", []),
])
def test_whole_responses_are_written_as_the_line_by_line_path_writes_them(block, body, docroot, loop) -> None:  # noqa: F811
    s = make("1.1", docroot, loop)
    written = []
    for compose in (http1.compose_response, lambda *args: None):
        http1.compose_response, saved = compose, http1.compose_response
        try:
            s.client.send("GET", "/index.php")
            s.pool.take(s.pool.submitted[-1])
            stream = s.pool.submitted[-1].sink
            stream.php_response(200, block, list(body), True)
        finally:
            http1.compose_response = saved
        written.append((s.client.transport.take(), stream.status, stream.sent, stream.responded))
    assert written[0] == written[1]
    assert written[0][1:] == (200, len(b"".join(body)), True)  # what the access log and stats get
    assert written[0][0].endswith(b"\r\n\r\n" + b"".join(body)) and s.client.transport.closed is False


@pytest.mark.parametrize("block", [
    b"Content-Length: 5", b"connection: close", b"Transfer-Encoding: chunked", b"Status: 200 Fine",
    b"X-A : b", b" : x", b"X(A): b", b"NoColon", b"X-A: b\n", b"X-A: b\n\nX-B: c",
])
def test_heads_that_need_the_fronts_care_are_declined(block) -> None:
    assert http1.compose_response(b"HTTP/1.1 200 OK\r\n", block, DATE.get(), SERVER_HEADER, [b"x"]) is None
