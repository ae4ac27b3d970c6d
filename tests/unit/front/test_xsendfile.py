"""X-Sendfile / X-Accel-Redirect: the path rules and header handling of FileOffload, then whole
requests over both HTTP versions through the fake transport and fake pool of test_stream.py (a
PHP head naming a file becomes the front's answer with that file; the worker's exchange is let go
at once)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from pathlib import Path

import pytest
from test_stream import VERSIONS, FakePool, Setup, connect, deliver

from askr import config
from askr.front.compression import compression_of
from askr.front.context import FrontContext
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Router
from askr.front.static import StaticResponse
from askr.front.xsendfile import FileOffload

PDF = b"%PDF-1.4 " + bytes(range(256)) * 8  # 2057 bytes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """public/ (the document root), private/ (a sendfile root and an internal location's
    directory) with files, links that stay in and links that lead out, and outside/."""
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.php").write_text("<?php")
    private = tmp_path / "private"
    (private / "docs").mkdir(parents=True)
    (private / "docs" / "report.pdf").write_bytes(PDF)
    (private / "a b%.txt").write_bytes(b"spaced")
    (private / ".env").write_text("SECRET")
    (private / ".git").mkdir()
    (private / ".git" / "config").write_text("SECRET")
    (private / "emptydir").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    os.symlink(outside / "secret.txt", private / "leak.txt")
    os.symlink(outside, private / "leakdir")
    os.symlink(private / "docs" / "report.pdf", private / "alias.pdf")
    os.symlink(private / ".env", private / "env.txt")
    os.symlink(private / "nowhere", private / "dangling.txt")
    return tmp_path


def offload(tree: Path, roots: bool = True, locations: bool = True) -> FileOffload:
    return FileOffload([str(tree / "private")] if roots else [],
                       {"/protected/": str(tree / "private")} if locations else {})


def answer(off: FileOffload, header_block: bytes, method: bytes = b"GET", status: int = 200,
           headers: dict[bytes, bytes] | None = None) -> StaticResponse | int:
    return off.answer(method, headers or {}, status, header_block, b"/download.php")


# -- which paths are served ----------------------------------------------------------------------
@pytest.mark.parametrize("target", ["docs/report.pdf", "alias.pdf", "docs/../docs/report.pdf",
                                    "docs//report.pdf"])
def test_x_sendfile_inside_the_root_is_served(tree: Path, target: str) -> None:
    resp = answer(offload(tree), b"X-Sendfile: " + str(tree / "private").encode() + b"/" + target.encode())
    assert isinstance(resp, StaticResponse) and (resp.status, resp.body) == (200, PDF)


@pytest.mark.parametrize("target", [
    "outside/secret.txt",  # plainly outside
    "private/../outside/secret.txt",  # lexically outside
    "private/leak.txt",  # a symlink inside the root leading out
    "private/leakdir/secret.txt",  # through a symlinked directory
    "private/dangling.txt/../../outside/secret.txt",
    "private/.env", "private/.git/config", "private/env.txt",  # hidden names, and a link to one
    "privateer/x.txt",  # a sibling sharing the root's name as a prefix
    "private",  # the root itself
])
def test_x_sendfile_breaking_a_rule_is_500_and_logged(tree: Path, target: str, caplog) -> None:
    if target == "privateer/x.txt":
        (tree / "privateer").mkdir()
        (tree / "privateer" / "x.txt").write_text("SECRET")
    caplog.set_level(logging.ERROR, "askr.front")
    assert answer(offload(tree), b"X-Sendfile: " + str(tree / target).encode()) == 500
    assert "X-Sendfile" in caplog.text and str(tree / target) in caplog.text


@pytest.mark.parametrize("value", [b"docs/report.pdf", b"", b"/" + b"\0"])
def test_x_sendfile_must_be_an_absolute_path(tree: Path, value: bytes, caplog) -> None:
    assert answer(offload(tree), b"X-Sendfile: " + value) == 500
    assert "not an absolute path" in caplog.text


def test_x_sendfile_is_taken_literally_without_percent_decoding(tree: Path) -> None:
    base = str(tree / "private").encode()
    resp = answer(offload(tree), b"X-Sendfile: " + base + b"/a b%.txt")
    assert isinstance(resp, StaticResponse) and resp.body == b"spaced"
    assert answer(offload(tree), b"X-Sendfile: " + base + b"/a%20b%25.txt") == 404


def test_missing_file_is_404_directory_is_404_unreadable_is_403(tree: Path, caplog) -> None:
    base = str(tree / "private").encode()
    assert answer(offload(tree), b"X-Sendfile: " + base + b"/missing.pdf") == 404
    assert answer(offload(tree), b"X-Sendfile: " + base + b"/dangling.txt") == 404  # link to nothing, inside
    assert answer(offload(tree), b"X-Sendfile: " + base + b"/emptydir") == 404
    assert "no such file" in caplog.text and "not a regular file" in caplog.text
    locked = tree / "private" / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("x")
    locked.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads through any mode
            assert answer(offload(tree), b"X-Sendfile: " + base + b"/locked/f.txt") == 403
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("uri,body", [
    (b"/protected/docs/report.pdf", PDF),
    (b"/protected/docs/report.pdf?download=1", PDF),  # the query is no part of the file's name
    (b"/protected/a%20b%25.txt", b"spaced"),  # a URI: percent-decoded
    (b"/protected/docs/../alias.pdf", PDF),  # normalised as request paths are
    (b"/protected//docs/./report.pdf", PDF),
])
def test_x_accel_redirect_maps_the_uri_into_its_location(tree: Path, uri: bytes, body: bytes) -> None:
    resp = answer(offload(tree), b"X-Accel-Redirect: " + uri)
    assert isinstance(resp, StaticResponse) and (resp.status, resp.body) == (200, body)


@pytest.mark.parametrize("uri,status", [
    (b"/protected/../outside/secret.txt", 500),  # leaves the prefix: no location matches
    (b"/protected/%2e%2e/outside/secret.txt", 500),
    (b"/protected/leak.txt", 500),  # a symlink out of the directory
    (b"/protected/.env", 500), (b"/protected/%2egit/config", 500),  # hidden names
    (b"/protected/", 500), (b"/protected", 500),  # the location itself is no file
    (b"/other/docs/report.pdf", 500),  # no such location
    (b"/protected/bad%zzescape", 500), (b"/protected/a%00b", 500), (b"../protected/x", 500),
    (b"/protected/docs/", 404),  # a directory
    (b"/protected/nothing.pdf", 404),
])
def test_x_accel_redirect_refusals(tree: Path, uri: bytes, status: int, caplog) -> None:
    assert answer(offload(tree), b"X-Accel-Redirect: " + uri) == status
    assert "X-Accel-Redirect" in caplog.text


def test_the_longest_location_prefix_wins(tree: Path) -> None:
    (tree / "special").mkdir()
    (tree / "special" / "report.pdf").write_bytes(b"special")
    off = FileOffload([], {"/protected/": str(tree / "private"), "/protected/docs/": str(tree / "special")})
    resp = answer(off, b"X-Accel-Redirect: /protected/docs/report.pdf")
    assert isinstance(resp, StaticResponse) and resp.body == b"special"


def test_only_the_configured_forms_are_acted_on(tree: Path) -> None:
    only_sendfile, only_accel = offload(tree, locations=False), offload(tree, roots=False)
    assert only_sendfile.wanted(b"Content-Type: text/plain\nX-Sendfile: /x")
    assert not only_sendfile.wanted(b"X-Accel-Redirect: /protected/x")
    assert only_accel.wanted(b"x-accel-redirect : /protected/x")
    assert not only_accel.wanted(b"X-Sendfile: /x\nX-Sendfile-Note: no")
    assert not only_sendfile.wanted(b"X-Sendfile-Type: X-Sendfile\nX-Note: X-Sendfile: /x")
    assert FileOffload.from_config([], {}) is None


# -- the response's headers ----------------------------------------------------------------------
def test_phps_headers_are_kept_but_those_about_its_body(tree: Path) -> None:
    head = (b"Status: 200 OK\nX-Powered-By: PHP/8.2\nContent-Type: application/pdf\n"
            b"Content-Disposition: attachment; filename=report.pdf\nCache-Control: private\n"
            b"Set-Cookie: a=1\nSet-Cookie: b=2\nContent-Length: 999999\nETag: \"php\"\n"
            b"Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\nAccept-Ranges: none\nX-Accel-Buffering: no\n"
            b"X-Sendfile: " + str(tree / "private" / "docs" / "report.pdf").encode())
    resp = answer(offload(tree), head)
    assert isinstance(resp, StaticResponse)
    names = [n for n, _ in resp.headers]
    fields = dict(resp.headers)
    assert fields[b"content-type"] == b"application/pdf"
    assert fields[b"content-disposition"] == b"attachment; filename=report.pdf"
    assert fields[b"cache-control"] == b"private" and fields[b"x-powered-by"] == b"PHP/8.2"
    assert [v for n, v in resp.headers if n == b"set-cookie"] == [b"a=1", b"b=2"]
    assert fields[b"content-length"] == b"%d" % len(PDF)  # the file's, once
    for name in (b"content-length", b"etag", b"last-modified", b"accept-ranges", b"content-type"):
        assert names.count(name) == 1, name
    assert fields[b"etag"] != b'"php"' and fields[b"accept-ranges"] == b"bytes"
    assert b"x-sendfile" not in names and b"x-accel-buffering" not in names and b"status" not in names


def test_phps_default_content_type_gives_way_to_the_mime_table(tree: Path) -> None:
    target = b"\nX-Sendfile: " + str(tree / "private" / "docs" / "report.pdf").encode()
    default = answer(offload(tree), b"Content-type: text/html; charset=UTF-8" + target)
    assert dict(default.headers)[b"content-type"] == b"application/pdf"  # type: ignore[union-attr]
    chosen = answer(offload(tree), b"Content-Type: text/html; charset=UTF-8" + target)
    assert dict(chosen.headers)[b"content-type"] == b"text/html; charset=UTF-8"  # type: ignore[union-attr]
    old_style = answer(offload(tree), b"Content-type: application/x-custom" + target)
    assert dict(old_style.headers)[b"content-type"] == b"application/x-custom"  # type: ignore[union-attr]


def test_range_conditionals_and_head_are_the_files(tree: Path) -> None:
    off = offload(tree)
    head = b"X-Sendfile: " + str(tree / "private" / "docs" / "report.pdf").encode()
    ranged = answer(off, head, headers={b"range": b"bytes=0-3"})
    assert (ranged.status, ranged.body) == (206, PDF[:4])  # type: ignore[union-attr]
    assert dict(ranged.headers)[b"content-range"] == b"bytes 0-3/%d" % len(PDF)  # type: ignore[union-attr]
    etag = dict(ranged.headers)[b"etag"]  # type: ignore[union-attr]
    assert answer(off, head, headers={b"if-none-match": etag}).status == 304  # type: ignore[union-attr]
    assert answer(off, head, headers={b"range": b"bytes=99999-"}).status == 416  # type: ignore[union-attr]
    as_head = answer(off, head, method=b"HEAD")
    assert (as_head.status, as_head.body) == (200, b"")  # type: ignore[union-attr]
    assert dict(as_head.headers)[b"content-length"] == b"%d" % len(PDF)  # type: ignore[union-attr]
    posted = answer(off, head, method=b"POST")  # answered as to GET, as nginx does
    assert (posted.status, posted.body) == (200, PDF)  # type: ignore[union-attr]


def test_phps_other_status_sends_the_whole_file_without_ranges(tree: Path) -> None:
    head = b"X-Sendfile: " + str(tree / "private" / "docs" / "report.pdf").encode()
    resp = answer(offload(tree), head, status=404, headers={b"range": b"bytes=0-3", b"if-none-match": b"*"})
    assert (resp.status, resp.body) == (404, PDF)  # type: ignore[union-attr]
    not_modified = answer(offload(tree), head + b"\nCache-Control: max-age=60", status=304)
    assert (not_modified.status, not_modified.body, not_modified.file_path) == (304, b"", None)  # type: ignore[union-attr]
    assert dict(not_modified.headers) == {b"cache-control": b"max-age=60"}  # type: ignore[union-attr]


def test_large_files_are_left_to_the_sendfile_path(tree: Path) -> None:
    big = tree / "private" / "big.bin"
    big.write_bytes(b"x" * (1024 * 1024))
    resp = answer(offload(tree), b"X-Sendfile: " + str(big).encode())
    assert (resp.file_path, resp.count, resp.body) == (str(big), 1024 * 1024, b"")  # type: ignore[union-attr]


# -- the request to PHP --------------------------------------------------------------------------
def test_php_is_told_the_sendfile_type_and_never_the_clients(tree: Path) -> None:
    flat = [b"Host", b"h", b"X-Sendfile-Type", b"X-Accel-Redirect", b"x-accel-mapping", b"/=/p/"]
    present = {b"host": [], b"x-sendfile-type": [], b"x-accel-mapping": []}
    out = offload(tree).php_headers(flat, present)
    assert out == [b"Host", b"h", b"X-Sendfile-Type", b"X-Sendfile"]
    assert flat[2] == b"X-Sendfile-Type"  # the request's own list is left alone
    accel = offload(tree, roots=False).php_headers([b"Host", b"h"], {b"host": []})
    real = os.path.realpath(tree / "private")
    assert accel == [b"Host", b"h", b"X-Sendfile-Type", b"X-Accel-Redirect",
                     b"X-Accel-Mapping", f"{real}/=/protected/".encode()]


# -- whole requests, both HTTP versions ----------------------------------------------------------
def make(version: str, tree: Path, loop: asyncio.AbstractEventLoop, static: str | None = None) -> Setup:
    toml = tree / "askr.toml"
    static = static if static is not None else (
        f'sendfile_roots = ["{tree / "private"}"]\n'
        f'internal_locations = {{ "/protected/" = "{tree / "private"}" }}\n')
    toml.write_text(f'[server]\nroot = "{tree / "public"}"\nworkers = 1\n[static]\n{static}')
    cfg = config.load(toml)
    off = FileOffload.from_config(cfg.static.sendfile_roots, cfg.static.internal_locations)
    ctx = FrontContext(cfg, loop, RouteCache(Router(str(tree / "public"))), FakePool(),  # type: ignore[arg-type]
                       str(tree / "public").encode(), ProxyTrust(()), offload=off,
                       compression=compression_of(cfg))
    return connect(version, ctx)


@pytest.mark.parametrize("version", VERSIONS)
def test_php_naming_a_file_gets_the_file_and_its_worker_back_at_once(version, tree, loop) -> None:
    s = make(version, tree, loop)
    sid = s.client.send("GET", "/index.php", [("X-Sendfile-Type", "X-Accel-Redirect")])
    request = s.pool.submitted[0].frames[0]
    assert b"X-Sendfile-Type\0X-Sendfile\0" in request and b"X-Accel-Redirect" not in request
    channel = s.pool.take(s.pool.submitted[0])
    target = str(tree / "private" / "docs" / "report.pdf").encode()
    # The head arrives before PHP's response ends: the file goes out now, PHP's body is discarded.
    deliver(s, "php_response", 200, b"Content-Type: application/pdf\nX-Sendfile: " + target,
            [b"PHP'S OWN BODY"], False)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.complete) == (200, PDF, True)
    assert resp.headers[b"content-type"] == b"application/pdf" and b"x-sendfile" not in resp.headers
    exchange = s.pool.submitted[0]
    assert exchange.cancelled and not channel.closed  # discarded, the worker's channel kept clean
    assert s.ctx.stats.by_class[2] == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_x_accel_redirect_range_and_head_over_the_stream(version, tree, loop) -> None:
    s = make(version, tree, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Range", "bytes=4-7")])
    deliver(s, "php_response", 200, b"X-Accel-Redirect: /protected/docs/report.pdf", [], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body) == (206, PDF[4:8])
    assert resp.headers[b"content-type"] == b"application/pdf"  # PHP set none: the table's
    s2 = make(version, tree, loop)
    sid, _ = s2.send_and_take("HEAD", "/index.php")
    deliver(s2, "php_response", 200, b"X-Accel-Redirect: /protected/docs/report.pdf", [], True)
    resp = s2.client.response(sid)
    assert (resp.status, resp.body, resp.headers[b"content-length"]) == (200, b"", b"%d" % len(PDF))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_head_with_an_invalid_name_is_502_even_naming_a_file(version, tree, loop) -> None:
    """nginx parses php-fpm's whole head before it looks at X-Accel-Redirect: "X-A : b" in it is
    its 502 ("upstream sent invalid header"), never the file."""
    s = make(version, tree, loop)
    sid, channel = s.send_and_take("GET", "/index.php")
    target = str(tree / "private" / "docs" / "report.pdf").encode()
    deliver(s, "php_response", 200, b"X-Sendfile: " + target + b"\nX-A : b", [b"body"], False)
    resp = s.client.response(sid)
    assert resp.status == 502 and PDF not in resp.body
    assert channel.closed  # the worker, still sending, is let go as for any refused head


@pytest.mark.parametrize("version", VERSIONS)
def test_a_path_outside_the_roots_is_500_never_the_file(version, tree, loop) -> None:
    s = make(version, tree, loop)
    sid, _ = s.send_and_take("GET", "/index.php")
    deliver(s, "php_response", 200, b"X-Sendfile: " + str(tree / "private" / "leak.txt").encode(),
            [b"body"], False)
    resp = s.client.response(sid)
    assert resp.status == 500 and b"SECRET" not in resp.body
    assert s.pool.submitted[0].cancelled


@pytest.mark.parametrize("version", VERSIONS)
def test_the_internal_prefix_is_routed_from_the_root_for_clients(version, tree, loop) -> None:
    s = make(version, tree, loop)
    resp = s.client.response(s.client.send("GET", "/protected/docs/report.pdf"))
    # No such file under the root: the front controller gets it, as any unknown path.
    assert len(s.pool.submitted) == 1 and resp.status == 0
    assert b"SCRIPT_NAME\0/index.php\0" in s.pool.submitted[0].frames[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_unconfigured_the_headers_pass_through(version, tree, loop) -> None:
    s = make(version, tree, loop, static="")
    sid = s.client.send("GET", "/index.php", [("X-Sendfile-Type", "X-Sendfile")])
    request = s.pool.submitted[0].frames[0].lower()
    assert b"x-sendfile-type\0x-sendfile\0" in request  # the client's, untouched
    s.pool.take(s.pool.submitted[0])
    deliver(s, "php_response", 200, b"X-Sendfile: /etc/passwd", [b"php"], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.headers[b"x-sendfile"]) == (200, b"php", b"/etc/passwd")


NOTES = b"".join(b"line %d of a report that compresses well\n" % i for i in range(200))


@pytest.mark.parametrize("version", VERSIONS)
def test_an_offloaded_text_file_is_compressed_as_a_static_one(version, tree, loop) -> None:
    (tree / "private" / "notes.txt").write_bytes(NOTES)
    s = make(version, tree, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", "gzip")])
    deliver(s, "php_response", 200, b"X-Sendfile: " + str(tree / "private" / "notes.txt").encode(), [], True)
    resp = s.client.response(sid)
    assert resp.status == 200 and resp.headers[b"content-encoding"] == b"gzip"
    assert gzip.decompress(resp.body) == NOTES and resp.headers[b"vary"] == b"Accept-Encoding"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_precompressed_sibling_linking_out_of_the_root_is_not_served(version, tree, loop) -> None:
    (tree / "private" / "notes.txt").write_bytes(NOTES)
    (tree / "outside" / "secret.gz").write_bytes(gzip.compress(b"SECRET"))
    os.symlink(tree / "outside" / "secret.gz", tree / "private" / "notes.txt.gz")
    s = make(version, tree, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", "gzip")])
    deliver(s, "php_response", 200, b"X-Sendfile: " + str(tree / "private" / "notes.txt").encode(), [], True)
    resp = s.client.response(sid)
    assert resp.status == 200 and gzip.decompress(resp.body) == NOTES


@pytest.mark.parametrize("version", VERSIONS)
def test_phps_own_content_encoding_is_sent_as_it_is(version, tree, loop) -> None:
    packed = gzip.compress(os.urandom(4096))  # over [compression] min_size: it would be compressed again
    (tree / "private" / "notes-gzipped.txt").write_bytes(packed)
    s = make(version, tree, loop)
    sid, _ = s.send_and_take("GET", "/index.php", [("Accept-Encoding", "gzip, br, zstd")])
    head = (b"Content-Type: text/plain\nContent-Encoding: gzip\nX-Sendfile: "
            + str(tree / "private" / "notes-gzipped.txt").encode())
    deliver(s, "php_response", 200, head, [], True)
    resp = s.client.response(sid)
    assert (resp.status, resp.body, resp.headers[b"content-encoding"]) == (200, packed, b"gzip")
    assert resp.headers[b"content-type"] == b"text/plain"
