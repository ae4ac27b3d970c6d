"""What every connection of a front shares: configuration, router, worker pool, stats, access log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from askr.bridge.pool import WorkerPool
from askr.config import Config
from askr.front.compression import Compression
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.xsendfile import FileOffload
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

    def connection_closed(self, conn: object) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.all_closed.set()
