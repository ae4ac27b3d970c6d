"""The hot-file cache (askr/front/hotfiles.py) behind real Http1Connection / Http2Connection
objects writing to a fake transport: hits skip routing and send what the ordinary static path
sends, byte for byte; changes on disk are seen at the next re-validation (an injected clock, no
sleeps); memory stays under its cap; HEAD, Range and other methods take the ordinary path."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
from pathlib import Path

import brotli
import h2.config
import h2.connection
import h2.events
import pytest

from askr import config as config_mod
from askr.front.compression import compression_of
from askr.front.context import FrontContext
from askr.front.hotfiles import ENTRY_OVERHEAD, MAX_FILE, HotFiles
from askr.front.http1 import Http1Connection
from askr.front.http2 import Http2Connection
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Route, Router

MTIME = 784111777  # long ago: not "racy", so only a stat change makes an entry be read again
BODY = b"body of a small file\n"
_DATE = re.compile(rb"date: [^\r]*\r\n")


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.out += data

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return _DATE.sub(b"date: X\r\n", data)  # the second may tick between two requests

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRouter(Router):
    __slots__ = ("resolved",)

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.resolved = 0

    def resolve(self, raw_path: bytes, query: bytes = b"") -> Route:
        self.resolved += 1
        return super().resolve(raw_path, query)


class Front:
    """One front's routing and cache over `root`, with connections to talk to it."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, cache: bool = True,
                 max_bytes: int = 16 * 1024 * 1024, compression: bool = False) -> None:
        self.clock = Clock()
        self.router = CountingRouter(str(root))
        cfg = config_mod.load(overrides={"server.root": str(root)})
        comp = compression_of(cfg) if compression else None
        self.hot = HotFiles(self.router, max_bytes, clock=self.clock, compression=comp) if cache else None
        self.ctx = FrontContext(cfg, loop, RouteCache(self.router, hot=self.hot), None,  # type: ignore[arg-type]
                                str(root).encode(), ProxyTrust(()), compression=comp)

    @property
    def resolved(self) -> int:
        return self.router.resolved

    def http1(self) -> tuple[Http1Connection, FakeTransport]:
        conn = Http1Connection(self.ctx)
        transport = FakeTransport()
        conn.connection_made(transport)
        return conn, transport

    def get(self, target: str, *headers: str, method: str = "GET") -> bytes:
        """One request on a fresh HTTP/1.1 connection; the response with its Date blanked."""
        conn, transport = self.http1()
        lines = [f"{method} {target} HTTP/1.1", "Host: t", *headers, "", ""]
        conn.data_received("\r\n".join(lines).encode())
        return transport.take()


