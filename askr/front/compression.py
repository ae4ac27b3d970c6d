"""Response compression ([compression]): choosing a coding from Accept-Encoding, the gzip, brotli
and zstd encoders, and which responses are worth compressing.

Negotiation follows RFC 9110 12.5.3: codings are weighed by q-value (q=0 refuses one), `*` stands
for every coding not named, and among equal q-values the server's order ([compression] algorithms)
wins. Identity stays acceptable unless `identity;q=0` (or `*;q=0` without an identity entry)
refuses it, and is chosen over a coding only when the client rates it higher. When nothing the
client accepts can be produced, the response goes out uncompressed anyway, as nginx and Caddy do,
rather than as a 406 that would break the page. A request without Accept-Encoding gets identity.

Streams are compressed as they are produced: every piece PHP flushes is compressed and flushed
(zlib's Z_SYNC_FLUSH, brotli's flush, a zstd block), so server-sent events and flush() still reach
the client as they happen, at the price of a few bytes per flush.
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import brotli
import zstandard

from askr.config import CODINGS
from askr.front.router import StaticFile
from askr.front.static import MAX_BUFFERED, StaticResponse, content_type, serve_static

# Accept-Encoding names -> how a precompressed sibling of a static file is named.
SUFFIXES = {"zstd": ".zst", "br": ".br", "gzip": ".gz"}
# Files that are compressed already whatever their Content-Type says (app.svgz is image/svg+xml).
_COMPRESSED_NAMES = (".svgz", ".gz", ".br", ".zst", ".tgz", ".zip")
# Statuses whose body is never compressed: none (1xx, 204, 304), or a byte range of another (206).
_NOT_COMPRESSED = frozenset((204, 206, 304))
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 8.4.1.3
VARY = (b"vary", b"Accept-Encoding")
_CACHE_MAX = 256  # distinct Accept-Encoding values remembered per front (browsers send a few)
_STREAM_SIZE_HINT = 64 * 1024
_IDLE_ZSTD_MAX = 8  # zstd stream compressors kept for reuse per front (about 400 KB each)


def parse_accept_encoding(value: bytes) -> dict[str, float]:
    """Accept-Encoding -> {coding (lower case): q}. Elements with a malformed q are ignored; a
    coding named twice keeps its first q."""
    weights: dict[str, float] = {}
    for element in value.decode("latin-1").split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, eq, arg = param.partition("=")
            if eq and name.strip().lower() == "q":
                q = _qvalue(arg.strip())
        if q < 0:
            continue
        weights.setdefault(_ALIASES.get(coding, coding), q)
    return weights


def _qvalue(text: str) -> float:
    """RFC 9110 12.4.2: "0" to "1" with at most three decimals; -1 when malformed."""
    if not text or len(text) > 5 or text[0] not in "01" or (len(text) > 1 and text[1] != "."):
        return -1.0
    try:
        q = float(text)
    except ValueError:
        return -1.0
    return q if 0.0 <= q <= 1.0 else -1.0


def acceptable(value: bytes | None, offered: tuple[str, ...]) -> list[str]:
    """The offered codings the client accepts, best first (q-value, then the order of `offered`),
    leaving out those it rates below identity. Empty: send identity."""
    if value is None:
        return []
    weights = parse_accept_encoding(value)
    star = weights.get("*")
    identity = weights.get("identity")
    ranked = []
    for rank, coding in enumerate(offered):
        q = weights.get(coding, star if star is not None else 0.0)
        if q > 0 and (identity is None or q >= identity):
            ranked.append((-q, rank, coding))
    ranked.sort()
    return [coding for _, _, coding in ranked]


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    """Keep `value` for `key` in one of a front's small caches (cleared whole when full: browsers
    send a few distinct values, a client inventing new ones only costs recomputing) and return it."""
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def zstd_stream_compressor(level: int) -> zstandard.ZstdCompressor:
    """A compressor for one stream at a time. Its tables are sized for a 64 KB input rather than
    an unknown one: an open stream (an SSE connection) holds about 400 KB instead of 800 KB, for a
    slightly worse ratio past 64 KB."""
    params = zstandard.ZstdCompressionParameters.from_level(level, source_size=_STREAM_SIZE_HINT)
    return zstandard.ZstdCompressor(compression_params=params)


class Encoder:
    """One response's streaming compressor: `chunk` compresses and flushes what PHP flushed,
    `finish` ends the stream. A zstd encoder runs on a compressor it was lent (`zstd`), handed
    back through `release` when the stream ends whole (making one costs more than compressing
    a 20 KB page); an abandoned stream's compressor is simply dropped."""

    __slots__ = ("_compress", "_end", "_flush", "_release")

    def __init__(self, coding: str, level: int, zstd: zstandard.ZstdCompressor | None = None,
                 release: Callable[[zstandard.ZstdCompressor], None] | None = None) -> None:
        self._release: Callable[[], None] | None = None
        if coding == "gzip":
            z: Any = zlib.compressobj(level, zlib.DEFLATED, 31)
            self._compress, self._end = z.compress, z.flush
            self._flush = lambda: z.flush(zlib.Z_SYNC_FLUSH)
        elif coding == "br":
            b = brotli.Compressor(quality=level)
            self._compress, self._flush, self._end = b.process, b.flush, b.finish
        else:
            compressor = zstd if zstd is not None else zstd_stream_compressor(level)
            c = compressor.compressobj()
            self._compress, self._end = c.compress, c.flush
            self._flush = lambda: c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            if release is not None:
                self._release = lambda: release(compressor)

    def chunk(self, data: bytes) -> bytes:
        return self._compress(data) + self._flush()

    def finish(self, data: bytes = b"") -> bytes:
        out = self._compress(data) + self._end()
        if self._release is not None:
            self._release()
            self._release = None
        return out


