"""serve_static: content types, validators, conditionals and ranges against real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from askr.front import static
from askr.front.router import StaticFile
from askr.front.static import (
    StaticResponse,
    build_types,
    configure_types,
    content_type,
    http_date,
    parse_http_date,
    serve_static,
)
from askr.mime import CHARSET_TYPES

MTIME = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
MTIME_DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"
BODY = b"0123456789abcdefghij"  # 20 bytes
ETAG = b'"%x-%x"' % (MTIME, len(BODY))


def make(tmp_path: Path, name: str = "a.txt", data: bytes = BODY, mtime: int = MTIME) -> StaticFile:
    path = tmp_path / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return StaticFile(str(path), os.stat(path))


def hdrs(resp: StaticResponse) -> dict[bytes, bytes]:
    names = [name for name, _ in resp.headers]
    assert len(names) == len(set(names)), "duplicate header"
    assert all(name == name.lower() for name in names)
    return dict(resp.headers)


@pytest.fixture
def f(tmp_path: Path) -> StaticFile:
    return make(tmp_path)


# --- plain GET / HEAD -------------------------------------------------------------------------


def test_get_full(f: StaticFile) -> None:
    resp = serve_static(b"GET", {}, f)
    assert resp.status == 200
    assert resp.body == BODY
    assert resp.file_path is None
    h = hdrs(resp)
    assert h == {
        b"content-type": b"text/plain",
        b"content-length": b"20",
        b"last-modified": MTIME_DATE,
        b"etag": ETAG,
        b"accept-ranges": b"bytes",
    }


def test_etag_is_nginx_style(f: StaticFile) -> None:
    assert hdrs(serve_static(b"GET", {}, f))[b"etag"] == b'"2ebc98a1-14"'


def test_no_connection_level_headers(f: StaticFile) -> None:
    h = hdrs(serve_static(b"GET", {}, f))
    for name in (b"date", b"server", b"connection"):
        assert name not in h


def test_head_same_headers_no_body(f: StaticFile) -> None:
    get = serve_static(b"GET", {}, f)
    head = serve_static(b"HEAD", {}, f)
    assert head.status == 200
    assert head.body == b""
    assert head.file_path is None
    assert head.headers == get.headers
    assert hdrs(head)[b"content-length"] == b"20"


def test_head_ignores_range(f: StaticFile) -> None:
    resp = serve_static(b"HEAD", {b"range": b"bytes=0-1"}, f)
    assert resp.status == 200
    assert hdrs(resp)[b"content-length"] == b"20"
    assert b"content-range" not in hdrs(resp)


def test_empty_file(tmp_path: Path) -> None:
    resp = serve_static(b"GET", {}, make(tmp_path, "e.txt", b""))
    assert resp.status == 200
    assert resp.body == b""
    assert hdrs(resp)[b"content-length"] == b"0"


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get", b"PATCH"])
def test_other_methods_405(f: StaticFile, method: bytes) -> None:
    resp = serve_static(method, {}, f)
    assert resp.status == 405
    assert resp.body == b""
    assert hdrs(resp)[b"allow"] == b"GET, HEAD"


def test_large_file_is_described_not_read(tmp_path: Path) -> None:
    data = os.urandom(static.MAX_BUFFERED + 1)
    f = make(tmp_path, "big.bin", data)
    resp = serve_static(b"GET", {}, f)
    assert resp.status == 200
    assert resp.body == b""
    assert (resp.file_path, resp.offset, resp.count) == (f.path, 0, len(data))
    assert hdrs(resp)[b"content-length"] == str(len(data)).encode()


def test_file_at_threshold_is_read(tmp_path: Path) -> None:
    data = os.urandom(static.MAX_BUFFERED)
    resp = serve_static(b"GET", {}, make(tmp_path, "edge.bin", data))
    assert resp.body == data
    assert resp.file_path is None


def test_large_file_small_range_is_read(tmp_path: Path) -> None:
    data = os.urandom(static.MAX_BUFFERED * 2)
    resp = serve_static(b"GET", {b"range": b"bytes=1000-1099"}, make(tmp_path, "big.bin", data))
    assert resp.status == 206
    assert resp.body == data[1000:1100]
    assert resp.file_path is None


def test_large_file_large_range_uses_offset(tmp_path: Path) -> None:
    data = os.urandom(static.MAX_BUFFERED * 3)
    f = make(tmp_path, "big.bin", data)
    resp = serve_static(b"GET", {b"range": b"bytes=100-"}, f)
    assert resp.status == 206
    assert (resp.file_path, resp.offset, resp.count) == (f.path, 100, len(data) - 100)


def test_head_large_file_has_no_file_path(tmp_path: Path) -> None:
    resp = serve_static(b"HEAD", {}, make(tmp_path, "big.bin", b"\0" * (static.MAX_BUFFERED + 5)))
    assert resp.file_path is None
    assert resp.body == b""
    assert hdrs(resp)[b"content-length"] == str(static.MAX_BUFFERED + 5).encode()


def test_file_removed_after_routing_is_404(f: StaticFile) -> None:
    os.unlink(f.path)
    assert serve_static(b"GET", {}, f).status == 404


def test_file_shrunk_after_routing_is_described_afresh(f: StaticFile) -> None:
    Path(f.path).write_bytes(b"short")
    os.utime(f.path, (MTIME + 60, MTIME + 60))
    resp = serve_static(b"GET", {}, f)
    assert resp.status == 200
    assert resp.body == b"short"
    h = hdrs(resp)
    assert h[b"content-length"] == b"5"
    assert h[b"etag"] == b'"%x-5"' % (MTIME + 60)


# --- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ctype"),
    [  # what nginx's mime.types answers (checked against Debian's nginx in test_fpm_fidelity)
        ("app.js", b"application/javascript"),
        ("mod.mjs", b"application/octet-stream"),
        ("data.json", b"application/json"),
        ("logo.svg", b"image/svg+xml"),
        ("lib.wasm", b"application/wasm"),
        ("pic.webp", b"image/webp"),
        ("pic.avif", b"image/avif"),
        ("font.woff2", b"font/woff2"),
        ("font.woff", b"font/woff"),
        ("style.css", b"text/css"),
        ("page.html", b"text/html"),
        ("PAGE.HTML", b"text/html"),
        ("photo.jpg", b"image/jpeg"),
        ("img.png", b"image/png"),
        ("doc.pdf", b"application/pdf"),
        ("site.webmanifest", b"application/octet-stream"),
        ("x.tar.gz", b"application/octet-stream"),
        ("blob.unknownext", b"application/octet-stream"),
        ("README", b"application/octet-stream"),
        (".htaccess", b"application/octet-stream"),
    ],
)
def test_content_type(name: str, ctype: bytes) -> None:
    assert content_type("/srv/www/" + name) == ctype


def test_content_type_ignores_dots_in_directories() -> None:
    assert content_type("/srv/v1.2/LICENSE") == b"application/octet-stream"


def test_content_type_in_response(tmp_path: Path) -> None:
    assert hdrs(serve_static(b"GET", {}, make(tmp_path, "app.js")))[b"content-type"] == (
        b"application/javascript"
    )


def test_charset_goes_on_the_listed_types_only() -> None:
    """[static] charset: nginx's `charset utf-8` with its default charset_types."""
    types = build_types("utf-8", CHARSET_TYPES)
    assert types[".html"] == b"text/html; charset=utf-8"
    assert types[".js"] == b"application/javascript; charset=utf-8"
    assert types[".css"] == b"text/css"  # not in nginx's charset_types
    assert build_types("utf-8", ("text/css",))[".css"] == b"text/css; charset=utf-8"
    assert build_types(None, ("text/css",))[".css"] == b"text/css"