def write(path: Path, data: bytes = BODY, mtime: int = MTIME) -> Path:
    """mtime=0: leave the timestamp the write gave it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    write(root / "a.txt")
    write(root / "style.css", b"body { color: red }\n")
    write(root / "empty.txt", b"")
    write(root / "sub" / "index.html", b"<p>index</p>\n")
    write(root / ".env", b"SECRET=1\n")
    write(root / "config.php.bak", b"<?php $password = 1;\n")
    return root


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


# --- the same bytes as the ordinary path ------------------------------------------------------

REQUESTS = [
    ("/a.txt",),
    ("/a.txt", "Connection: close"),
    ("/style.css",),
    ("/empty.txt",),
    ("/sub/",),
    ("/%61.txt",),
    ("/a.txt?v=3",),
    ("/a.txt", 'If-None-Match: "2ebc98a1-15"'),
    ("/a.txt", 'If-None-Match: W/"2ebc98a1-15", "other"'),
    ("/a.txt", "If-None-Match: *"),
    ("/a.txt", 'If-None-Match: "other"'),
    ("/a.txt", 'If-None-Match: "other"', "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"),
    ("/a.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"),
    ("/a.txt", "If-Modified-Since: Mon, 07 Nov 1994 00:00:00 GMT"),
    ("/a.txt", "If-Modified-Since: Sat, 05 Nov 1994 00:00:00 GMT"),
    ("/a.txt", "If-Modified-Since: garbage"),
    ("/a.txt", "If-Range: nonsense"),  # no Range: ignored by both
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: " ".join(r))
def test_cached_responses_are_byte_identical_to_the_ordinary_path(root: Path, loop, request_) -> None:
    plain = Front(root, loop, cache=False)
    cached = Front(root, loop)
    expected = plain.get(*request_)
    assert cached.get(*request_) == expected  # the miss that fills the entry
    before = cached.resolved
    assert cached.get(*request_) == expected  # the hit
    assert cached.resolved == before, "a hit must not route"


def test_a_hit_touches_neither_router_nor_disk(root: Path, loop, monkeypatch) -> None:
    front = Front(root, loop)
    first = front.get("/a.txt")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and body_of(first) == BODY
    assert len(front.hot) == 1  # type: ignore[arg-type]

    def no_io(*args, **kw):
        raise AssertionError("file I/O on a cache hit")

    monkeypatch.setattr(os, "lstat", no_io)
    monkeypatch.setattr(os, "stat", no_io)
    monkeypatch.setattr("builtins.open", no_io)
    for _ in range(3):
        assert front.get("/a.txt") == first
    assert front.resolved == 1


def test_keep_alive_and_pipelined_hits_on_one_connection(root: Path, loop) -> None:
    front = Front(root, loop)
    conn, transport = front.http1()
    get = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
    conn.data_received(get % b"/a.txt" * 2 + get % b"/style.css")
    out = transport.take()
    assert out.count(b"HTTP/1.1 200 OK\r\n") == 3 and b"connection" not in out
    assert not transport.closed
    conn.data_received(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"connection: close\r\n" in transport.take() and transport.closed


def test_304_comes_from_the_cache(root: Path, loop) -> None:
    front = Front(root, loop)
    etag = re.search(rb"etag: (\S+)\r\n", front.get("/a.txt")).group(1).decode()  # type: ignore[union-attr]
    resolved = front.resolved
    response = front.get("/a.txt", f"If-None-Match: {etag}")
    assert response.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b"content-length" not in response and body_of(response) == b""
    assert front.resolved == resolved


# --- what the cache never holds, and what it leaves to the ordinary path ----------------------


@pytest.mark.parametrize("target", ["/.env", "/config.php.bak", "/missing.txt", "/sub", "/../a.txt"])
def test_refused_and_other_routes_are_never_cached(root: Path, loop, target: str) -> None:
    plain = Front(root, loop, cache=False)
    front = Front(root, loop)
    assert front.get(target) == plain.get(target)
    assert front.get(target) == plain.get(target)
    assert len(front.hot) == 0  # type: ignore[arg-type]


def test_a_symlink_out_of_the_root_is_never_cached(root: Path, loop, tmp_path: Path) -> None:
    write(tmp_path / "outside.txt", b"secret\n")
    (root / "leak.txt").symlink_to(tmp_path / "outside.txt")
    front = Front(root, loop)
    assert front.get("/leak.txt").startswith(b"HTTP/1.1 404 ")
    assert len(front.hot) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "headers"), [
    ("HEAD", ()),
    ("GET", ("Range: bytes=0-3",)),
    ("GET", ("Range: bytes=-4", "If-Range: nonsense")),
    ("GET", ("Range: bytes=100-",)),  # 416
    ("POST", ("Content-Length: 0",)),  # 405
    ("OPTIONS", ()),
])
def test_head_range_and_other_methods_take_the_ordinary_path(root: Path, loop, method, headers) -> None:
    plain = Front(root, loop, cache=False)
    front = Front(root, loop)
    front.get("/a.txt")  # cached
    resolved = front.resolved
    assert front.get("/a.txt", *headers, method=method) == plain.get("/a.txt", *headers, method=method)
    assert front.resolved == resolved + 1


def test_large_files_are_not_cached(root: Path, loop) -> None:
    big = os.urandom(MAX_FILE + 1)
    write(root / "big.bin", big)
    write(root / "max.bin", big[:MAX_FILE])
    front = Front(root, loop)
    assert body_of(front.get("/big.bin")) == big
    assert body_of(front.get("/max.bin")) == big[:MAX_FILE]
    assert len(front.hot) == 1  # type: ignore[arg-type]  # max.bin only


def test_off_when_cache_size_is_zero(root: Path, loop) -> None:
    front = Front(root, loop, max_bytes=0)
    assert body_of(front.get("/a.txt")) == BODY
    assert len(front.hot) == 0  # type: ignore[arg-type]


# --- re-validation ------------------------------------------------------------------------------


def test_a_changed_file_is_seen_at_the_next_revalidation(root: Path, loop) -> None:
    front = Front(root, loop)
    assert body_of(front.get("/a.txt")) == BODY
    write(root / "a.txt", b"new and longer contents\n", MTIME + 5)
    # Within the validity window the old version goes out whole (nginx's open_file_cache_valid).
    front.clock.now += 0.5
    assert body_of(front.get("/a.txt")) == BODY
    front.clock.now += 0.5
    fresh = front.get("/a.txt")
    assert body_of(fresh) == b"new and longer contents\n"
    assert b'etag: "%x-%x"' % (MTIME + 5, 24) in fresh
    assert fresh == Front(root, loop, cache=False).get("/a.txt")


@pytest.mark.parametrize("change", ["size", "mtime", "inode"])
def test_each_part_of_the_stat_counts(root: Path, loop, change: str) -> None:
    front = Front(root, loop)
    front.get("/a.txt")
    new = BODY.upper()  # same size
    if change == "size":
        write(root / "a.txt", BODY + b"!")
        new = BODY + b"!"
    elif change == "mtime":
        write(root / "a.txt", new, MTIME + 1)
    else:  # a deploy that renames a new file over the old one, same size and mtime
        write(root / "a.tmp", new)
        os.replace(root / "a.tmp", root / "a.txt")
    front.clock.now += 1.0
    assert body_of(front.get("/a.txt")) == new


def test_an_unchanged_file_is_not_read_again(root: Path, loop, monkeypatch) -> None:
    front = Front(root, loop)
    front.get("/a.txt")

    def no_open(*args, **kw):
        raise AssertionError("re-read an unchanged file")

    monkeypatch.setattr("builtins.open", no_open)
    front.clock.now += 1.0
    assert body_of(front.get("/a.txt")) == BODY
    assert front.resolved == 2  # routed again: the route itself is what is re-validated


def test_a_racy_entry_is_read_again_even_with_an_unchanged_stat(root: Path, loop, monkeypatch) -> None:
    """Timestamps have a clock tick's granularity: a write in the tick of our read could leave the
    stat as it was. An entry whose mtime was that recent is read again at its next validation."""
    write(root / "new.txt", BODY, mtime=0)
    mtime = os.stat(root / "new.txt").st_mtime_ns
    wall = [mtime + 500_000_000]  # read half a second after its write
    front = Front(root, loop)
    front.hot._wall_ns = lambda: wall[0]  # type: ignore[union-attr]
    opened: list[str] = []
    real_open = open

    def counting_open(path, *args, **kw):
        opened.append(str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    front.get("/new.txt")
    assert len(opened) == 1
    front.clock.now += 1.0
    wall[0] += 1_000_000_000  # still within RACY_NS of the mtime: read again
    front.get("/new.txt")
    assert len(opened) == 2
    front.clock.now += 1.0
    wall[0] += 1_000_000_000  # settled now: the stat alone decides
    front.get("/new.txt")
    assert len(opened) == 3
    front.clock.now += 1.0
    front.get("/new.txt")
    assert len(opened) == 3


def test_a_deleted_file_falls_back_to_the_router(root: Path, loop) -> None:
    front = Front(root, loop)
    front.get("/a.txt")
    os.unlink(root / "a.txt")
    front.clock.now += 1.0
    assert front.get("/a.txt").startswith(b"HTTP/1.1 404 ")
    assert len(front.hot) == 0  # type: ignore[arg-type]


def test_a_symlink_swapped_out_of_the_root_is_refused_again(root: Path, loop, tmp_path: Path) -> None:
    write(tmp_path / "outside.txt", BODY)  # same size and mtime as the file it replaces
    write(root / "real.txt")
    (root / "link.txt").symlink_to(root / "real.txt")
    front = Front(root, loop)
    assert body_of(front.get("/link.txt")) == BODY
    os.unlink(root / "link.txt")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    front.clock.now += 1.0
    assert front.get("/link.txt").startswith(b"HTTP/1.1 404 ")


def test_a_file_replaced_by_a_directory_redirects(root: Path, loop) -> None:
    front = Front(root, loop)
    front.get("/a.txt")
    os.unlink(root / "a.txt")
    os.mkdir(root / "a.txt")
    front.clock.now += 1.0
    assert front.get("/a.txt").startswith(b"HTTP/1.1 301 ")


# --- memory bound ---------------------------------------------------------------------------


def test_memory_stays_under_the_cap_and_the_least_recently_validated_go_first(root: Path, loop) -> None:
    data = b"x" * 1000
    for name in "bcd":
        write(root / f"{name}.txt", data)
    one = 1000 + ENTRY_OVERHEAD + 400  # one entry with its head, comfortably
    front = Front(root, loop, max_bytes=2 * one)
    hot = front.hot
    assert hot is not None
    front.get("/b.txt")
    front.get("/c.txt")
    assert len(hot) == 2 and hot.size <= hot.max_bytes
    front.clock.now += 1.0
    front.get("/b.txt")  # re-validated: now the most recent
    front.get("/d.txt")  # evicts c, validated longest ago
    assert len(hot) == 2 and hot.size <= hot.max_bytes
    resolved = front.resolved
    front.get("/b.txt")
    front.get("/d.txt")
    assert front.resolved == resolved
    assert body_of(front.get("/c.txt")) == data  # a miss again, served all the same
    assert front.resolved == resolved + 1
    assert hot.size == sum(e.charge for e in hot._entries.values())


def test_a_file_too_big_for_the_cap_is_served_but_not_kept(root: Path, loop) -> None:
    front = Front(root, loop, max_bytes=ENTRY_OVERHEAD)
    assert body_of(front.get("/a.txt")) == BODY
    assert body_of(front.get("/a.txt")) == BODY
    assert len(front.hot) == 0 and front.hot.size == 0  # type: ignore[arg-type, union-attr]


# --- HTTP/2 -----------------------------------------------------------------------------------


class H2Pair:
    """An Http2Connection (h2c) and an h2 client talking through fake transports, in memory."""

    def __init__(self, front: Front) -> None:
        self.conn = Http2Connection(front.ctx)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                           header_encoding=None))
        self.client.initiate_connection()

    def get(self, path: str, *headers: tuple[bytes, bytes], method: bytes = b"GET"
            ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(b":method", method), (b":scheme", b"http"), (b":authority", b"t"),
                                       (b":path", path.encode()), *headers], end_stream=True)
        self.conn.data_received(self.client.data_to_send())
        self.conn._flush_output()  # what the loop's call_soon does
        head: list[tuple[bytes, bytes]] = []
        body = b""
        for event in self.client.receive_data(bytes(self.transport.out)):
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == sid:
                head = [(k, b"X" if k == b"date" else v) for k, v in event.headers]
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                body += event.data
                self.client.acknowledge_received_data(event.flow_controlled_length, sid)
        self.transport.out.clear()
        return head, body


@pytest.mark.parametrize("headers", [
    (),
    ((b"if-none-match", b'"2ebc98a1-15"'),),
    ((b"if-modified-since", b"Sun, 06 Nov 1994 08:49:37 GMT"),),
    ((b"range", b"bytes=2-5"),),
])
def test_http2_hits_match_the_ordinary_path(root: Path, loop, headers) -> None:
    plain = H2Pair(Front(root, loop, cache=False))
    front = Front(root, loop)
    cached = H2Pair(front)
    expected = plain.get("/a.txt", *headers)
    assert cached.get("/a.txt", *headers) == expected
    resolved = front.resolved
    assert cached.get("/a.txt", *headers) == expected
    assert front.resolved == resolved + (1 if headers and headers[0][0] == b"range" else 0)


def test_http2_sees_a_change_at_the_next_revalidation(root: Path, loop) -> None:
    front = Front(root, loop)
    pair = H2Pair(front)
    assert pair.get("/a.txt")[1] == BODY
    write(root / "a.txt", b"changed\n", MTIME + 9)
    assert pair.get("/a.txt")[1] == BODY
    front.clock.now += 1.0
    head, body = pair.get("/a.txt")
    assert body == b"changed\n" and (b"content-length", b"8") in head


def test_http2_head_is_not_served_from_the_cache(root: Path, loop) -> None:
    plain = H2Pair(Front(root, loop, cache=False))
    front = Front(root, loop)
    pair = H2Pair(front)
    pair.get("/a.txt")
    assert pair.get("/a.txt", method=b"HEAD") == plain.get("/a.txt", method=b"HEAD")


# --- [compression]: compressed variants, kept with their entry ----------------------------------

TEXT = b"<p>a hot page, worth compressing</p>\n" * 100
TAG = f'"{MTIME:x}-{len(TEXT):x}"'


@pytest.mark.parametrize("headers", [
    ("Accept-Encoding: gzip",), ("Accept-Encoding: br",), ("Accept-Encoding: zstd",),
    ("Accept-Encoding: gzip, deflate, br, zstd",), ("Accept-Encoding: identity",), (),
    ("Accept-Encoding: gzip", f"If-None-Match: W/{TAG}"),  # 304 for both files: a.txt is another size
    ("Accept-Encoding: br", f"If-None-Match: {TAG}"),
    ("Accept-Encoding: br", 'If-None-Match: "other"'),
])
@pytest.mark.parametrize("name", ["page.html", "a.txt"])
def test_compressed_hits_are_byte_identical_to_the_ordinary_path(root: Path, loop, headers, name) -> None:
    write(root / "page.html", TEXT)
    plain = Front(root, loop, cache=False, compression=True)
    cached = Front(root, loop, compression=True)
    expected = plain.get(f"/{name}", *headers)
    assert cached.get(f"/{name}", *headers) == expected  # the miss
    assert cached.get(f"/{name}", *headers) == expected  # the hit, from the variant
    if name == "page.html" and TAG in "".join(headers):
        assert expected.startswith(b"HTTP/1.1 304 ") and b"vary: Accept-Encoding\r\n" in expected
    if name == "page.html" and headers == ("Accept-Encoding: gzip",):
        assert b"content-encoding: gzip\r\n" in expected and b"vary: Accept-Encoding\r\n" in expected


def test_a_variant_is_compressed_once_and_charged_to_the_cache(root: Path, loop, monkeypatch) -> None:
    write(root / "page.html", TEXT)
    front = Front(root, loop, compression=True)
    assert body_of(front.get("/page.html")) == TEXT
    size = front.hot.size  # type: ignore[union-attr]
    compressions = []
    original = front.hot.compression.whole  # type: ignore[union-attr]
    monkeypatch.setattr(front.hot.compression, "whole",  # type: ignore[union-attr]
                        lambda coding, data: compressions.append(coding) or original(coding, data))
    first = front.get("/page.html", "Accept-Encoding: br")
    assert front.get("/page.html", "Accept-Encoding: br") == first
    assert compressions == ["br"]
    assert front.hot.size > size  # type: ignore[union-attr]
    assert brotli.decompress(body_of(first)) == TEXT


def test_a_changed_file_drops_its_variants(root: Path, loop) -> None:
    write(root / "page.html", TEXT)
    front = Front(root, loop, compression=True)
    assert gzip.decompress(body_of(front.get("/page.html", "Accept-Encoding: gzip"))) == TEXT
    write(root / "page.html", TEXT + b"more", mtime=MTIME + 5)
    front.clock.now += 2
    assert gzip.decompress(body_of(front.get("/page.html", "Accept-Encoding: gzip"))) == TEXT + b"more"


def test_a_precompressed_sibling_is_kept_as_the_variant(root: Path, loop) -> None:
    write(root / "page.html", TEXT)
    sibling = brotli.compress(TEXT, quality=11)
    write(root / "page.html.br", sibling, mtime=MTIME + 1)
    plain = Front(root, loop, cache=False, compression=True)
    cached = Front(root, loop, compression=True)
    expected = plain.get("/page.html", "Accept-Encoding: gzip, br")
    assert body_of(expected) == sibling and b"content-type: text/html\r\n" in expected
    assert cached.get("/page.html", "Accept-Encoding: gzip, br") == expected
    assert cached.get("/page.html", "Accept-Encoding: gzip, br") == expected