class Compression:
    """[compression] as a front applies it: which coding a request gets, whether a response is
    worth compressing, and the compressors."""

    def __init__(self, enabled: bool, algorithms: tuple[str, ...], min_size: int, types: tuple[str, ...],
                 levels: dict[str, int], precompressed: bool) -> None:
        self.enabled = enabled and bool(algorithms)
        self.algorithms = algorithms if self.enabled else ()
        self.min_size = min_size
        self.levels = levels
        self.precompressed = precompressed
        # siblings are looked for in every coding, the configured ones first
        self.sibling_order = (*algorithms, *(c for c in CODINGS if c not in algorithms))
        self._exact = frozenset(t for t in types if not t.endswith("/*"))
        self._families = tuple(t[:-1] for t in types if t.endswith("/*"))  # "text/"
        self._choices: dict[bytes | None, str | None] = {}
        self._rankings: dict[bytes | None, list[str]] = {}
        self._idle_zstd: list[zstandard.ZstdCompressor] = []  # see Encoder
        self._type_cache: dict[bytes, bool] = {}
        zstd = zstandard.ZstdCompressor(level=levels["zstd"])  # one-shot use only: never shared mid-stream
        self._whole: dict[str, Callable[[bytes], bytes]] = {
            "gzip": lambda data: zlib.compress(data, levels["gzip"], wbits=31),
            "br": lambda data: brotli.compress(data, quality=levels["br"]),
            "zstd": zstd.compress,
        }

    @classmethod
    def from_config(cls, cfg: Any) -> Compression:
        c = cfg.compression
        return cls(c.enabled, c.algorithms, c.min_size, c.types,
                   {"gzip": c.gzip_level, "br": c.br_level, "zstd": c.zstd_level}, c.precompressed)

    def choose(self, accept: bytes | None) -> str | None:
        """The coding for a response to a request with this Accept-Encoding; None: identity."""
        try:
            return self._choices[accept]
        except KeyError:
            pass
        ranked = acceptable(accept, self.algorithms)
        return _remember(self._choices, accept, ranked[0] if ranked else None)

    def ranked(self, accept: bytes | None) -> list[str]:
        """Every coding the client accepts, best first, the configured ones first among equals
        (for precompressed siblings, which exist in whatever codings the build made)."""
        try:
            return self._rankings[accept]
        except KeyError:
            pass
        return _remember(self._rankings, accept, acceptable(accept, self.sibling_order))

    def compressible(self, content_type: bytes | None, name: str = "") -> bool:
        """Whether a response of this Content-Type (and file name, for static files) is worth
        compressing."""
        if not self.enabled or content_type is None or name.endswith(_COMPRESSED_NAMES):
            return False
        known = self._type_cache.get(content_type)
        if known is None:
            media = content_type.partition(b";")[0].strip().lower().decode("latin-1")
            known = _remember(self._type_cache, content_type,
                              media in self._exact or media.startswith(self._families))
        return known

    def whole(self, coding: str, data: bytes) -> bytes:
        return self._whole[coding](data)

    def encoder(self, coding: str) -> Encoder:
        if coding != "zstd":
            return Encoder(coding, self.levels[coding])
        idle = self._idle_zstd
        zstd = idle.pop() if idle else zstd_stream_compressor(self.levels["zstd"])
        return Encoder(coding, self.levels[coding], zstd, self._zstd_done)

    def _zstd_done(self, compressor: zstandard.ZstdCompressor) -> None:
        if len(self._idle_zstd) < _IDLE_ZSTD_MAX:
            self._idle_zstd.append(compressor)

    # -- PHP responses -----------------------------------------------------------------------
    def php_head(self, accept: bytes | None, status: int, header_block: bytes,
                 known_size: int | None) -> tuple[bytes, str | None] | None:
        """PHP's response head as compression changes it, and the coding to apply (None: the
        body stays as it is, only Vary was added). None: the response is left untouched: no body
        to compress, a type not worth it, too small (`known_size`: the complete body's length,
        else None), or encoded already (Content-Encoding: zlib.output_compression, a script's
        own gzencode) or not to be transformed (Cache-Control: no-transform)."""
        if not self.enabled or status < 200 or status in _NOT_COMPRESSED or not header_block:
            return None
        if known_size is not None and known_size < self.min_size:
            return None  # before parsing the head: most API answers end here, at no cost
        lines = header_block.split(b"\n")
        content_type: bytes | None = None
        length = vary = etag = -1
        for i, line in enumerate(lines):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-type":
                content_type = value.strip()
            elif name == b"content-length":
                length = i
            elif name == b"vary":
                vary = i
            elif name == b"etag":
                etag = i
            elif (name == b"content-encoding" or name == b"content-range"
                  or (name == b"cache-control" and b"no-transform" in value.lower())):
                return None
        if not self.compressible(content_type):
            return None
        if known_size is None and length >= 0:
            declared = lines[length].partition(b":")[2].strip()
            known_size = int(declared) if declared.isdigit() else None
        if known_size is not None and known_size < self.min_size:
            return None
        if vary < 0:
            lines.append(b"Vary: Accept-Encoding")
        elif b"accept-encoding" not in lines[vary].lower() and b"*" not in lines[vary]:
            lines[vary] += b", Accept-Encoding"
        coding = self.choose(accept)
        if coding is not None:
            lines.append(b"Content-Encoding: " + coding.encode())
            if etag >= 0:
                lines[etag] = weak_etag_line(lines[etag])
            if length >= 0:
                lines[length] = b""  # the length changes; the codec frames the body
        return b"\n".join(line for line in lines if line), coding


