"""X-Sendfile / X-Accel-Redirect on the real server: PHP scripts (tests/php/xsendfile), Symfony's
BinaryFileResponse from Debian's php-symfony-http-foundation, and Laravel's response()->download()
name files outside the document root; the front serves them (Range, ETag, 304, HEAD, HTTP/1.1 and
HTTP/2) or refuses them (500, logged), and the single PHP worker is free while a slow client is
still reading a large file."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse
from pathlib import Path

import httpx
import pytest
from askrtest import TESTS, wait_until, write_config
from h2client import H2Client
from laravel_fixture import make_laravel_app

FIXTURE = TESTS / "php" / "xsendfile"
WORKER_SCRIPT = TESTS / "php" / "worker.php"  # requires each routed script in the booted worker
SECRET = b"ASKR_SECRET_OUTSIDE_THE_ROOTS"
REPORT = b"%PDF-1.4\n" + bytes((i * 13) % 256 for i in range(20000))
BIG_MIB = 32  # far beyond what socket buffers on both sides can hold


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("xsendfile")
    private = base / "private"
    (private / "docs").mkdir(parents=True)
    (private / "docs" / "report.pdf").write_bytes(REPORT)
    with open(private / "big.bin", "wb") as f:
        for i in range(BIG_MIB):
            f.write(bytes([i]) * (1 << 20))
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_bytes(SECRET)
    os.symlink(base / "outside" / "secret.txt", private / "leak.txt")
    return base


@pytest.fixture(scope="module", params=["classic", "worker"])
def server(request, files, askr_module_server):
    """One PHP worker: a request it were still holding would keep every other one waiting. The
    front does the work, so classic and worker mode (tests/php/worker.php) must behave alike."""
    worker = {"script": str(WORKER_SCRIPT)} if request.param == "worker" else None
    cfg = write_config(files, root=FIXTURE, workers=1, server={"h2c": True}, worker=worker,
                       name=f"{request.param}.toml",
                       static={"sendfile_roots": [str(files / "private")],
                               "internal_locations": {"/protected/": str(files / "private")}})
    return askr_module_server("--config", cfg)


def offload(target: str | Path, header: str = "X-Sendfile", **params: object) -> str:
    return "/offload.php?" + urllib.parse.urlencode({"header": header, "target": str(target), **params})


def etag_of(path: Path) -> str:
    st = path.stat()
    return f'"{int(st.st_mtime):x}-{st.st_size:x}"'


def test_x_sendfile_serves_the_file_with_phps_headers(server, files):
    report = files / "private" / "docs" / "report.pdf"
    r = httpx.get(server.url + offload(report, type="application/x-report"), timeout=30)
    assert r.status_code == 200
    assert r.content == REPORT  # the file's bytes; PHP's own body was discarded
    assert r.headers["content-type"] == "application/x-report"  # PHP chose it
    assert r.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert r.headers["cache-control"] == "private, max-age=60"
    assert r.headers["content-length"] == str(len(REPORT))
    assert r.headers["etag"] == etag_of(report) and "x-sendfile" not in r.headers


def test_range_etag_304_and_head(server, files):
    report = files / "private" / "docs" / "report.pdf"
    url = server.url + offload(report)
    with httpx.Client(timeout=30) as c:
        first = c.get(url)
        assert first.headers["content-type"] == "application/pdf"  # PHP set none: the MIME table's
        ranged = c.get(url, headers={"Range": "bytes=100-199"})
        assert (ranged.status_code, ranged.content) == (206, REPORT[100:200])
        assert ranged.headers["content-range"] == f"bytes 100-199/{len(REPORT)}"
        again = c.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert (again.status_code, again.content) == (304, b"")
        since = c.get(url, headers={"If-Modified-Since": first.headers["last-modified"]})
        assert since.status_code == 304
        head = c.head(url)
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(REPORT))
        unsatisfiable = c.get(url, headers={"Range": "bytes=999999-"})
        assert unsatisfiable.status_code == 416


@pytest.mark.parametrize("target", ["outside/secret.txt", "private/../outside/secret.txt",
                                    "private/leak.txt"])
def test_a_path_outside_the_roots_is_500_and_logged(server, files, target):
    start = len(server.lines)
    r = httpx.get(server.url + offload(f"{files}/{target}"), timeout=30)
    assert r.status_code == 500 and SECRET not in r.content and b"PHP BODY" not in r.content
    server.wait_for_log(r"X-Sendfile: '.*secret\.txt|leak\.txt.*outside \[static\] sendfile_roots",
                        start=start)


def test_x_accel_redirect_with_an_internal_location(server, files):
    url = server.url + offload("/protected/docs/report.pdf", header="X-Accel-Redirect")
    r = httpx.get(url, timeout=30)
    assert (r.status_code, r.content) == (200, REPORT)
    assert r.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    escape = httpx.get(server.url + offload("/protected/../outside/secret.txt", header="X-Accel-Redirect"),
                       timeout=30)
    assert escape.status_code == 500 and SECRET not in escape.content
    missing = httpx.get(server.url + offload("/protected/nothing.pdf", header="X-Accel-Redirect"),
                        timeout=30)
    assert missing.status_code == 404


def test_clients_cannot_reach_the_internal_location(server):
    r = httpx.get(server.url + "/protected/docs/report.pdf", timeout=30)
    # Routed from the root, where there is no such file: the front controller answers.
    assert (r.status_code, r.content) == (404, b"front controller: /protected/docs/report.pdf")


def test_http2(server, files):
    client = H2Client(server.host, server.port, tls=False)
    try:
        report = files / "private" / "docs" / "report.pdf"
        whole = client.get(offload(report))
        assert (whole.status, bytes(whole.data)) == (200, REPORT)
        assert whole.header(b"content-disposition") == b'attachment; filename="report.pdf"'
        ranged = client.get(offload(report), headers=[("range", "bytes=0-9")])
        assert (ranged.status, bytes(ranged.data)) == (206, REPORT[:10])
        big = client.get(offload(files / "private" / "big.bin"))
        assert big.status == 200 and len(big.data) == BIG_MIB << 20
        refused = client.get(offload(files / "private" / "leak.txt"))
        assert refused.status == 500 and SECRET not in refused.data
    finally:
        client.close()


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection before the head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_the_worker_is_free_while_a_slow_client_reads_a_large_file(server, files):
    """The only worker answers a second request while the first client has read nothing of a
    32 MiB file, and PHP went on writing 8 MiB of its own body after the head (discarded)."""
    big = files / "private" / "big.bin"
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.settimeout(60)
    slow.connect((server.host, server.port))
    try:
        slow.sendall(f"GET {offload(big, junk=8)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, rest = _read_head(slow)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: %d" % (BIG_MIB << 20) in head.lower()
        pid = next(line.split(b":")[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"x-php-pid:"))
        r = httpx.get(server.url + "/pid.php", timeout=30)  # same worker, while the file waits
        assert (r.status_code, r.content) == (200, pid)
        digest, received = hashlib.sha256(rest), len(rest)
        while received < BIG_MIB << 20:
            chunk = slow.recv(1 << 20)
            assert chunk, f"the connection closed after {received} bytes"
            digest.update(chunk)
            received += len(chunk)
        assert received == BIG_MIB << 20
        assert digest.hexdigest() == hashlib.sha256(big.read_bytes()).hexdigest()
    finally:
        slow.close()


def test_symfony_binary_file_response(server, files, tmp_path):
    """BinaryFileResponse::trustXSendfileTypeHeader(): Symfony names the file, writes no body."""
    report = files / "private" / "docs" / "report.pdf"
    for client_type in (None, "X-Accel-Redirect"):  # a client's choice is replaced by the front's
        out = tmp_path / f"report-{client_type}.txt"
        query = urllib.parse.urlencode({"path": str(report), "report": str(out)})
        headers = {"X-Sendfile-Type": client_type} if client_type else {}
        r = httpx.get(f"{server.url}/symfony.php?{query}", headers=headers, timeout=30)
        assert (r.status_code, r.content) == (200, REPORT)
        assert r.headers["content-disposition"] == "attachment; filename=report.pdf"
        assert r.headers["etag"] == etag_of(report) and "x-sendfile" not in r.headers
        written = wait_until(lambda out=out: out.is_file() and out.read_text(), timeout=30,
                             what="symfony.php's report")
        assert written == "0 X-Sendfile"  # PHP produced no body bytes; the front sent the file
        ranged = httpx.get(f"{server.url}/symfony.php?{query}", headers={"Range": "bytes=5-9"}, timeout=30)
        assert (ranged.status_code, ranged.content) == (206, REPORT[5:10])


def test_symfony_with_x_accel_redirect_and_the_mapping_askr_sends(files, askr_module_server, tmp_path):
    """With only internal_locations, PHP is told X-Accel-Redirect and given X-Accel-Mapping;
    Symfony turns the file's path into a URI under the prefix, which the front maps back."""
    cfg = write_config(files, root=FIXTURE, workers=1, name="accel.toml",
                       static={"internal_locations": {"/protected/": str(files / "private")}})
    server = askr_module_server("--config", cfg)
    report = files / "private" / "docs" / "report.pdf"
    out = tmp_path / "report.txt"
    query = urllib.parse.urlencode({"path": str(report), "report": str(out)})
    r = httpx.get(f"{server.url}/symfony.php?{query}", headers={"X-Accel-Mapping": "/=/stolen/"}, timeout=30)
    assert (r.status_code, r.content) == (200, REPORT)
    assert r.headers["etag"] == etag_of(report) and "x-accel-redirect" not in r.headers
    assert wait_until(lambda: out.is_file() and out.read_text(), timeout=30,
                      what="symfony.php's report") == "0 X-Accel-Redirect"


@pytest.fixture(scope="module")
def laravel(tmp_path_factory, askr_module_server):
    app = make_laravel_app(tmp_path_factory.mktemp("laravel-xsendfile") / "app")
    private = app / "storage" / "app" / "private"
    private.mkdir(parents=True)
    (private / "report.pdf").write_bytes(REPORT)
    cfg = write_config(app, root=app / "public", workers=1,
                       static={"sendfile_roots": [str(app / "storage" / "app" / "private")]})
    server = askr_module_server("--config", cfg)
    server.app = app
    return server


def test_laravel_download(laravel):
    """response()->download(): with X-Sendfile trusted, the front serves the file. Symfony sets
    no ETag for a download, so the file's ETag shows the front answered, not PHP."""
    report = laravel.app / "storage" / "app" / "private" / "report.pdf"
    r = httpx.get(laravel.url + "/download/report.pdf", timeout=30)
    assert (r.status_code, r.content) == (200, REPORT)
    assert r.headers["content-disposition"] == "attachment; filename=report.pdf"
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["etag"] == etag_of(report) and "x-sendfile" not in r.headers
    again = httpx.get(laravel.url + "/download/report.pdf", headers={"If-None-Match": r.headers["etag"]},
                      timeout=30)
    assert again.status_code == 304
