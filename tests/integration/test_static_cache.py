"""The hot-file cache in the real server (askr/front/hotfiles.py): a file changed or removed on
disk is served fresh within about a second, over HTTP/1.1 and HTTP/2 (h2c), and every response
in between is one whole version of the file, never a mix; [static] cache_size = 0 turns it off.
Large files go out by sendfile on cleartext HTTP/1.1: clients that leave mid-file or read slowly.

Waiting is a bounded poll for the change, not a sleep: the cache re-validates at most once a
second, so the new version must show within a few seconds even on a busy machine."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from askrtest import write_config
from h2client import H2Client
from rawhttp import Conn

OLD = b"the old version\n"
NEW = b"the new version, longer\n"
SEEN_WITHIN = 3.0  # seconds: one validity period (1 s) plus generous scheduling slack


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hot") / "public"
    root.mkdir()
    (root / "index.html").write_text("<p>index</p>\n")
    return root


@pytest.fixture(scope="module")
def server(askr_module_server, root, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("hotcfg"), root=root, workers=1, server={"h2c": True})
    return askr_module_server("--config", config)


def etag_size(etag: str) -> int:
    m = re.fullmatch(r'"[0-9a-f]+-([0-9a-f]+)"', etag)
    assert m, etag
    return int(m.group(1), 16)


def poll_until_changed(fetch: Callable[[], tuple[int, bytes, str | None, str | None]], old: bytes
                       ) -> tuple[float, int, bytes]:
    """Fetch until the answer is no longer `old`; every answer in between must be consistent."""
    start = time.monotonic()
    while True:
        status, body, length, etag = fetch()
        elapsed = time.monotonic() - start
        if status == 200:
            assert length == str(len(body)) and etag is not None and etag_size(etag) == len(body)
        if (status, body) != (200, old):
            return elapsed, status, body
        assert elapsed < 10 * SEEN_WITHIN, "the change never showed"
        time.sleep(0.05)


def http1_fetch(conn: Conn, target: str) -> Callable[[], tuple[int, bytes, str | None, str | None]]:
    def fetch():
        resp = conn.request("GET", target)
        return resp.status, resp.body, resp.header("content-length"), resp.header("etag")
    return fetch


def h2_fetch(client: H2Client, target: str) -> Callable[[], tuple[int, bytes, str | None, str | None]]:
    def fetch():
        resp = client.get(target)
        length, etag = resp.header(b"content-length"), resp.header(b"etag")
        return (resp.status, bytes(resp.data), length.decode() if length else None,
                etag.decode() if etag else None)
    return fetch


def replace(path: Path, data: bytes) -> None:
    """Change a file as a deploy does, with an mtime that surely differs from the old one."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))


def test_http1_a_changed_file_is_served_fresh_within_about_a_second(server, root):
    (root / "h1.txt").write_bytes(OLD)
    with Conn(server.host, server.port) as conn:  # one keep-alive connection throughout
        fetch = http1_fetch(conn, "/h1.txt")
        assert fetch()[:2] == (200, OLD)
        assert fetch()[:2] == (200, OLD)  # a hit now
        replace(root / "h1.txt", NEW)
        elapsed, status, body = poll_until_changed(fetch, OLD)
        assert (status, body) == (200, NEW)
        assert elapsed < SEEN_WITHIN
        etag = conn.request("GET", "/h1.txt").header("etag")
        assert conn.request("GET", "/h1.txt", [("If-None-Match", etag)]).status == 304


def test_http2_a_changed_file_is_served_fresh_within_about_a_second(server, root):
    (root / "h2.txt").write_bytes(OLD)
    client = H2Client("127.0.0.1", server.port, tls=False)
    try:
        fetch = h2_fetch(client, "/h2.txt")
        assert fetch()[:2] == (200, OLD)
        assert fetch()[:2] == (200, OLD)
        replace(root / "h2.txt", NEW)
        elapsed, status, body = poll_until_changed(fetch, OLD)
        assert (status, body) == (200, NEW)
        assert elapsed < SEEN_WITHIN
    finally:
        client.close()


def test_a_removed_file_stops_being_served_within_about_a_second(server, root):
    (root / "gone.txt").write_bytes(OLD)
    with Conn(server.host, server.port) as conn:
        fetch = http1_fetch(conn, "/gone.txt")
        assert fetch()[:2] == (200, OLD)
        (root / "gone.txt").unlink()
        elapsed, status, _ = poll_until_changed(fetch, OLD)
        assert status == 404 and elapsed < SEEN_WITHIN


def test_a_file_made_hidden_behind_a_symlink_swap_is_refused(server, root, tmp_path):
    """A link re-pointed out of the root is refused once the entry is re-validated."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(OLD)
    (root / "target.txt").write_bytes(OLD)
    (root / "link.txt").symlink_to(root / "target.txt")
    with Conn(server.host, server.port) as conn:
        fetch = http1_fetch(conn, "/link.txt")
        assert fetch()[:2] == (200, OLD)
        tmp_link = root / "link.tmp"
        tmp_link.symlink_to(outside)
        os.replace(tmp_link, root / "link.txt")  # atomic, as a deploy swaps links
        elapsed, status, _ = poll_until_changed(fetch, OLD)
        assert status == 404 and elapsed < SEEN_WITHIN


def test_cache_size_zero_reads_the_file_every_time(askr_server, tmp_path):
    root = tmp_path / "public"
    root.mkdir()
    (root / "f.txt").write_bytes(OLD)
    srv = askr_server("--config", write_config(tmp_path, root=root, workers=1, static={"cache_size": 0}))
    with Conn(srv.host, srv.port) as conn:
        assert conn.request("GET", "/f.txt").body == OLD
        replace(root / "f.txt", NEW)
        assert conn.request("GET", "/f.txt").body == NEW  # at once: nothing remembered


def test_large_files_by_sendfile_survive_clients_that_leave_or_dawdle(server, root):
    data = os.urandom(9 * 1024 * 1024)  # more than loopback's send buffer holds: EAGAIN on the way
    (root / "large.bin").write_bytes(data)
    request = b"GET /large.bin HTTP/1.1\r\nHost: t\r\n\r\n"
    for reset in (True, False):  # the client vanishes mid-file, with RST and with FIN
        sock = socket.create_connection((server.host, server.port), timeout=20)
        sock.sendall(request)
        got = 0
        while got < 200_000:
            got += len(sock.recv(65536))
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader: sends block
    sock.connect((server.host, server.port))
    sock.settimeout(20)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(request + b"GET /large.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5000000-\r\n\r\n")
        for status, expected in ((b"200", data), (b"206", data[5000000:])):
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = reader.readline()
                assert line, "closed early"
                head += line
            assert head.startswith(b"HTTP/1.1 " + status) and b"content-length: %d" % len(expected) in head
            body = reader.read(len(expected))
            assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
    with Conn(server.host, server.port) as conn:  # and the front is fine
        assert conn.request("GET", "/index.html").status == 200
