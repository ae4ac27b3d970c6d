"""sendfile for large static bodies on cleartext HTTP/1.1 (Http1Connection._sendfile): a real
uvloop server in a thread and blocking client sockets, so the kernel's buffers, EAGAIN and
disconnects are real. Bodies must arrive whole and in order, the connection must go on (or be
closed and forgotten when the client leaves), and no fd may leak."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop
from rawhttp import Conn

from askr import config as config_mod
from askr.front.context import FrontContext
from askr.front.hotfiles import HotFiles
from askr.front.http1 import Http1Connection
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Router

BIG = os.urandom(2 * 1024 * 1024 + 123)
HUGE_SIZE = 8 * 1024 * 1024  # more than loopback's largest send buffer (tcp_wmem 4 MiB): EAGAIN
MEDIUM = os.urandom(200 * 1024)  # below MAX_BUFFERED: written through the transport
PIPELINED = 30  # MEDIUMs: more than the kernel's send buffer holds, so the rest waits in uvloop's


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Served:
    def __init__(self, root: Path) -> None:
        self.loop = uvloop.new_event_loop()
        router = Router(str(root))
        cfg = config_mod.load(overrides={"server.root": str(root)})
        self.ctx = FrontContext(cfg, self.loop, RouteCache(router, hot=HotFiles(router, 1 << 20)),
                                None, str(root).encode(), ProxyTrust(()))  # type: ignore[arg-type]
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(lambda: Http1Connection(self.ctx), "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.server.close()

    def conn(self) -> Conn:
        return Conn("127.0.0.1", self.port)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sendfile")
    (root / "big.bin").write_bytes(BIG)
    with open(root / "huge.bin", "wb") as f:
        f.write(os.urandom(HUGE_SIZE))
    (root / "medium.bin").write_bytes(MEDIUM)
    (root / "small.txt").write_bytes(b"small\n")
    return root


@pytest.fixture
def served(root: Path) -> Iterator[Served]:
    served = Served(root)
    yield served
    served.stop()


@pytest.fixture
def calls(monkeypatch) -> list[object]:
    """Every os.sendfile call's outcome: bytes sent, or the exception's class."""
    seen: list[object] = []
    real = os.sendfile

    def recording(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        try:
            n = real(out_fd, in_fd, offset, count)
        except OSError as e:
            seen.append(type(e))
            raise
        seen.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", recording)
    return seen


def small_buffer_socket(port: int) -> socket.socket:
    """A client whose receive buffer is tiny, so the server's sends soon block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(20)
    return sock


def read_response(sock: socket.socket, size: int) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    chunks = [body]
    got = len(body)
    while got < size:
        chunk = sock.recv(min(1 << 20, size - got))
        assert chunk, "closed early"
        chunks.append(chunk)
        got += len(chunk)
    return head, b"".join(chunks)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_large_file_goes_out_by_sendfile_and_the_connection_goes_on(served: Served, calls) -> None:
    with served.conn() as c:
        resp = c.request("GET", "/big.bin")
        assert resp.status == 200 and resp.body == BIG
        assert resp.header("content-length") == str(len(BIG))
        small = c.request("GET", "/small.txt")  # the next head comes after the whole file
        assert (small.status, small.body) == (200, b"small\n")
    # counted once the next response is in: the server thread records a call after it returns
    assert sum(n for n in calls if isinstance(n, int)) == len(BIG)


@pytest.mark.parametrize(("spec", "start", "end"), [
    ("bytes=300000-1999999", 300000, 2000000),
    ("bytes=-400000", len(BIG) - 400000, len(BIG)),
    ("bytes=1000-", 1000, len(BIG)),
])
def test_ranges_of_a_large_file(served: Served, calls, spec: str, start: int, end: int) -> None:
    with served.conn() as c:
        resp = c.request("GET", "/big.bin", [("Range", spec)])
        assert resp.status == 206 and resp.body == BIG[start:end]
        assert resp.header("content-range") == f"bytes {start}-{end - 1}/{len(BIG)}"
        assert c.request("GET", "/small.txt").body == b"small\n"
    assert sum(n for n in calls if isinstance(n, int)) == end - start


