"""[compression] on the real server: gzip, brotli and zstd to curl, httpx, raw sockets and Chromium,
over HTTP/1.1 and HTTP/2 (h2c); PHP streams compressed as they flush; Range, PHP's own encoding
and no-transform left alone; precompressed siblings; Vary, weak ETags and 304s."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import brotli
import httpx
import pytest
from askrtest import TESTS, wait_until, write_config
from cdp import CHROMIUM, Browser
from codings import decode, incremental_decoder
from rawhttp import Conn

CODINGS = ["gzip", "br", "zstd"]
FIXTURE = TESTS / "php" / "compress"
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compress") / "public"
    shutil.copytree(FIXTURE, root)
    js = (root / "app.js").read_bytes()
    # precompressed siblings, at levels no on-the-fly compressor would use: their bytes identify them
    (root / "app.js.br").write_bytes(brotli.compress(js, quality=11))
    (root / "app.js.gz").write_bytes(gzip.compress(js, compresslevel=9, mtime=0))
    (root / "big.txt").write_bytes(b"a line of a large text file\n" * 20000)  # 560 KB: not buffered
    return root


@pytest.fixture(scope="module")
def server(askr_module_server, site, tmp_path_factory):
    cfg = write_config(tmp_path_factory.mktemp("cfg"), root=site, workers=2, server={"h2c": True})
    return askr_module_server("--config", str(cfg))


def raw(server, target: str, *headers: tuple[str, str], method: str = "GET"):
    with Conn(server.host, server.port) as c:
        return c.request(method, target, list(headers))


# -- round trips per codec --------------------------------------------------------------------------
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("target", ["/page.php", "/app.css"])
def test_each_codec_round_trips_with_httpx(server, site, coding, target) -> None:
    plain = httpx.get(server.url + target, headers={"Accept-Encoding": "identity"}, timeout=30)
    assert plain.headers.get("content-encoding") is None and plain.headers["vary"] == "Accept-Encoding"
    r = httpx.get(server.url + target, headers={"Accept-Encoding": coding}, timeout=30)
    assert r.status_code == 200 and r.headers["content-encoding"] == coding
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.content == plain.content  # httpx decoded it
    assert r.num_bytes_downloaded < len(plain.content) // 3


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("http2", [False, True])
def test_each_codec_round_trips_with_curl(server, site, tmp_path, coding, http2) -> None:
    features = subprocess.run([CURL, "-V"], capture_output=True, text=True, check=True).stdout.lower()
    wanted = {"gzip": "libz", "br": "brotli", "zstd": "zstd"}[coding]
    if wanted not in features:
        pytest.skip(f"this curl cannot decode {coding}")
    headers = tmp_path / "headers"
    out = subprocess.run(
        [CURL, "-sS", "--compressed", "-H", f"Accept-Encoding: {coding}", "-D", str(headers),
         *(["--http2-prior-knowledge"] if http2 else []), "-w", "%{size_download} %{http_version}",
         "-o", str(tmp_path / "body"), server.url + "/app.css"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    downloaded, version = out.stdout.split()
    assert version == ("2" if http2 else "1.1")
    assert f"content-encoding: {coding}" in headers.read_text().lower()
    assert (tmp_path / "body").read_bytes() == (site / "app.css").read_bytes()
    assert int(downloaded) < (site / "app.css").stat().st_size // 3


def test_php_default_content_type_is_compressed(server) -> None:
    r = raw(server, "/default.php", ("Accept-Encoding", "gzip"))
    assert r.header("content-type").startswith("text/html") and r.header("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == b"<p>a page with PHP's default type</p>\n" * 100


# -- PHP streams ------------------------------------------------------------------------------------
@pytest.mark.parametrize("coding", CODINGS)
def test_streamed_php_events_arrive_compressed_one_by_one(server, tmp_path, coding) -> None:
    """events.php cannot write event i until the test decoded event i-1 and opened gate i."""
    gate = tmp_path / "gate"
    q = urllib.parse.urlencode({"gate": str(gate), "n": 3})
    with Conn(server.host, server.port) as c:
        c.send(f"GET /events.php?{q} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n".encode())
        head = c.read_head(timeout=30)
        assert head.status == 200 and head.chunked and head.header("content-encoding") == coding
        feed = incremental_decoder(coding)
        text = b""
        for i in (1, 2, 3):
            for _ in range(50):
                if f"data: event-{i} ".encode() in text:
                    break
                chunk = c.read_chunk(timeout=30)
                assert chunk, f"the stream ended before event {i}"
                text += feed(chunk)
            assert f"data: event-{i} ".encode() in text and text.endswith(b"\n\n")
            if i < 3:
                (tmp_path / f"gate-{i + 1}").write_text("go")
        while c.read_chunk(timeout=30):
            pass


def test_streamed_php_events_over_http2(server, tmp_path) -> None:
    gate = tmp_path / "gate"
    for i in (2, 3):
        (tmp_path / f"gate-{i}").write_text("go")  # no waiting: the whole stream, decoded
    q = urllib.parse.urlencode({"gate": str(gate), "n": 3})
    out = subprocess.run([CURL or "curl", "-sS", "--http2-prior-knowledge", "-H", "Accept-Encoding: br",
                          "-D", "-", "-o", str(tmp_path / "body"), f"{server.url}/events.php?{q}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "content-encoding: br" in out.stdout.lower(), out.stdout
    text = brotli.decompress((tmp_path / "body").read_bytes())
    assert [line for line in text.split(b"\n") if line] == [
        b"data: event-%d " % i + b"padding " * 60 for i in (1, 2, 3)]


# -- left alone -------------------------------------------------------------------------------------
def test_range_is_answered_from_the_identity_bytes(server, site) -> None:
    r = raw(server, "/app.css", ("Accept-Encoding", "gzip, br, zstd"), ("Range", "bytes=10-19"))
    assert r.status == 206 and r.header("content-encoding") is None
    assert r.body == (site / "app.css").read_bytes()[10:20] and r.header("accept-ranges") == "bytes"


def test_php_output_compression_passes_through_untouched(server) -> None:
    r = raw(server, "/zlib.php", ("Accept-Encoding", "gzip, br, zstd"))
    assert r.header("content-encoding") == "gzip"  # PHP's zlib chose gzip, and it is sent as PHP made it
    assert gzip.decompress(r.body) == b"<p>compressed by PHP itself</p>\n" * 300
    r = raw(server, "/encoded.php", ("Accept-Encoding", "br, gzip"))
    assert r.header("content-encoding") == "gzip" and r.header("vary") is None
    assert gzip.decompress(r.body) == b"gzipped by the script\n" * 300
    r = raw(server, "/notransform.php", ("Accept-Encoding", "br, gzip"))
    assert r.header("content-encoding") is None and r.body == b"<p>do not transform</p>\n" * 300


def test_large_static_files_are_sent_as_they_are(server, site) -> None:
    r = raw(server, "/big.txt", ("Accept-Encoding", "gzip"))
    assert r.header("content-encoding") is None and r.body == (site / "big.txt").read_bytes()


# -- precompressed siblings ---------------------------------------------------------------------------
def test_precompressed_siblings_are_served(server, site) -> None:
    cases = (("gzip, br", "br", ".br"), ("gzip", "gzip", ".gz"), ("br;q=0.1, gzip", "gzip", ".gz"))
    for accept, coding, suffix in cases:
        for _ in range(2):  # the first fills the hot-file cache, the second is answered from it
            r = raw(server, "/app.js", ("Accept-Encoding", accept))
            assert r.header("content-encoding") == coding, accept
            assert r.body == (site / f"app.js{suffix}").read_bytes()  # the sibling itself, byte for byte
            assert r.header("content-type").startswith("application/javascript")
            assert r.header("vary") == "Accept-Encoding"
    r = raw(server, "/app.js", ("Accept-Encoding", "zstd"))  # no .zst sibling: compressed here
    assert r.header("content-encoding") == "zstd" and decode("zstd", r.body) == (site / "app.js").read_bytes()


# -- validators -------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["/app.css", "/page.php"])
def test_weak_etag_revalidates_to_304(server, target) -> None:
    plain = raw(server, target)
    strong = plain.header("etag")
    assert strong.startswith('"')
    r = raw(server, target, ("Accept-Encoding", "gzip"))
    assert r.header("etag") == "W/" + strong and r.header("content-encoding") == "gzip"
    again = raw(server, target, ("Accept-Encoding", "gzip"), ("If-None-Match", r.header("etag")))
    assert again.status == 304 and again.body == b""
    again = httpx.get(server.url + target, headers={"If-None-Match": r.header("etag")}, timeout=30)
    assert again.status_code == 304


def test_head_has_the_headers_a_get_would_have(server) -> None:
    for target in ("/app.css", "/page.php"):
        get = raw(server, target, ("Accept-Encoding", "br"))
        head = raw(server, target, ("Accept-Encoding", "br"), method="HEAD")
        assert head.status == 200 and head.body == b""
        for name in ("content-encoding", "vary", "etag", "content-type"):
            assert head.header(name) == get.header(name), (target, name)


def test_off_means_identity_but_siblings_still_served(askr_server, site, tmp_path) -> None:
    cfg = write_config(tmp_path, root=site, workers=1, compression={"enabled": False})
    off = askr_server("--config", str(cfg))
    r = raw(off, "/page.php", ("Accept-Encoding", "gzip, br, zstd"))
    assert r.header("content-encoding") is None and r.header("vary") is None
    r = raw(off, "/app.js", ("Accept-Encoding", "gzip"))
    assert r.header("content-encoding") == "gzip" and r.body == (site / "app.js.gz").read_bytes()


# -- a browser --------------------------------------------------------------------------------------
@pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package) could not be installed here")
def test_chromium_renders_a_compressed_page(server, tmp_path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(server.url + "/page.php")
        wait_until(lambda: browser.evaluate(
            "document.documentElement && document.documentElement.dataset.appJs") == "ran",
                   timeout=60, what="the page and its script to load in Chromium")
        assert browser.evaluate("document.querySelectorAll('li.item').length") == 400
        assert browser.evaluate("getComputedStyle(document.getElementById('items')).color") == "rgb(1, 2, 3)"
        sizes = json.loads(browser.evaluate(
            "JSON.stringify(performance.getEntries().filter(e => e.encodedBodySize !== undefined)"
            ".map(e => [e.name.split('/').pop(), e.encodedBodySize, e.decodedBodySize]))"))
        by_name = {name: (encoded, decoded) for name, encoded, decoded in sizes}
        for name in ("page.php", "app.css", "app.js"):
            encoded, decoded = by_name[name]
            assert 0 < encoded < decoded // 3, (name, encoded, decoded)  # sent compressed, decoded whole
        assert browser.exceptions() == []
    finally:
        browser.close()

