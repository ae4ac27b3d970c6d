"""Classic routing (nginx `try_files $uri $uri/ /index.php?$query_string`) and static files.

The docroot is a tmp copy of tests/php/app with dotfiles, a 100 KB binary and escaping symlinks
added (askrtest.build_docroot). Paths that HTTP clients would normalise go out on raw sockets.
"""

from __future__ import annotations

import email.utils
import json
import os
import shutil
import subprocess
import urllib.parse

import httpx
import pytest
from askrtest import BIG_SIZE, DATA_SIZE, SECRET
from rawhttp import Conn


@pytest.fixture(scope="module")
def server(askr_module_server, docroot):
    return askr_module_server("--root", docroot, "--workers", "2")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30.0, follow_redirects=False) as c:
        yield c


def raw_get(server, target: str, method: str = "GET", headers=None):
    with Conn(server.host, server.port) as c:
        return c.request(method, target, headers)


# -- PHP routing ---------------------------------------------------------------------------------


def test_existing_php_script_runs(client):
    r = client.get("/info.php")
    assert r.status_code == 200
    assert r.json()["script"] == "info.php"


def test_unknown_path_runs_front_controller_with_request_uri(client):
    r = client.get("/articles/42/edit?x=1&y=%20z")
    assert r.status_code == 200
    body = r.json()
    assert body["script"] == "index.php"
    assert body["server"]["REQUEST_URI"] == "/articles/42/edit?x=1&y=%20z"
    assert body["server"]["QUERY_STRING"] == "x=1&y=%20z"
    assert body["server"]["SCRIPT_NAME"] == "/index.php"
    assert body["server"]["DOCUMENT_URI"] == "/index.php"
    assert body["server"]["PATH_INFO"] in (None, "")
    assert body["get"] == {"x": "1", "y": " z"}


