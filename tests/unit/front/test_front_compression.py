"""[compression]: Accept-Encoding negotiation, the streaming encoders, which PHP heads and static
files get compressed, precompressed siblings."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import brotli
import pytest
import zstandard
from codings import decode

from askr import config
from askr.front.compression import (
    Compression,
    Encoder,
    acceptable,
    compression_of,
    parse_accept_encoding,
    serve_static_compressed,
)
from askr.front.router import StaticFile
from askr.front.static import serve_static

ALL = ("zstd", "br", "gzip")
LEVELS = {"gzip": 5, "br": 4, "zstd": 3}
TEXT = b"<p>Hello, compressed world! " * 200  # 5.6 KB of HTML


def make(algorithms: tuple[str, ...] = ALL, min_size: int = 1024, precompressed: bool = True,
         enabled: bool = True) -> Compression:
    return Compression(enabled, algorithms, min_size, ("text/*", "application/json", "image/svg+xml"),
                       LEVELS, precompressed)


# -- negotiation (RFC 9110 12.5.3) ---------------------------------------------------------------
@pytest.mark.parametrize(("header", "expected"), [
    (None, []),  # no Accept-Encoding: identity
    (b"", []),  # empty: identity only
    (b"gzip", ["gzip"]),
    (b"GZip", ["gzip"]),  # coding names are case-insensitive
    (b"x-gzip", ["gzip"]),  # the alias RFC 9110 8.4.1.3 asks for
    (b"gzip, deflate, br, zstd", ["zstd", "br", "gzip"]),  # Chrome: equal q, server order
    (b"gzip, deflate, br", ["br", "gzip"]),  # Firefox before zstd
    (b"br;q=0.5, gzip", ["gzip", "br"]),  # q-values outrank server order
    (b"br;Q=0.5, gzip;q=1.0", ["gzip", "br"]),  # the parameter name too is case-insensitive
    (b"gzip;q=0, br", ["br"]),  # q=0: not acceptable
    (b"*", ["zstd", "br", "gzip"]),
    (b"*;q=0.1, gzip", ["gzip", "zstd", "br"]),  # * stands for the codings not named
    (b"*;q=0, gzip;q=0.2", ["gzip"]),
    (b"*;q=0", []),  # identity refused too: identity is sent anyway (like nginx)
    (b"identity", []),
    (b"identity;q=0", []),  # nothing acceptable: identity anyway
    (b"identity;q=1, gzip;q=0.5", []),  # the client prefers identity
    (b"identity;q=0.5, gzip", ["gzip"]),
    (b"gzip;q=0.5", ["gzip"]),  # identity is not named: acceptable, but ranks below any coding
    (b"compress, deflate, sdch", []),  # unknown or unsupported codings
    (b"gzip;q=2, br", ["br"]),  # malformed q: the element is ignored
    (b"gzip;q=abc, br;q=0.1234", []),
    (b"gzip;q=0.001", ["gzip"]),
    (b" br ; q=0.8 ,gzip;level=1", ["gzip", "br"]),  # whitespace, unknown parameters
    (b",,gzip,,", ["gzip"]),
])
def test_acceptable_codings_best_first(header, expected) -> None:
    assert acceptable(header, ALL) == expected


def test_server_order_breaks_ties_and_choose_caches_by_header() -> None:
    comp = make(algorithms=("gzip", "br"))
    assert comp.choose(b"br, gzip, zstd") == "gzip"  # zstd is not offered
    assert comp.choose(b"br") == "br"
    assert comp.choose(b"zstd") is None
    assert comp.choose(None) is None
    assert comp.ranked(b"zstd, br") == ["br", "zstd"]  # siblings: any coding, offered ones first


def test_a_coding_named_twice_keeps_its_first_weight() -> None:
    assert parse_accept_encoding(b"gzip;q=0, gzip") == {"gzip": 0.0}


def test_disabled_compresses_nothing_but_precompressed_stays() -> None:
    cfg = config.load(None, {"compression.enabled": False})
    comp = compression_of(cfg)
    assert comp is not None and not comp.enabled and comp.precompressed
    assert comp.choose(b"gzip") is None
    assert not comp.compressible(b"text/html")
    assert compression_of(config.load(None, {"compression.enabled": False,
                                             "compression.precompressed": False})) is None


# -- encoders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("coding", ALL)
def test_streaming_encoder_flushes_every_chunk_so_it_decodes_at_once(coding) -> None:
    encoder = Encoder(coding, LEVELS[coding])
    if coding == "gzip":
        decoder = zlib.decompressobj(31)
        feed = decoder.decompress
    elif coding == "br":
        feed = brotli.Decompressor().process
    else:
        feed = zstandard.ZstdDecompressor().decompressobj().decompress
    got = b""
    for piece in (b"data: one\n\n", b"data: two\n\n", TEXT):
        got += feed(encoder.chunk(piece))
        assert got.endswith(piece)  # everything so far decodes before the stream ends
    got += feed(encoder.finish(b"bye"))
    assert got == b"data: one\n\ndata: two\n\n" + TEXT + b"bye"


@pytest.mark.parametrize("coding", ALL)
def test_whole_body_round_trips_and_is_smaller(coding) -> None:
    data = make().whole(coding, TEXT)
    assert decode(coding, data) == TEXT and len(data) < len(TEXT) // 10


# -- which PHP responses --------------------------------------------------------------------------
def test_php_head_adds_encoding_and_vary_drops_length_and_weakens_etag() -> None:
    comp = make()
    head = b'Content-Type: text/html; charset=UTF-8\nContent-Length: 5600\nETag: "v1"\nX-A: 1'
    block, coding = comp.php_head(b"gzip, br", 200, head, None)  # type: ignore[misc]
    assert coding == "br"
    lines = block.split(b"\n")
    assert b"Content-Encoding: br" in lines and b"Vary: Accept-Encoding" in lines
    assert b'ETag: W/"v1"' in lines and b"X-A: 1" in lines
    assert not any(line.lower().startswith(b"content-length") for line in lines)


def test_php_head_without_accept_encoding_only_adds_vary() -> None:
    block, coding = make().php_head(None, 200, b'Content-Type: text/html\nETag: "v1"', None)  # type: ignore[misc]
    assert coding is None and block == b'Content-Type: text/html\nETag: "v1"\nVary: Accept-Encoding'


def test_php_head_extends_an_existing_vary() -> None:
    block, _ = make().php_head(b"gzip", 200, b"Content-Type: text/html\nVary: Cookie", None)  # type: ignore[misc]
    assert b"Vary: Cookie, Accept-Encoding" in block.split(b"\n")
    block, _ = make().php_head(b"gzip", 200, b"Content-Type: text/html\nvary: accept-encoding", None)  # type: ignore[misc]
    assert block.lower().count(b"accept-encoding") == 1


@pytest.mark.parametrize(("status", "head", "size"), [
    (200, b"Content-Type: text/html\nContent-Encoding: gzip", None),  # zlib.output_compression
    (200, b"Content-Type: text/html\nCache-Control: public, no-transform", None),
    (200, b"Content-Type: image/png", None),
    (200, b"X-Nothing: 1", None),  # no Content-Type
    (200, b"Content-Type: text/html", 100),  # a complete body under min_size
    (200, b"Content-Type: text/html\nContent-Length: 100", None),  # announced under min_size
    (204, b"Content-Type: text/html", None),
    (304, b"Content-Type: text/html", None),
    (206, b"Content-Type: text/html\nContent-Range: bytes 0-9/100", None),
    (200, b"Content-Type: text/html\nContent-Range: bytes 0-9/100", None),
    (101, b"Content-Type: text/html", None),
    (200, b"", None),
])
def test_php_heads_left_alone(status, head, size) -> None:
    assert make().php_head(b"gzip", status, head, size) is None


def test_error_pages_and_unknown_lengths_are_compressed() -> None:
    assert make().php_head(b"gzip", 404, b"Content-Type: text/html", None)[1] == "gzip"  # type: ignore[index]
    assert make().php_head(b"gzip", 200, b"Content-Type: application/json", 5000)[1] == "gzip"  # type: ignore[index]


# -- static files ---------------------------------------------------------------------------------
@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "app.css").write_bytes(TEXT)
    (tmp_path / "small.css").write_bytes(b"body{}")
    (tmp_path / "logo.png").write_bytes(os.urandom(4096))
    return tmp_path


def static(path: Path) -> StaticFile:
    return StaticFile(str(path), os.stat(path))


def headers_of(resp) -> dict[bytes, bytes]:
    return dict(resp.headers)


@pytest.mark.parametrize("coding", ALL)
def test_static_text_is_compressed_with_a_weak_etag(site, coding) -> None:
    f = static(site / "app.css")
    plain = serve_static(b"GET", {}, f)
    resp = serve_static_compressed(make(), b"GET", {b"accept-encoding": coding.encode()}, f)
    h = headers_of(resp)
    assert resp.status == 200 and decode(coding, resp.body) == TEXT
    assert h[b"content-encoding"] == coding.encode() and h[b"vary"] == b"Accept-Encoding"
    assert h[b"content-length"] == b"%d" % len(resp.body) and h[b"content-type"] == b"text/css"
    assert h[b"etag"] == b"W/" + headers_of(plain)[b"etag"]
    # revalidation with the weak tag (or the strong one of the identity variant): 304
    for tag in (h[b"etag"], headers_of(plain)[b"etag"]):
        resp = serve_static_compressed(make(), b"GET", {b"accept-encoding": coding.encode(),
                                                        b"if-none-match": tag}, f)
        assert resp.status == 304 and headers_of(resp)[b"etag"] == h[b"etag"]
        assert headers_of(resp)[b"vary"] == b"Accept-Encoding"


def test_static_head_has_the_get_headers_without_a_length(site) -> None:
    resp = serve_static_compressed(make(), b"HEAD", {b"accept-encoding": b"gzip"}, static(site / "app.css"))
    h = headers_of(resp)
    assert resp.body == b"" and h[b"content-encoding"] == b"gzip" and b"content-length" not in h


def test_static_identity_cases(site) -> None:
    comp = make()
    f = static(site / "app.css")
    plain = serve_static(b"GET", {}, f)
    resp = serve_static_compressed(comp, b"GET", {}, f)  # no Accept-Encoding: identity, with Vary
    assert resp.body == TEXT and headers_of(resp)[b"vary"] == b"Accept-Encoding"
    assert headers_of(resp)[b"etag"] == headers_of(plain)[b"etag"]
    ranged = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"gzip", b"range": b"bytes=0-9"}, f)
    assert ranged.status == 206 and ranged.body == TEXT[:10] and b"content-encoding" not in headers_of(ranged)
    for name in ("small.css", "logo.png"):  # under min_size; not a compressible type
        resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"gzip"}, static(site / name))
        assert b"content-encoding" not in headers_of(resp) and b"vary" not in headers_of(resp)


def test_precompressed_sibling_is_served_with_the_originals_type(site) -> None:
    comp = make()
    br = brotli.compress(TEXT, quality=11)
    (site / "app.css.br").write_bytes(br)
    (site / "app.css.gz").write_bytes(gzip.compress(TEXT))
    f = static(site / "app.css")
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"gzip, br"}, f)
    h = headers_of(resp)
    assert resp.body == br and h[b"content-type"] == b"text/css" and h[b"content-encoding"] == b"br"
    assert h[b"etag"] == headers_of(serve_static(b"GET", {}, static(site / "app.css.br")))[b"etag"]
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"gzip"}, f)
    assert gzip.decompress(resp.body) == TEXT and headers_of(resp)[b"content-encoding"] == b"gzip"
    # the sibling's own tag revalidates
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"br", b"if-none-match": h[b"etag"]}, f)
    assert resp.status == 304
    # a sibling older than its original is stale: compressed afresh instead
    st = os.stat(site / "app.css")
    os.utime(site / "app.css.br", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"br"}, f)
    assert resp.body != br and brotli.decompress(resp.body) == TEXT
    # off: never looked for
    resp = serve_static_compressed(make(precompressed=False), b"GET", {b"accept-encoding": b"gzip"}, f)
    assert headers_of(resp)[b"etag"].startswith(b"W/")


def test_a_symlinked_sibling_is_never_served(site, tmp_path_factory) -> None:
    """app.css.gz -> a file outside the root would bypass the router's containment rules."""
    outside = tmp_path_factory.mktemp("outside") / "secret.gz"
    outside.write_bytes(gzip.compress(b"SECRET"))
    os.symlink(outside, site / "app.css.gz")
    resp = serve_static_compressed(make(), b"GET", {b"accept-encoding": b"gzip"}, static(site / "app.css"))
    assert gzip.decompress(resp.body) == TEXT  # compressed afresh from the original


