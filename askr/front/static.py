"""Serve a StaticFile: content type, validators, conditional requests and single byte ranges.

HTTP semantics follow RFC 9110 (sections 13 and 14) the way nginx's static module applies them:
strong ETag `"<hex mtime>-<hex size>"`, If-None-Match before If-Modified-Since, one range at most
(several ranges are ignored and the whole file is sent, which RFC 9110 allows). No I/O happens
for 304/405/416/HEAD; small bodies are read with one open/read; large ones are left to sendfile.
"""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_tz

from askr.front.router import StaticFile
from askr.mime import CHARSET_TYPES, NGINX_TYPES

# Bodies up to this size are read into memory; bigger ones are described for sendfile.
MAX_BUFFERED = 256 * 1024

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class StaticResponse:
    status: int
    headers: Headers  # lower-case names; the front adds Date/Server/Connection
    body: bytes = b""  # bytes to send (empty for HEAD/304/416/405, and for file_path responses)
    # Large bodies: send `count` bytes of `file_path` from `offset` (body stays empty).
    file_path: str | None = None
    offset: int = 0
    count: int = 0


_OCTET_STREAM = b"application/octet-stream"


def build_types(charset: str | None = None, charset_types: tuple[str, ...] = CHARSET_TYPES,
                overrides: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Extension (".css", lower case) -> Content-Type value: nginx's mime.types, then `overrides`
    ({"mjs": "text/javascript"}); with a `charset`, "; charset=..." on the types listed in
    `charset_types` (nginx's `charset` and `charset_types`)."""
    table = {ext: ctype for ctype, exts in NGINX_TYPES.items() for ext in exts}
    table.update({ext.lower().lstrip("."): ctype for ext, ctype in (overrides or {}).items()})
    with_charset = frozenset(charset_types) if charset else frozenset()
    return {"." + ext: (f"{ctype}; charset={charset}" if ctype in with_charset else ctype).encode("ascii")
            for ext, ctype in table.items()}


_TYPES = build_types()


def configure_types(types: dict[str, bytes]) -> None:
    """Install the table content_type() answers from (a front does this once, from [static])."""
    global _TYPES
    _TYPES = types


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")

_ALLOW = [(b"allow", b"GET, HEAD"), (b"content-length", b"0")]
_EMPTY = (b"content-length", b"0")


def content_type(path: str) -> bytes:
    """The content-type header value for a file name, by its (case-insensitive) extension."""
    dot = path.rfind(".")
    # A leading dot is a hidden name, not an extension (".htaccess"); a dot before the last
    # slash belongs to a directory.
    if dot <= path.rfind(os.sep) + 1:
        return _OCTET_STREAM
    return _TYPES.get(path[dot:].lower(), _OCTET_STREAM)


def http_date(ts: int) -> bytes:
    """IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), without locale-dependent strftime."""
    t = time.gmtime(ts)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )


def parse_http_date(value: bytes) -> int | None:
    """Seconds since the epoch for any of the three HTTP date forms; None if unparseable."""
    try:
        parsed = parsedate_tz(value.decode("latin-1"))
        if parsed is None:
            return None
        # asctime dates carry no zone: HTTP dates are always GMT.
        return calendar.timegm((*parsed[:6], 0, 0, 0)) - (parsed[9] or 0)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


class _Unsatisfiable:
    pass


_UNSATISFIABLE = _Unsatisfiable()


def _parse_range(value: bytes, size: int) -> tuple[int, int] | _Unsatisfiable | None:
    """One `bytes=` range as inclusive (first, last); None when the header is to be ignored."""
    value = value.strip()
    if value[:6].lower() != b"bytes=":
        return None
    spec = value[6:]
    if b"," in spec:
        return None  # several ranges: we send the whole file rather than multipart/byteranges
    first, dash, last = spec.partition(b"-")
    if not dash:
        return None
    first = first.strip()
    last = last.strip()
    if first:
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else size - 1
        if last and end < start:
            return None  # RFC 9110 14.1.1: invalid, so ignored
        if start >= size:
            return _UNSATISFIABLE
        return start, min(end, size - 1)
    if not last.isdigit():
        return None
    suffix = int(last)
    if suffix == 0 or size == 0:
        return _UNSATISFIABLE
    return max(0, size - suffix), size - 1


def _etag_listed(value: bytes, etag: bytes) -> bool:
    """Weak comparison against an If-None-Match list."""
    if value.strip() == b"*":
        return True
    # Our tag is `"hex-hex"` with its quotes; inside a well-formed list it can only occur as a
    # whole element, with or without W/ before it, so a substring test is the weak comparison.
    return etag in value


def _if_range_holds(value: bytes, etag: bytes, last_modified: bytes, mtime: int) -> bool:
    value = value.strip()
    if value[:1] == b'"':
        return value == etag  # strong comparison
    if value[:2] == b"W/":
        return False  # a weak tag never satisfies If-Range
    return value == last_modified or parse_http_date(value) == mtime


def validators(st: os.stat_result) -> tuple[bytes, bytes, int]:
    """(ETag, Last-Modified, whole-second mtime) of a file, as nginx forms them."""
    mtime = int(st.st_mtime)
    return b'"%x-%x"' % (mtime, st.st_size), http_date(mtime), mtime


def not_modified(inm: bytes | None, ims: bytes | None, etag: bytes, last_modified: bytes, mtime: int) -> bool:
    """Whether If-None-Match / If-Modified-Since make this a 304 (RFC 9110 13.2.2: If-None-Match
    wins; If-Modified-Since only counts without it)."""
    if inm is not None:
        return _etag_listed(inm, etag)
    if ims is None:
        return False
    if ims == last_modified:
        return True  # the client echoed our own date: the cheap, common case
    since = parse_http_date(ims)
    return since is not None and mtime <= since


def ok_headers(path: str, etag: bytes, last_modified: bytes) -> Headers:
    """The 200's headers before Content-Length (the hot-file cache builds its heads from these too)."""
    return [
        (b"content-type", content_type(path)),
        (b"last-modified", last_modified),
        (b"etag", etag),
        (b"accept-ranges", b"bytes"),
    ]


def _plan(
    method: bytes, headers: Mapping[bytes, bytes], path: str, st: os.stat_result
) -> tuple[int, Headers, int, int]:
    """Status, headers and the byte span to send, from metadata alone."""
    size = st.st_size
    etag, last_modified, mtime = validators(st)
    if not_modified(headers.get(b"if-none-match"), headers.get(b"if-modified-since"), etag, last_modified,
                    mtime):
        return 304, [(b"etag", etag), (b"last-modified", last_modified)], 0, 0

    out = ok_headers(path, etag, last_modified)
    # Range is defined for GET only (RFC 9110 14.2); HEAD gets the plain 200 headers.
    rng = headers.get(b"range") if method == b"GET" else None
    if rng is not None:
        if_range = headers.get(b"if-range")
        if if_range is None or _if_range_holds(if_range, etag, last_modified, mtime):
            span = _parse_range(rng, size)
            if span is _UNSATISFIABLE:
                return 416, [(b"content-range", b"bytes */%d" % size), _EMPTY], 0, 0
            if isinstance(span, tuple):
                start, end = span
                count = end - start + 1
                out.append((b"content-range", b"bytes %d-%d/%d" % (start, end, size)))
                out.append((b"content-length", b"%d" % count))
                return 206, out, start, count
    out.append((b"content-length", b"%d" % size))
    return 200, out, 0, size


def serve_static(method: bytes, headers: Mapping[bytes, bytes], f: StaticFile) -> StaticResponse:
    """Answer GET/HEAD for a routed static file; `headers` has lower-case names."""
    if method != b"GET" and method != b"HEAD":
        return StaticResponse(405, list(_ALLOW))
    status, out, offset, count = _plan(method, headers, f.path, f.st)
    if method == b"HEAD" or count == 0:
        return StaticResponse(status, out)
    if count > MAX_BUFFERED:
        return StaticResponse(status, out, file_path=f.path, offset=offset, count=count)
    try:
        with open(f.path, "rb", buffering=0) as fh:
            if offset:
                fh.seek(offset)
            body = fh.read(count)
            if len(body) != count:
                # Shrunk since the router's stat (a deploy mid-request): describe what is there now.
                status, out, offset, count = _plan(method, headers, f.path, os.fstat(fh.fileno()))
                if count > MAX_BUFFERED:
                    return StaticResponse(status, out, file_path=f.path, offset=offset, count=count)
                fh.seek(offset)
                body = fh.read(count) if count else b""
                if len(body) != count:
                    return StaticResponse(503, [_EMPTY])  # still moving under us; let the client retry
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return StaticResponse(404, [_EMPTY])
    except PermissionError:
        return StaticResponse(403, [_EMPTY])
    return StaticResponse(status, out, body)
