"""The front's Python cost of one PHP request, in-process: no sockets, no PHP, no system calls.

Usage (from the repository root):

    .venv/bin/python bench/front_path.py [--requests 10000] [--rounds 11]

It drives the real classes a front runs per request (Http1Connection, Stream, WorkerPool and
WorkerChannel, askr's default config, compression on) over stand-in transports: a keep-alive
HTTP/1.1 GET goes in as bytes, the queue message it produces is answered with the frames a
PHP worker would send (TAKEN, HEAD, BODY, END in one read), and the response bytes come out.
It reports µs of this thread's CPU time per request (the best of `--rounds`), for hello.php's
head and for a Laravel JSON answer's (Cache-Control, Date, Content-Type).

What it leaves out is most of a real front's cost: uvloop's event loop, the system calls, the
kernel's TCP work and the cold caches of a machine shared with PHP (bench/README.md, Laravel).
What it keeps is the part askr's Python decides, measured without the noise of a shared box
(thread CPU time, best of many rounds): use it to compare two versions of the front's code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import struct
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from askr import config
from askr.bridge import wire
from askr.bridge.pool import WorkerPool
from askr.front.compression import compression_of
from askr.front.context import FrontContext
from askr.front.http1 import Http1Connection
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Router

REQUEST = b"GET /index.php HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
# PHP's answers: (header lines as the worker sends them, body)
ANSWERS = {
    "hello.php": (b"Content-type: text/html; charset=UTF-8", b"Hello, world!\n"),
    "Laravel JSON": (b"Cache-Control: no-cache, private\nDate: Mon, 07 Dec 2026 19:19:13 GMT\n"
                     b"Content-Type: application/json",
                     b'{"hello":"world","framework":"laravel","version":"8.83.26"}'),
}


class Transport(asyncio.Transport):
    """Keeps the last write: the response."""

    def __init__(self) -> None:
        super().__init__()
        self.last = b""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.last = data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class Queue:
    """The request queue's front end: keeps the message sent."""

    def __init__(self) -> None:
        self.message = b""

    def send(self, data: bytes, flags: int = 0) -> int:
        self.message = data
        return len(data)


def measure(requests: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="askr-front-path-") as tmp:
        return _measure(Path(tmp), requests, rounds)


def _measure(tmp: Path, requests: int, rounds: int) -> dict[str, float]:
    root = tmp / "public"
    root.mkdir()
    (root / "index.php").write_text("<?php\n")
    (tmp / "askr.toml").write_text(f'[server]\nroot = "{root}"\nworkers = 2\n')
    cfg = config.load(tmp / "askr.toml")
    loop = uvloop.new_event_loop()
    queue = Queue()
    pool = WorkerPool(queue, None, cfg.limits.max_queue, lambda event: None)  # type: ignore[arg-type]
    ctx = FrontContext(cfg, loop, RouteCache(Router(str(root))), pool, str(root).encode(), ProxyTrust(()),
                       compression=compression_of(cfg))
    channel = pool.protocol_factory()
    channel.connection_made(Transport())
    channel.data_received(wire.frame(wire.HELLO, struct.pack("!III", 0, 1234, 1)))
    client = Transport()
    conn = Http1Connection(ctx)
    conn.connection_made(client)
    results = {}
    for name, (head, body) in ANSWERS.items():
        after_taken = (wire.frame(wire.HEAD, struct.pack("!H", 200) + head) + wire.frame(wire.RESP_BODY, body)
                       + wire.frame(wire.END, b"\0"))

        def one(after_taken: bytes = after_taken) -> None:
            conn.data_received(REQUEST)
            request_id = wire.QUEUE_HEADER.unpack_from(queue.message)[0]
            channel.data_received(wire.frame(wire.TAKEN, struct.pack("!QB", request_id, 0)) + after_taken)

        for _ in range(2000):  # warm-up
            one()
        if not client.last.startswith(b"HTTP/1.1 200 OK\r\n") or not client.last.endswith(body):
            raise SystemExit(f"front_path: unexpected response {client.last[:200]!r}")
        best = float("inf")
        for _ in range(rounds):
            gc.collect()
            started = time.thread_time()
            for _ in range(requests):
                one()
            best = min(best, (time.thread_time() - started) / requests * 1e6)
        results[name] = best
    loop.close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the front's Python cost of one PHP request, in-process")
    ap.add_argument("--requests", type=int, default=10_000, help="requests per round (default 10000)")
    ap.add_argument("--rounds", type=int, default=11, help="rounds; the best is reported (default 11)")
    args = ap.parse_args(argv)
    for name, us in measure(args.requests, args.rounds).items():
        print(f"{name}: {us:.2f} µs of front CPU per request (best of {args.rounds} x {args.requests:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
