"""What every connection of a front shares: configuration, router, worker pool, stats, access log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial

from askr.bridge.pool import WorkerPool
from askr.config import Config
from askr.front.compression import Compression, serve_static_compressed
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.static import serve_static
from askr.front.xsendfile import FileOffload, Serve
from askr.log import AccessLog
from askr.metrics import RequestStats
from askr.readiness import BOOTING


@dataclass
class FrontContext:
    config: Config
    loop: asyncio.AbstractEventLoop
    router: RouteCache
    pool: WorkerPool
    root_bytes: bytes
    proxies: ProxyTrust
    access: AccessLog | None = None  # [log] access
    stats: RequestStats = field(default_factory=RequestStats)
    connections: set = field(default_factory=set)
    draining: bool = False
    health_path: bytes | None = None  # [server] health_path (None: off)
    offload: FileOffload | None = None  # [static] sendfile_roots / internal_locations (None: off)
    compression: Compression | None = None  # [compression]; None: neither enabled nor precompressed
    readiness: str = BOOTING  # the master's latest word (askr/readiness.py), for health_path
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)
    # how a file is answered (routed, or named by X-Sendfile): as it is, or through [compression]
    serve_file: Serve = field(init=False)

    def __post_init__(self) -> None:
        if self.compression is None:
            self.serve_file = serve_static
        else:
            self.serve_file = partial(serve_static_compressed, self.compression)

    def connection_closed(self, conn: object) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.all_closed.set()