def test_type_overrides_add_and_replace() -> None:
    types = build_types(overrides={"mjs": "text/javascript", ".JS": "text/javascript"})
    assert types[".mjs"] == b"text/javascript"
    assert types[".js"] == b"text/javascript"


def test_configured_types_are_the_ones_served(tmp_path: Path) -> None:
    try:
        configure_types(build_types("utf-8", overrides={"mjs": "text/javascript"}))
        assert content_type("/srv/app.mjs") == b"text/javascript"
        assert content_type("/srv/readme.txt") == b"text/plain; charset=utf-8"
    finally:
        configure_types(build_types())
    assert content_type("/srv/readme.txt") == b"text/plain"


# --- dates ------------------------------------------------------------------------------------


def test_http_date_format() -> None:
    assert http_date(MTIME) == MTIME_DATE
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.parametrize("text", [MTIME_DATE, b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sun Nov  6 08:49:37 1994"])
def test_parse_http_date_all_three_forms(text: bytes) -> None:
    assert parse_http_date(text) == MTIME


@pytest.mark.parametrize("text", [b"", b"garbage", b"yesterday", b"\xff\xfe"])
def test_parse_http_date_rejects_garbage(text: bytes) -> None:
    assert parse_http_date(text) is None


# --- If-None-Match / If-Modified-Since --------------------------------------------------------


def assert_304(resp: StaticResponse) -> None:
    assert resp.status == 304
    assert resp.body == b""
    assert resp.file_path is None
    h = hdrs(resp)
    assert h[b"etag"] == ETAG
    assert h[b"last-modified"] == MTIME_DATE
    assert b"content-length" not in h


@pytest.mark.parametrize(
    "inm", [ETAG, b"*", b"W/" + ETAG, b'"nope", ' + ETAG, b'"a","b" ,W/' + ETAG + b' , "c"', b"  *  "]
)
def test_if_none_match_hits(f: StaticFile, inm: bytes) -> None:
    assert_304(serve_static(b"GET", {b"if-none-match": inm}, f))
    assert_304(serve_static(b"HEAD", {b"if-none-match": inm}, f))


@pytest.mark.parametrize("inm", [b'"nope"', b'"2ebc98a1-15"', b'W/"x"', b'"2ebc98a1"'])
def test_if_none_match_misses(f: StaticFile, inm: bytes) -> None:
    resp = serve_static(b"GET", {b"if-none-match": inm}, f)
    assert resp.status == 200
    assert resp.body == BODY


def test_if_none_match_miss_overrides_if_modified_since(f: StaticFile) -> None:
    resp = serve_static(b"GET", {b"if-none-match": b'"other"', b"if-modified-since": MTIME_DATE}, f)
    assert resp.status == 200


def test_if_none_match_hit_beats_stale_if_modified_since(f: StaticFile) -> None:
    resp = serve_static(b"GET", {b"if-none-match": ETAG, b"if-modified-since": http_date(MTIME - 100)}, f)
    assert_304(resp)


@pytest.mark.parametrize(
    "ims",
    [MTIME_DATE, http_date(MTIME + 3600), b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sun Nov  6 08:49:37 1994"],
)
def test_if_modified_since_not_modified(f: StaticFile, ims: bytes) -> None:
    assert_304(serve_static(b"GET", {b"if-modified-since": ims}, f))


@pytest.mark.parametrize("ims", [http_date(MTIME - 1), b"not a date", b""])
def test_if_modified_since_modified_or_invalid(f: StaticFile, ims: bytes) -> None:
    resp = serve_static(b"GET", {b"if-modified-since": ims}, f)
    assert resp.status == 200
    assert resp.body == BODY


def test_conditional_304_takes_precedence_over_range(f: StaticFile) -> None:
    assert_304(serve_static(b"GET", {b"if-none-match": ETAG, b"range": b"bytes=0-1"}, f))


# --- Range ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        (b"bytes=0-4", 0, 4),
        (b"bytes=5-9", 5, 9),
        (b"bytes=15-", 15, 19),
        (b"bytes=0-", 0, 19),
        (b"bytes=-3", 17, 19),
        (b"bytes=-100", 0, 19),
        (b"bytes=10-1000", 10, 19),
        (b"bytes=19-19", 19, 19),
        (b"Bytes=1-2", 1, 2),
        (b" bytes= 1 - 2 ", 1, 2),
    ],
)
def test_single_range(f: StaticFile, spec: bytes, start: int, end: int) -> None:
    resp = serve_static(b"GET", {b"range": spec}, f)
    assert resp.status == 206
    assert resp.body == BODY[start : end + 1]
    h = hdrs(resp)
    assert h[b"content-range"] == b"bytes %d-%d/20" % (start, end)
    assert h[b"content-length"] == b"%d" % (end - start + 1)
    assert h[b"content-type"] == b"text/plain"
    assert h[b"etag"] == ETAG


@pytest.mark.parametrize("spec", [b"bytes=20-", b"bytes=20-30", b"bytes=100-", b"bytes=-0"])
def test_unsatisfiable_range_416(f: StaticFile, spec: bytes) -> None:
    resp = serve_static(b"GET", {b"range": spec}, f)
    assert resp.status == 416
    assert resp.body == b""
    assert hdrs(resp)[b"content-range"] == b"bytes */20"


def test_any_range_of_empty_file_is_416(tmp_path: Path) -> None:
    resp = serve_static(b"GET", {b"range": b"bytes=-5"}, make(tmp_path, "e.txt", b""))
    assert resp.status == 416
    assert hdrs(resp)[b"content-range"] == b"bytes */0"


@pytest.mark.parametrize(
    "spec",
    [
        b"bytes=0-1,5-6",
        b"bytes=0-1, 3-",
        b"bytes=5-2",
        b"bytes=abc",
        b"bytes=1-x",
        b"bytes=-",
        b"bytes=--1",
        b"bytes=+1-2",
        b"bytes=0x1-2",
        b"items=0-1",
        b"0-1",
        b"",
    ],
)
def test_invalid_or_multiple_ranges_ignored(f: StaticFile, spec: bytes) -> None:
    resp = serve_static(b"GET", {b"range": spec}, f)
    assert resp.status == 200
    assert resp.body == BODY
    assert b"content-range" not in hdrs(resp)


@pytest.mark.parametrize("if_range", [ETAG, MTIME_DATE, b"Sunday, 06-Nov-94 08:49:37 GMT"])
def test_if_range_match_gives_206(f: StaticFile, if_range: bytes) -> None:
    resp = serve_static(b"GET", {b"range": b"bytes=0-1", b"if-range": if_range}, f)
    assert resp.status == 206
    assert resp.body == b"01"


@pytest.mark.parametrize(
    "if_range", [b'"other"', b"W/" + ETAG, http_date(MTIME + 1), http_date(MTIME - 1), b"garbage"]
)
def test_if_range_mismatch_gives_full_200(f: StaticFile, if_range: bytes) -> None:
    resp = serve_static(b"GET", {b"range": b"bytes=0-1", b"if-range": if_range}, f)
    assert resp.status == 200
    assert resp.body == BODY


def test_if_range_mismatch_skips_416(f: StaticFile) -> None:
    resp = serve_static(b"GET", {b"range": b"bytes=50-", b"if-range": b'"other"'}, f)
    assert resp.status == 200