def compression_of(cfg: Any) -> Compression | None:
    """The front's Compression from [compression]; None when it has nothing to do."""
    c = cfg.compression
    if not (c.enabled and c.algorithms) and not c.precompressed:
        return None
    return Compression.from_config(cfg)


def weak_etag_line(line: bytes) -> bytes:
    """`ETag: "x"` -> `ETag: W/"x"`: a compressed body is not byte-identical to the original, so
    its validator is weak (RFC 9110 8.8.1), as nginx makes it; a weak one stays as it is."""
    name, _, value = line.partition(b":")
    value = value.strip()
    return name + b": " + weak_etag(value)


def weak_etag(etag: bytes) -> bytes:
    return b"W/" + etag if etag[:1] == b'"' else etag


# -- static files --------------------------------------------------------------------------------
def sibling(coding: str, original: str, mtime_ns: int) -> StaticFile | None:
    """A precompressed sibling of the file `original` in this coding (app.css.br), if there is one
    no older than the original (a stale sibling left by an old build would be another file).
    Never a symlink: the router's (or X-Sendfile's) containment rules were checked for `original`
    only, a real path, and a link beside it could lead out of the root."""
    path = original + SUFFIXES[coding]
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns < mtime_ns:
        return None
    return StaticFile(path, st)


def serve_static_compressed(comp: Compression, method: bytes, headers: Mapping[bytes, bytes],
                            f: StaticFile) -> StaticResponse:
    """static.serve_static, with a precompressed sibling or the body compressed when the client
    accepts it. A Range request gets the file as it is (ranges of the identity bytes); so do files
    over static.MAX_BUFFERED (compressing them here would stall every connection of the front:
    precompress those)."""
    if (method != b"GET" and method != b"HEAD") or (method == b"GET" and b"range" in headers):
        return serve_static(method, headers, f)
    accept = headers.get(b"accept-encoding")
    if comp.precompressed and accept is not None:
        for coding in comp.ranked(accept):
            found = sibling(coding, f.path, f.st.st_mtime_ns)
            if found is None:
                continue
            resp = serve_static(method, headers, found)
            if resp.status == 200:
                resp.headers[0] = (b"content-type", content_type(f.path))
                resp.headers.append((b"content-encoding", coding.encode()))
            if resp.status == 200 or resp.status == 304:
                resp.headers.append(VARY)
                return resp
    resp = serve_static(method, headers, f)
    if (resp.status not in (200, 304) or f.st.st_size < comp.min_size
            or not comp.compressible(content_type(f.path), f.path)):
        return resp
    resp.headers.append(VARY)
    coding = comp.choose(accept)
    if coding is None or f.st.st_size > MAX_BUFFERED:
        return resp
    out = resp.headers
    for i, (name, value) in enumerate(out):
        if name == b"etag":
            out[i] = (name, weak_etag(value))
    if resp.status == 304:
        return resp
    out.insert(-1, (b"content-encoding", coding.encode()))
    if method == b"GET":
        resp.body = comp.whole(coding, resp.body)
        out[-3] = (b"content-length", b"%d" % len(resp.body))
    else:
        del out[-3]  # HEAD: the compressed length is not known without compressing
    return resp