def test_precompressed_siblings_are_served_even_with_compression_off(site) -> None:
    (site / "app.css.gz").write_bytes(gzip.compress(TEXT))
    comp = make(enabled=False)
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"gzip"}, static(site / "app.css"))
    assert headers_of(resp)[b"content-encoding"] == b"gzip" and gzip.decompress(resp.body) == TEXT
    resp = serve_static_compressed(comp, b"GET", {b"accept-encoding": b"br"}, static(site / "app.css"))
    assert resp.body == TEXT and b"vary" not in headers_of(resp)


def test_already_compressed_names_are_not_compressed_again(site) -> None:
    (site / "drawing.svgz").write_bytes(gzip.compress(TEXT * 3))
    svgz = static(site / "drawing.svgz")
    resp = serve_static_compressed(make(), b"GET", {b"accept-encoding": b"gzip"}, svgz)
    assert b"content-encoding" not in headers_of(resp)


def test_config_rejects_bad_values(tmp_path) -> None:
    for section, problem in (('algorithms = ["gzip", "deflate"]', "zstd"), ("gzip_level = 10", "1 to 9"),
                             ('types = ["html"]', "type/subtype"), ('algorithms = ["br", "br"]', "distinct")):
        toml = tmp_path / "askr.toml"
        toml.write_text(f"[compression]\n{section}\n")
        with pytest.raises(config.ConfigError, match=problem):
            config.load(toml)


def test_zstd_stream_compressors_are_reused_only_after_their_stream_ends() -> None:
    comp = make()
    first, second = comp.encoder("zstd"), comp.encoder("zstd")  # two streams at once: two compressors
    decoders = [zstandard.ZstdDecompressor().decompressobj() for _ in range(2)]
    assert decoders[0].decompress(first.chunk(b"one " * 300)) == b"one " * 300
    assert decoders[1].decompress(second.chunk(b"two " * 300)) == b"two " * 300
    assert decoders[0].decompress(first.finish(b"!")) == b"!"
    assert len(comp._idle_zstd) == 1
    third = comp.encoder("zstd")  # takes the one `first` gave back, while `second` goes on
    assert comp._idle_zstd == []
    assert decoders[1].decompress(second.finish(b"?")) == b"?"
    assert decode("zstd", third.chunk(TEXT) + third.finish()) == TEXT
    assert len(comp._idle_zstd) == 2