def test_root_runs_index_php(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.json()["script"] == "index.php"
    assert r.json()["server"]["REQUEST_URI"] == "/"


def test_missing_static_looking_file_falls_back_to_front_controller(client):
    r = client.get("/missing.css")
    assert r.status_code == 200
    assert r.json()["script"] == "index.php"
    assert r.json()["server"]["REQUEST_URI"] == "/missing.css"


def test_path_info_routing(client, docroot):
    r = client.get("/info.php/a/b.html")
    assert r.status_code == 200
    s = r.json()["server"]
    assert r.json()["script"] == "info.php"
    assert s["PATH_INFO"] == "/a/b.html"
    assert s["SCRIPT_NAME"] == "/info.php"
    assert os.path.realpath(s["SCRIPT_FILENAME"]) == os.path.realpath(docroot / "info.php")


def test_directory_without_slash_redirects(server):
    resp = raw_get(server, "/sub")
    assert resp.status == 301
    loc = urllib.parse.urlsplit(resp.header("location") or "")
    assert loc.path == "/sub/"


def test_directory_redirect_keeps_query(server):
    resp = raw_get(server, "/sub?a=1")
    assert resp.status == 301
    loc = urllib.parse.urlsplit(resp.header("location") or "")
    assert (loc.path, loc.query) == ("/sub/", "a=1")


def test_directory_with_slash_runs_its_index(client, docroot):
    r = client.get("/sub/?q=1")
    assert r.status_code == 200
    body = r.json()
    assert body["script"] == "sub/index.php"
    assert body["server"]["SCRIPT_NAME"] == "/sub/index.php"
    assert body["server"]["REQUEST_URI"] == "/sub/?q=1"
    assert os.path.realpath(body["server"]["SCRIPT_FILENAME"]) == os.path.realpath(docroot / "sub/index.php")


@pytest.mark.parametrize("target", ["/hello.php", "/hello%2ephp", "/hell%6f.php", "/sub/index.php"])
def test_php_source_never_served(server, target):
    resp = raw_get(server, target)
    assert resp.status == 200
    assert b"<?php" not in resp.body
    assert resp.body == b"hello" or resp.json()["script"] == "sub/index.php"


@pytest.mark.parametrize(
    "target", ["/.env", "/.git/config", "/.git/", "/sub/.hidden", "/.env?x=1", "/%2eenv", "/.git%2fconfig"]
)
def test_dotfiles_are_404(server, target):
    resp = raw_get(server, target)
    assert resp.status == 404, resp
    assert SECRET.encode() not in resp.body


def test_well_known_is_served(client):
    r = client.get("/.well-known/acme.txt")
    assert r.status_code == 200
    assert r.text == "acme-token\n"


@pytest.mark.parametrize(
    "target",
    [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/sub/../../etc/passwd",
        "/sub/%2e%2e/%2e%2e/etc/passwd",
        "/sub/%2E%2E/%2e./etc/passwd",
        "/..",
        "/sub/../../info.php",
    ],
)
def test_traversal_is_400(server, target):
    resp = raw_get(server, target)
    assert resp.status == 400, resp
    assert b"root:" not in resp.body


@pytest.mark.parametrize(
    "target", ["/..%2fetc%2fpasswd", "/sub/..%2f..%2fetc/passwd", "/%2e%2e%5cetc%5cpasswd"]
)
def test_encoded_slash_traversal_never_leaks(server, target):
    resp = raw_get(server, target)
    assert resp.status in (400, 404) or (resp.status == 200 and resp.json()["script"] == "index.php"), resp
    assert b"root:" not in resp.body


@pytest.mark.parametrize("target", ["/escape.txt", "/escape_dir/secret.txt", "/evil.php", "/evil.php/x"])
def test_symlinks_escaping_root_are_404(server, target):
    resp = raw_get(server, target)
    assert resp.status == 404, resp
    assert SECRET.encode() not in resp.body


# -- static files --------------------------------------------------------------------------------


def test_static_css(client, docroot):
    r = client.get("/style.css")
    assert r.status_code == 200
    assert r.content == (docroot / "style.css").read_bytes()
    assert r.headers["content-type"].split(";")[0] == "text/css"
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers.get("etag")
    mtime = os.stat(docroot / "style.css").st_mtime
    assert r.headers["last-modified"] == email.utils.formatdate(int(mtime), usegmt=True)


def test_static_text_in_subdir(client):
    r = client.get("/sub/page.txt")
    assert r.status_code == 200
    assert r.text == "plain text in sub\n"
    assert r.headers["content-type"].split(";")[0] == "text/plain"


def test_static_binary(client, docroot):
    r = client.get("/data.bin")
    assert r.status_code == 200
    assert len(r.content) == DATA_SIZE
    assert r.content == (docroot / "data.bin").read_bytes()
    assert r.headers["content-type"] == "application/octet-stream"


def test_etag_304(client):
    first = client.get("/style.css")
    etag = first.headers["etag"]
    r = client.get("/style.css", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    other = client.get("/style.css", headers={"If-None-Match": '"not-the-etag"'})
    assert other.status_code == 200


def test_if_modified_since_304(client):
    lm = client.get("/style.css").headers["last-modified"]
    r = client.get("/style.css", headers={"If-Modified-Since": lm})
    assert r.status_code == 304
    assert r.content == b""
    old = client.get("/style.css", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert old.status_code == 200


def test_range_first_bytes(client, docroot):
    data = (docroot / "data.bin").read_bytes()
    r = client.get("/data.bin", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206
    assert r.content == data[:100]
    assert r.headers["content-range"] == f"bytes 0-99/{DATA_SIZE}"
    assert r.headers["content-length"] == "100"


def test_range_open_ended_and_suffix(client, docroot):
    data = (docroot / "data.bin").read_bytes()
    r = client.get("/data.bin", headers={"Range": f"bytes={DATA_SIZE - 50}-"})
    assert r.status_code == 206
    assert r.content == data[-50:]
    assert r.headers["content-range"] == f"bytes {DATA_SIZE - 50}-{DATA_SIZE - 1}/{DATA_SIZE}"
    r = client.get("/data.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206
    assert r.content == data[-10:]


def test_range_unsatisfiable_416(client):
    r = client.get("/data.bin", headers={"Range": f"bytes={DATA_SIZE + 10}-{DATA_SIZE + 20}"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{DATA_SIZE}"


def test_range_with_curl(server, docroot):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    data = (docroot / "data.bin").read_bytes()
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-r", "1000-1999", "-D", "-", f"{server.url}/data.bin"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    assert f"content-range: bytes 1000-1999/{DATA_SIZE}".encode() in head.lower()
    assert body == data[1000:2000]


def test_head_static(server):
    with Conn(server.host, server.port) as c:
        resp = c.request("HEAD", "/data.bin")
        assert resp.status == 200
        assert resp.header("content-length") == str(DATA_SIZE)
        assert resp.body == b""
        # no stray body bytes: the next response on the same connection parses cleanly
        nxt = c.request("GET", "/style.css")
        assert nxt.status == 200
        assert nxt.body == b"body { color: #333; }\n"


def test_static_file_that_looks_like_json_route_is_static(client, docroot):
    (docroot / "data.json").write_text(json.dumps({"static": True}))
    r = client.get("/data.json")
    assert r.status_code == 200
    assert r.json() == {"static": True}
    assert r.headers["content-type"].split(";")[0] == "application/json"


def test_large_static_file_intact(server, docroot):
    data = (docroot / "big.bin").read_bytes()
    assert len(data) == BIG_SIZE
    with Conn(server.host, server.port) as c:
        resp = c.request("GET", "/big.bin")
        assert resp.status == 200
        assert resp.body == data
        mid = c.request("GET", "/big.bin", [("Range", "bytes=1048576-1049599")])
        assert mid.status == 206
        assert mid.body == data[1048576:1049600]
