"""A router with memory: PHP routes for a second, small static files through the hot-file cache."""

from __future__ import annotations

import time

from askr.front.hotfiles import HotFiles
from askr.front.router import PhpScript, Route, Router


class RouteCache:
    """Remembers PHP routes for a second, sparing the per-request filesystem probes.

    Only PhpScript results are kept here: they carry no file metadata that could go stale. Small
    static files are remembered, contents and all, by `hot` (askr/front/hotfiles.py, the same
    one-second trade, checked against this router); other static files are looked up afresh,
    so their sizes and ETags are exact. A file added or removed under the root changes how a
    path routes within `ttl` seconds, like nginx's open_file_cache. Both go with the router on
    a reload: a new document root starts with nothing remembered.
    """

    __slots__ = ("_clock", "_entries", "hot", "max_entries", "router", "ttl")

    def __init__(self, router: Router, ttl: float = 1.0, max_entries: int = 4096,
                 hot: HotFiles | None = None):
        self.router = router
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, Route]] = {}
        self._clock = time.monotonic
        self.hot = hot  # small static files in memory; None when [static] cache_size is 0

    def resolve(self, raw_path: bytes, query: bytes = b"") -> Route:
        now = self._clock()
        hit = self._entries.get(raw_path)
        if hit is not None and hit[0] > now:
            return hit[1]
        route = self.router.resolve(raw_path, query)
        if type(route) is PhpScript:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[raw_path] = (now + self.ttl, route)
        return route
