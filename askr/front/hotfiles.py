"""Small static files answered from memory: nginx's open_file_cache, plus the bytes and the heads.

A hit skips routing and every system call: the entry, keyed by the raw request path, remembers what
the router decided for that path (always a StaticFile: the router's security rules ran first),
the file's bytes, and its response heads built once. Per request only Date (formatted once a
second) and Connection are added, and If-None-Match / If-Modified-Since are answered from the
stored validators, so the bytes on the wire are exactly what static.serve_static would send.

Freshness: an entry is re-validated at most every `valid` seconds (1 s, like RouteCache and
nginx's open_file_cache_valid) by running the router again and comparing the file's device,
inode, size, mtime and ctime. A file changed, replaced, removed or newly refused is seen within
that time; until then the old bytes go out whole, with their own ETag and length (never a mix).
A file whose mtime was that recent when it was read, so that a further write in the same clock tick
would leave its stat unchanged ("racy", as git calls it), is read again at its next re-validation
whatever its stat says.

Only GET without Range is answered here. HEAD, ranges, other methods and files over MAX_FILE take
the ordinary path. Memory is bounded by `max_bytes` ([static] cache_size, per front process):
the entries re-validated longest ago are evicted first, an LRU at one-second resolution that
costs nothing per hit.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable

from askr.config import CODINGS
from askr.front.compression import VARY, Compression, sibling, weak_etag
from askr.front.responses import DATE, SERVER_HEADER, STATUS_LINES
from askr.front.router import Router, StaticFile
from askr.front.static import Headers, content_type, not_modified, ok_headers, validators

MAX_FILE = 64 * 1024  # bigger files are not worth the memory: the copy is no longer the cost
VALID = 1.0
# Per-entry bookkeeping (the entry, its header tuples, dict slots), charged against max_bytes so
# that many tiny or empty files cannot grow the cache past its bound either.
ENTRY_OVERHEAD = 1024
RACY_NS = 2_000_000_000  # an mtime this close to the read may not change with a write yet to come

_END = b"\r\n"
_CLOSE_END = b"connection: close\r\n\r\n"
_OK = STATUS_LINES[200]
_NOT_MODIFIED = STATUS_LINES[304]
_SERVER_VALUE = SERVER_HEADER[len(b"server: "):-2]

Ident = tuple[int, int, int, int, int]


def _ident(st: os.stat_result) -> Ident:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class HotResponse:
    """One representation of a file (as it is, or compressed), ready to send over HTTP/1.1 or
    HTTP/2. `etag` is what If-None-Match is compared with (weakly: the quoted tag, without W/)."""

    __slots__ = ("body", "charge", "etag", "h1_not_modified", "h1_ok", "h2_not_modified", "h2_ok",
                 "last_modified", "mtime")

    def __init__(self, body: bytes, etag: bytes, last_modified: bytes, mtime: int, ok: Headers,
                 not_mod: Headers) -> None:
        self.body = body
        self.etag, self.last_modified, self.mtime = etag, last_modified, mtime
        # HTTP/1.1: everything after Date up to the end of the fields (Connection and the blank
        # line are the request's business), in static.serve_static's order.
        self.h1_ok = SERVER_HEADER + b"".join(b"%s: %s\r\n" % pair for pair in ok)
        self.h1_not_modified = SERVER_HEADER + b"".join(b"%s: %s\r\n" % pair for pair in not_mod)
        # HTTP/2: the header list after :status and date.
        self.h2_ok = ((b"server", _SERVER_VALUE), *ok)
        self.h2_not_modified = ((b"server", _SERVER_VALUE), *not_mod)
        self.charge = len(body) + len(self.h1_ok) + ENTRY_OVERHEAD

    def http1(self, inm: bytes | None, ims: bytes | None, close: bool) -> tuple[int, bytes, int]:
        """(status, the whole response, body bytes in it) for a GET."""
        end = _CLOSE_END if close else _END
        if (inm is not None or ims is not None) and not_modified(inm, ims, self.etag, self.last_modified,
                                                                  self.mtime):
            return 304, b"".join((_NOT_MODIFIED, DATE.get(), self.h1_not_modified, end)), 0
        return 200, b"".join((_OK, DATE.get(), self.h1_ok, end, self.body)), len(self.body)

    def http2(self, inm: bytes | None, ims: bytes | None) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """(header list, body) for a GET."""
        if (inm is not None or ims is not None) and not_modified(inm, ims, self.etag, self.last_modified,
                                                                  self.mtime):
            return [(b":status", b"304"), (b"date", DATE.field()), *self.h2_not_modified], b""
        return [(b":status", b"200"), (b"date", DATE.field()), *self.h2_ok], self.body


class HotFile(HotResponse):
    """A file's entry: its identity response, and the compressed ones made so far ([compression]:
    each built on first demand, from a precompressed sibling or by compressing `body`)."""

    __slots__ = ("compressible", "ident", "path", "racy", "siblings", "valid_until", "variants")

    def __init__(self, path: str, st: os.stat_result, body: bytes, raw_path: bytes,
                 compression: Compression | None = None) -> None:
        self.path = path
        self.ident = _ident(st)
        etag, last_modified, mtime = validators(st)
        # worth compressing on the fly (else only precompressed siblings are looked for)
        self.compressible = (compression is not None and len(body) >= compression.min_size
                             and compression.compressible(content_type(path), path))
        ok = ok_headers(path, etag, last_modified)
        ok.append((b"content-length", b"%d" % len(body)))
        not_mod = [(b"etag", etag), (b"last-modified", last_modified)]
        if self.compressible:
            ok.append(VARY)
            not_mod.append(VARY)
        super().__init__(body, etag, last_modified, mtime, ok, not_mod)
        self.charge += len(path) + len(raw_path)
        self.variants: dict[str, HotResponse] = {}  # coding -> response, made on first demand
        # precompressed siblings, looked for when the file is (re)loaded
        self.siblings: dict[str, StaticFile] = {}
        if compression is not None and compression.precompressed:
            for coding in CODINGS:
                found = sibling(coding, path, st.st_mtime_ns)
                if found is not None:
                    self.siblings[coding] = found
        self.racy = False
        self.valid_until = 0.0

    def encoded(self, coding: str, compression: Compression) -> HotResponse | None:
        """This file in `coding`: its precompressed sibling, else its body compressed; None when
        the sibling cannot be read whole (the ordinary path will answer next time)."""
        found = self.siblings.get(coding)
        if found is not None:
            try:
                with open(found.path, "rb", buffering=0) as fh:
                    body = fh.read(MAX_FILE + 1)
            except OSError:
                return None
            if len(body) != found.st.st_size or len(body) > MAX_FILE:
                return None
            etag, last_modified, mtime = validators(found.st)
            return self._variant(coding, body, etag, etag, last_modified, mtime)
        return self._variant(coding, compression.whole(coding, self.body), self.etag, weak_etag(self.etag),
                             self.last_modified, self.mtime)

    def _variant(self, coding: str, body: bytes, etag: bytes, sent_etag: bytes, last_modified: bytes,
                 mtime: int) -> HotResponse:
        ok = ok_headers(self.path, sent_etag, last_modified)
        ok += [(b"content-length", b"%d" % len(body)), (b"content-encoding", coding.encode()), VARY]
        return HotResponse(body, etag, last_modified, mtime, ok, [(b"etag", sent_etag),
                                                                  (b"last-modified", last_modified), VARY])


class HotFiles:
    """Raw request path -> HotFile, bounded by `max_bytes` (see the module docstring)."""

    __slots__ = ("_clock", "_entries", "_wall_ns", "compression", "max_bytes", "router", "size", "valid")

    def __init__(self, router: Router, max_bytes: int, valid: float = VALID,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns, compression: Compression | None = None) -> None:
        self.router = router
        self.compression = compression  # [compression]: None when neither on nor precompressed
        self.max_bytes = max_bytes
        self.valid = valid
        self.size = 0  # bytes charged by the entries held
        self._entries: OrderedDict[bytes, HotFile] = OrderedDict()
        self._clock = clock
        self._wall_ns = wall_ns

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, raw_path: bytes) -> HotFile | None:
        """The entry for this path if it is known and still valid; None: route it the ordinary way."""
        entry = self._entries.get(raw_path)
        if entry is None:
            return None
        now = self._clock()
        if now < entry.valid_until:
            return entry
        return self._revalidate(raw_path, entry, now)

    def load(self, raw_path: bytes, route: StaticFile) -> HotFile | None:
        """Read a file the router just chose for `raw_path` and remember it. None when it is too
        big or changing under us: the ordinary path answers then (and copes with the change)."""
        st = route.st
        if st.st_size > MAX_FILE or self.max_bytes <= 0:
            return None
        try:
            with open(route.path, "rb", buffering=0) as fh:
                now_st = os.fstat(fh.fileno())
                body = fh.read(st.st_size + 1)  # one byte more: a file that grew is seen now
        except OSError:
            return None
        ident = _ident(now_st)
        if ident != _ident(st) or len(body) != st.st_size:
            return None
        entry = HotFile(route.path, now_st, body, raw_path, self.compression)
        entry.racy = now_st.st_mtime_ns > self._wall_ns() - RACY_NS
        entry.valid_until = self._clock() + self.valid
        self._forget(raw_path)
        if entry.charge <= self.max_bytes:
            self._shrink(self.max_bytes - entry.charge)
            self._entries[raw_path] = entry
            self.size += entry.charge
        return entry  # serves this request even when it is too big to keep

    def respond(self, raw_path: bytes, entry: HotFile, accept: bytes | None) -> HotResponse:
        """The response for a GET of `entry` with this Accept-Encoding: as compression.
        serve_static_compressed would answer, a precompressed sibling the client accepts first,
        else the body compressed, else the file as it is. Each variant is made once, then kept
        with its entry and charged to the cache's budget."""
        compression = self.compression
        if compression is None or accept is None:
            return entry
        coding = None
        if entry.siblings:
            coding = next((c for c in compression.ranked(accept) if c in entry.siblings), None)
        if coding is None and entry.compressible:
            coding = compression.choose(accept)
        if coding is None:
            return entry
        variant = entry.variants.get(coding)
        if variant is not None:
            return variant
        variant = entry.encoded(coding, compression)
        if variant is None:
            return entry
        if self._entries.get(raw_path) is entry:  # kept: keep the variant too, within the budget
            entry.variants[coding] = variant
            entry.charge += variant.charge
            self.size += variant.charge
            self._shrink(self.max_bytes)
        return variant

    def _shrink(self, budget: int) -> None:
        """Drop the least recently loaded entries until what is held fits in `budget`."""
        while self.size > budget and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.size -= evicted.charge

    def _revalidate(self, raw_path: bytes, entry: HotFile, now: float) -> HotFile | None:
        """Route the path again, as a request without the cache would be routed."""
        route = self.router.resolve(raw_path)
        if type(route) is not StaticFile:  # now a 404, 403, redirect or script: the router decides
            self._forget(raw_path)
            return None
        if entry.racy or route.path != entry.path or _ident(route.st) != entry.ident:
            return self.load(raw_path, route)
        entry.valid_until = now + self.valid
        self._entries.move_to_end(raw_path)  # eviction takes the entries validated longest ago
        return entry

    def _forget(self, raw_path: bytes) -> None:
        entry = self._entries.pop(raw_path, None)
        if entry is not None:
            self.size -= entry.charge