def test_head_of_a_large_file_sends_no_body(served: Served, calls) -> None:
    with served.conn() as c:
        resp = c.request("HEAD", "/big.bin")
        assert resp.status == 200 and resp.body == b""
        assert resp.header("content-length") == str(len(BIG))
        assert c.request("GET", "/small.txt").body == b"small\n"
    assert calls == []


def test_a_slow_reader_gets_it_all_through_eagain(served: Served, calls, root: Path) -> None:
    sock = small_buffer_socket(served.port)
    with sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_for(lambda: BlockingIOError in calls, "the socket buffer to fill up")
        _, body = read_response(sock, HUGE_SIZE)
        assert body == (root / "huge.bin").read_bytes()
        _, small = read_response(sock, 6)
        assert small == b"small\n"


def test_eagain_on_every_other_call_still_sends_everything(served: Served, monkeypatch) -> None:
    real = os.sendfile
    turn = [0]

    def flaky(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        turn[0] += 1
        if turn[0] % 2:
            raise BlockingIOError  # the dup'd fd is polled for writability, then sendfile again
        return real(out_fd, in_fd, offset, min(count, 100_000))

    monkeypatch.setattr(os, "sendfile", flaky)
    with served.conn() as c:
        assert c.request("GET", "/big.bin").body == BIG
        assert c.request("GET", "/small.txt").body == b"small\n"
    assert turn[0] > 20


def test_when_the_socket_cannot_be_polled_pread_sends_the_rest(served: Served, monkeypatch) -> None:
    real = os.sendfile
    state = {"sent": 0}

    def once_then_full(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if state["sent"]:
            raise BlockingIOError
        state["sent"] = real(out_fd, in_fd, offset, min(count, 300_000))
        return state["sent"]

    real_wait = Http1Connection._wait_writable

    async def cannot_poll(self, dup):
        return False if dup is not None else await real_wait(self, dup)

    monkeypatch.setattr(os, "sendfile", once_then_full)
    monkeypatch.setattr(Http1Connection, "_wait_writable", cannot_poll)
    with served.conn() as c:
        assert c.request("GET", "/big.bin").body == BIG
        assert c.request("GET", "/small.txt").body == b"small\n"


def test_buffered_responses_before_the_file_keep_their_order(served: Served, root: Path, monkeypatch) -> None:
    """Pipelined in-memory responses the client has not read yet sit in the transport's buffer:
    sendfile must wait until they are in the kernel, else the file would overtake them."""
    waits: list[int | None] = []
    real_wait = Http1Connection._wait_writable

    async def recording(self, dup):
        waits.append(dup)
        return await real_wait(self, dup)

    monkeypatch.setattr(Http1Connection, "_wait_writable", recording)
    sock = small_buffer_socket(served.port)
    with sock:
        sock.sendall(b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n" * PIPELINED
                     + b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_for(lambda: None in waits, "sendfile to wait for the transport's buffer")
        for _ in range(PIPELINED):
            _, body = read_response(sock, len(MEDIUM))
            assert body == MEDIUM
        _, body = read_response(sock, len(BIG))
        assert body == BIG


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
def test_a_client_that_leaves_mid_file_is_forgotten(served: Served, calls, reset: bool) -> None:
    fds = open_fds()
    sock = small_buffer_socket(served.port)
    sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < 100_000:
        got += len(sock.recv(65536))
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_for(lambda: not served.ctx.connections, "the server to drop the connection")
    wait_for(lambda: open_fds() <= fds, "the server's fds (socket, file, dup) to be closed")
    with served.conn() as c:  # and it serves on
        assert c.request("GET", "/big.bin").body == BIG


def test_tls_connections_never_use_sendfile(served: Served) -> None:
    class TlsLike:
        def get_extra_info(self, name, default=None):
            return object() if name == "ssl_object" else default

    conn = Http1Connection(served.ctx)
    conn.transport = TlsLike()  # type: ignore[assignment]
    assert conn._sendfile_socket() is None
