"""In-process cost of one static request in the Python front: no sockets, no event loop turns.

Feeds `GET /static-4k.txt` (the benchmark's request, as wrk sends it) to one Http1Connection or
one h2c Http2Connection writing to a fake transport, and prints µs per request; --profile adds a
cProfile of the same loop. Only ratios between runs on the same machine mean anything.

    .venv/bin/python bench/static_inproc.py [--requests 20000] [--h2] [--profile] [--no-cache]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

# bench/h2.py (the HTTP/2 benchmark) would shadow the h2 library for this script and for askr.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

from askr import config as config_mod  # noqa: E402
from askr.front.context import FrontContext  # noqa: E402
from askr.front.hotfiles import HotFiles  # noqa: E402
from askr.front.http1 import Http1Connection  # noqa: E402
from askr.front.http2 import Http2Connection  # noqa: E402
from askr.front.proxy import ProxyTrust  # noqa: E402
from askr.front.routecache import RouteCache  # noqa: E402
from askr.front.router import Router  # noqa: E402


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = 0
        self.closed = False

    def write(self, data) -> None:
        self.out += len(data)

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

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def context(root: Path, loop: asyncio.AbstractEventLoop, cache: bool) -> FrontContext:
    cfg = config_mod.load(overrides={"server.root": str(root)})
    router = Router(str(root))
    route_cache = RouteCache(router, hot=HotFiles(router, cfg.static.cache_size) if cache else None)
    return FrontContext(cfg, loop, route_cache, None, str(root).encode(), ProxyTrust(()))  # type: ignore[arg-type]


def run_http1(ctx: FrontContext, n: int) -> float:
    conn = Http1Connection(ctx)
    transport = FakeTransport()
    conn.connection_made(transport)
    request = b"GET /static-4k.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
    conn.data_received(request)
    assert transport.out > 4096, "no response"
    start = time.perf_counter()
    for _ in range(n):
        conn.data_received(request)
    return time.perf_counter() - start


def run_h2(ctx: FrontContext, n: int) -> float:
    conn = Http2Connection(ctx)
    transport = FakeTransport()
    sent: list[bytes] = []
    transport.write = sent.append  # type: ignore[method-assign]
    conn.connection_made(transport)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"127.0.0.1:8080"),
               (b":path", b"/static-4k.txt")]
    elapsed = 0.0
    ok = 0
    for i in range(n + 1):
        client.send_headers(client.get_next_available_stream_id(), headers, end_stream=True)
        data = client.data_to_send()
        start = time.perf_counter()
        conn.data_received(data)
        conn._flush_output()  # what the loop's call_soon would do
        if i:  # the first request also carries the connection preface
            elapsed += time.perf_counter() - start
        # The client reads the answer (untimed), so its streams close as a real client's do.
        for event in client.receive_data(b"".join(sent)):
            if isinstance(event, h2.events.StreamEnded):
                ok += 1
            elif isinstance(event, h2.events.DataReceived):  # keep the connection window open
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sent.clear()  # the client's WINDOW_UPDATEs go out with its next request
    assert ok == n + 1, f"{ok} of {n + 1} responses"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--h2", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-cache", action="store_true",
                        help="without the hot-file cache (askr/front/hotfiles.py)")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "static-4k.txt").write_bytes(b"x" * 4096)
        ctx = context(root, loop, cache=not args.no_cache)
        run = run_h2 if args.h2 else run_http1
        best = min(run(ctx, args.requests) for _ in range(5))
        print(f"{'h2c' if args.h2 else 'http/1.1'}: {best / args.requests * 1e6:.2f} µs per request "
              f"(best of 5 x {args.requests})")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            run(ctx, args.requests)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
