"""TLS termination and HTTP/2 (askr/front/tls.py, http2.py, negotiate.py): ALPN, streams on
different workers, flow control both ways, Early Hints, GOAWAY on drain, limits, rapid reset,
certificate reload, h2c, the https redirect, and a real browser."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import h2.errors
import h2.settings
import httpx
import pytest
import trustme
from askrtest import APP, free_port, front_pids, serving_pid, wait_until, write_config
from cdp import CHROMIUM
from h2client import H2Client


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"cert": str(base / "cert.pem"), "key": str(base / "key.pem"), "ca": str(base / "ca.pem")}
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(paths["cert"], append=i > 0)
    leaf.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    return paths


def trust(certs: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certs["ca"])


def tls_config(tmp_path: Path, certs: dict[str, str], **kw) -> Path:
    return write_config(tmp_path, tls={"cert": certs["cert"], "key": certs["key"]}, **kw)


@pytest.fixture(scope="module")
def server(askr_module_server, tmp_path_factory, certs):
    """TLS on the listen address, 4 workers (streams can spread), small limits to test them."""
    config = tls_config(tmp_path_factory.mktemp("tls"), certs, workers=4,
                        limits={"max_streams": 32, "max_header_size": "8K", "max_body_size": "64M"})
    return askr_module_server("--config", config)


def https(server) -> str:
    return f"https://127.0.0.1:{server.port}"


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True,
                          timeout=90, check=False)


@pytest.mark.parametrize(("flag", "version", "protocol"), [("--http2", "2", "HTTP/2.0"),
                                                          ("--http1.1", "1.1", "HTTP/1.1")])
def test_alpn_gives_each_client_what_it_asked_for(server, certs, flag, version, protocol):
    done = curl(flag, "--cacert", certs["ca"], "-w", "\n%{http_version}", https(server) + "/info.php?a=1")
    assert done.returncode == 0, done.stderr
    body, _, negotiated = done.stdout.rpartition("\n")
    assert negotiated == version
    php = json.loads(body)["server"]
    assert (php["SERVER_PROTOCOL"], php["HTTPS"], php["REQUEST_SCHEME"]) == (protocol, "on", "https")
    assert php["SERVER_PORT"] == str(server.port) and php["QUERY_STRING"] == "a=1"


def test_httpx_http2_superglobals(server, certs):
    with httpx.Client(http2=True, verify=trust(certs), timeout=30, cookies={"c": "v"}) as client:
        r = client.post(https(server) + "/info.php?x=1", data={"name": "askr"}, headers={"X-Test": "yes"})
        assert r.http_version == "HTTP/2"
        info = r.json()
        assert info["post"] == {"name": "askr"} and info["get"] == {"x": "1"} and info["cookie"] == {"c": "v"}
        assert info["server"]["HTTP_X_TEST"] == "yes"
        assert info["server"]["HTTP_HOST"] == f"127.0.0.1:{server.port}"  # from :authority


def test_concurrent_streams_of_one_connection_run_on_different_workers(server, certs):
    async def run() -> list[dict]:
        async with httpx.AsyncClient(http2=True, verify=trust(certs), timeout=60) as client:
            rs = await asyncio.gather(*(client.get(https(server) + "/sleep.php?ms=400") for _ in range(8)))
            assert {r.http_version for r in rs} == {"HTTP/2"}
            return [r.json() for r in rs]

    answers = asyncio.run(run())
    assert len({a["pid"] for a in answers}) >= 2  # one connection, several workers at once


def test_8mb_upload_and_download_over_h2(server, certs):
    """Far past every flow-control window (64 KiB stream and connection windows, the 256 KiB
    per-stream buffer), so both directions stop and resume many times; 50 MB tested nothing more."""
    body = os.urandom(8 * 1024 * 1024)
    with httpx.Client(http2=True, verify=trust(certs), timeout=120) as client:
        r = client.post(https(server) + "/digest.php", content=body)
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        assert r.json()["length"] == len(body) and r.json()["sha1"] == hashlib.sha1(body).hexdigest()
        r = client.get(https(server) + "/big.php?kb=8192")
        assert r.status_code == 200 and len(r.content) == 8192 * 1024
        assert r.content[:6] == b"000000" and r.content[-1024:-1018] == b"008191"


def test_an_upload_without_content_length_is_collected_first(server, certs):
    client = H2Client("127.0.0.1", server.port, certs["ca"])
    sid = client.request("/digest.php", method="POST", body=b"x" * 300_000)  # no content-length header
    client.wait(lambda: client.responses[sid].ended)
    answer = json.loads(client.responses[sid].data)
    assert (answer["length"], answer["content_length"]) == (300_000, "300000")
    client.close()


def test_a_slow_reader_does_not_stall_other_streams(server, certs):
    client = H2Client("127.0.0.1", server.port, certs["ca"])
    slow = client.request("/big.php?kb=8192")  # 8 MiB that we refuse to read (window held shut)
    client.hold.add(slow)
    client.wait(lambda: len(client.responses[slow].data) > 0)
    for _ in range(3):
        fast = client.get("/hello.php")
        assert (fast.status, bytes(fast.data)) == (200, b"hello")
    assert not client.responses[slow].ended
    assert len(client.responses[slow].data) <= 1024 * 1024  # bounded by its window
    client.release(slow)
    client.wait(lambda: client.responses[slow].ended, timeout=120)
    assert len(client.responses[slow].data) == 8192 * 1024
    client.close()


def test_static_files_and_errors_over_h2(server, certs):
    client = H2Client("127.0.0.1", server.port, certs["ca"])
    css = client.get("/style.css")
    assert css.status == 200 and bytes(css.data) == (APP / "style.css").read_bytes()
    assert client.get("/.env").status in (403, 404)
    assert client.get("/missing.txt", method="HEAD").status in (200, 404)
    big = client.get("/info.php", headers=[("x-big", "a" * 9000)])
    assert big.status == 431
    assert client.get("/hello.php").status == 200  # the connection goes on
    client.close()


@pytest.mark.parametrize("headers", [
    [("X-Upper", "1")],                     # upper-case field name
    [("connection", "keep-alive")],         # connection-specific field
    [("te", "gzip")],                       # te other than trailers
    [("x-bad", "a\nb")],                   # LF in a value
    [("x-space", " padded")],               # leading whitespace
])
def test_malformed_header_blocks_reset_the_stream_only(server, certs, headers):
    client = H2Client("127.0.0.1", server.port, certs["ca"], validate=False)
    bad = client.get("/hello.php", headers=headers)
    assert bad.reset == h2.errors.ErrorCodes.PROTOCOL_ERROR and bad.status == 0
    good = client.get("/hello.php")
    assert (good.status, bytes(good.data)) == (200, b"hello")  # same connection, still fine
    client.close()


def test_early_hints_reach_the_client_before_the_response(server, certs):
    client = H2Client("127.0.0.1", server.port, certs["ca"])
    resp = client.get("/hints.php")
    assert [dict(h)[b":status"] for h in resp.informational] == [b"103"]
    assert dict(resp.informational[0])[b"link"] == b"</style.css>; rel=preload; as=style"
    assert resp.status == 200 and bytes(resp.data) == b"final HTTP/2.0"
    assert resp.header(b"x-final") == b"yes"
    client.close()


def test_settings_advertise_the_stream_limit(server, certs):
    client = H2Client("127.0.0.1", server.port, certs["ca"])
    client.get("/hello.php")
    assert client.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 32
    client.close()


def test_rapid_reset_is_cut_off_without_tying_up_php(server, certs):
    def served() -> int:
        status = httpx.get(server.admin_url + "/api/status", timeout=10).json()
        return sum(w["requests"] for w in status["workers"])

    before = served()
    attacker = H2Client("127.0.0.1", server.port, certs["ca"])
    opened = 0
    try:
        for _ in range(500):  # bounded: 500 open+reset pairs
            sid = attacker.conn.get_next_available_stream_id()
            attacker.conn.send_headers(sid, [(b":method", b"GET"), (b":path", b"/sleep.php?ms=200"),
                                             (b":scheme", b"https"), (b":authority", attacker.authority)])
            attacker.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            attacker.flush()
            opened += 1
    except (OSError, ssl.SSLError):
        pass  # cut off mid-attack
    try:
        attacker.wait(lambda: attacker.goaway is not None, timeout=30)
        assert attacker.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    except (OSError, ssl.SSLError, AssertionError):
        pass  # the GOAWAY can be lost to the reset of a socket we never stopped writing to
    attacker.close()
    assert opened > 2 * 32  # it got past the reset budget
    assert server.wait_for_log(r"rapid reset\); closing the connection")
    with httpx.Client(http2=True, verify=trust(certs), timeout=30) as client:
        assert client.get(https(server) + "/hello.php").text == "hello"
    assert served() - before < 2 * 32  # resets in the same read never reached PHP


def test_clients_leaving_with_streams_in_flight_cost_no_worker(server, certs):
    """h2load-style endings: a connection closed with dozens of streams open. The answers are
    dropped; no worker is killed (only one mid-response is cut off) and nothing leaks."""
    def status() -> dict:
        return httpx.get(server.admin_url + "/api/status", timeout=10).json()

    restarts = status()["restarts"]
    for _ in range(5):
        client = H2Client("127.0.0.1", server.port, certs["ca"])
        sids = [client.request("/hello.php") for _ in range(30)]
        client.wait(lambda sids=sids, client=client: any(client.responses[s].ended for s in sids))
        client.conn.close_connection()  # GOAWAY, then gone, as h2load ends a run
        client.flush()
        client.close()
    with httpx.Client(http2=True, verify=trust(certs), timeout=30) as c:
        for _ in range(20):
            assert c.get(https(server) + "/hello.php").text == "hello"
    assert status()["restarts"] == restarts


def test_redirect_and_trusted_proxies(askr_server, tmp_path, certs):
    redirect_port = free_port()
    config = tls_config(tmp_path, certs, workers=1, server={
        "redirect_http": f"127.0.0.1:{redirect_port}", "trusted_proxies": ["127.0.0.1/32"]})
    srv = askr_server("--config", config)
    r = httpx.get(f"http://127.0.0.1:{redirect_port}/info.php?q=1", headers={"Host": "example.test"})
    assert r.status_code == 308
    assert r.headers["location"] == f"https://example.test:{srv.port}/info.php?q=1"
    forwarded = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "http",
                 "X-Forwarded-Host": "shop.example"}
    with httpx.Client(verify=trust(certs), timeout=30) as client:
        php = client.get(https(srv) + "/info.php", headers=forwarded).json()["server"]
    assert php["REMOTE_ADDR"] == "203.0.113.7"  # the nearest untrusted hop
    assert (php["HTTPS"], php["REQUEST_SCHEME"], php["SERVER_PORT"]) == ("off", "http", "80")
    assert (php["SERVER_NAME"], php["HTTP_HOST"]) == ("shop.example", "shop.example")


def test_forwarded_headers_from_untrusted_peers_are_ignored(askr_server, tmp_path):
    srv = askr_server("--config", write_config(tmp_path, workers=1,
                                                server={"trusted_proxies": ["10.0.0.0/8"]}))
    php = httpx.get(srv.url + "/info.php", timeout=30, headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "Forwarded": "for=1.2.3.4"}).json()
    server_vars = php["server"]
    assert server_vars["REMOTE_ADDR"] == "127.0.0.1" and "HTTPS" not in server_vars
    assert not any(k in server_vars for k in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                                              "HTTP_FORWARDED"))


def test_sigterm_sends_goaway_and_in_flight_streams_complete(askr_server, tmp_path, certs):
    srv = askr_server("--config", tls_config(tmp_path, certs, workers=2))
    client = H2Client("127.0.0.1", srv.port, certs["ca"])
    sid = client.request("/sleep.php?ms=1500")
    status_url = srv.admin_url + "/api/status"
    wait_until(lambda: any(w["busy"] for w in httpx.get(status_url, timeout=10).json()["workers"]),
               what="the request to be running on a worker")
    srv.proc.send_signal(signal.SIGTERM)
    client.wait(lambda: client.goaway is not None and client.responses[sid].ended, timeout=60)
    assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert client.goaway.last_stream_id >= sid
    assert client.responses[sid].status == 200 and json.loads(client.responses[sid].data)["slept_ms"] == 1500
    assert srv.proc.wait(60) == 0


def test_reload_picks_up_a_renewed_certificate(askr_server, tmp_path, certs):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(certs["cert"], live / "cert.pem")
    shutil.copy(certs["key"], live / "key.pem")
    srv = askr_server("--config", write_config(tmp_path, workers=1, tls={
        "cert": str(live / "cert.pem"), "key": str(live / "key.pem")}))
    old = H2Client("127.0.0.1", srv.port, certs["ca"])  # opened before the renewal
    first = _serial(srv.port, certs["ca"])
    renewed = trustme.CA().issue_cert("127.0.0.1")
    renewed.cert_chain_pems[0].write_to_path(str(live / "cert.pem"))
    renewed.private_key_pem.write_to_path(str(live / "key.pem"))
    start = len(srv.lines)
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_for_log("TLS certificate re-read", start=start)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw, \
            context.wrap_socket(raw) as tls:
        pem = ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
    assert pem.strip() == renewed.cert_chain_pems[0].bytes().decode().strip()
    assert first != pem
    assert old.get("/hello.php").status == 200  # an old connection keeps working
    old.close()


def test_h2c_prior_knowledge_on_a_plain_listener(askr_server, tmp_path):
    srv = askr_server("--config", write_config(tmp_path, workers=1, server={"h2c": True}))
    done = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", srv.url + "/info.php")
    body, _, version = done.stdout.rpartition("\n")
    assert version == "2" and json.loads(body)["server"]["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert httpx.get(srv.url + "/hello.php", timeout=30).text == "hello"  # HTTP/1.1 still works
    client = H2Client("127.0.0.1", srv.port, tls=False)
    assert client.get("/hello.php").status == 200
    client.close()


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (Debian nghttp2-client) not installed")
def test_h2load_smoke(server):
    done = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", https(server) + "/hello.php"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "400 succeeded, 0 failed, 0 errored" in done.stdout
    assert "Application protocol: h2" in done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package) could not be installed here")
def test_a_real_browser_uses_http2(server, tmp_path):
    done = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--ignore-certificate-errors", f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", https(server) + "/hints.php"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "final HTTP/2.0" in done.stdout, done.stderr[-2000:]


def _serial(port: int, cafile: str) -> str:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))


def test_two_fronts_share_the_tls_listener(askr_server, tmp_path, certs):
    """[server] fronts = 2 (what bench/h2.py --fronts 2 measures): both fronts accept TLS
    connections and speak HTTP/2 to their own PHP worker."""
    srv = askr_server("--config", tls_config(tmp_path, certs, workers=2, server={"fronts": 2}))

    async def run() -> None:
        for _ in range(12):  # new connections land on either front
            async with httpx.AsyncClient(http2=True, verify=trust(certs), timeout=30) as client:
                r = await client.get(https(srv) + "/pid.php")
                assert r.http_version == "HTTP/2" and r.status_code == 200 and r.text.isdigit()

    asyncio.run(run())
    fronts = [line for line in srv.lines if "front #" in line and "started" in line]
    assert len(fronts) == 2


@pytest.mark.parametrize("http2", [True, False])
def test_directory_redirect_over_tls_is_an_https_url(server, certs, http2):
    """nginx's absolute_redirect: the scheme and port the client used (never http:// to a TLS client)."""
    with httpx.Client(verify=trust(certs), http2=http2, timeout=30) as client:
        r = client.get(https(server) + "/sub?x=1")
    assert r.status_code == 301
    assert r.headers["location"] == f"https://127.0.0.1:{server.port}/sub/?x=1"


def test_a_tls_session_resumes_on_every_front(askr_server, tmp_path, certs):
    """The fronts share the master's session ticket keys: a client coming back resumes its
    session whichever front the kernel hands its new connection to (before, only on the front
    that issued the ticket: half the time with two fronts)."""
    srv = askr_server("--config", tls_config(tmp_path, certs, workers=2, server={"fronts": 2}))
    context = trust(certs)
    context.maximum_version = ssl.TLSVersion.TLSv1_3

    pids = front_pids(srv)

    def connect(session: ssl.SSLSession | None = None) -> tuple[ssl.SSLSession, bool, int | None]:
        """One request on a new connection: its session, whether it was resumed, its front."""
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as conn:
            conn.sendall(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while not received.endswith(b"\r\n\r\nhello"):  # the ticket came before it
                chunk = conn.recv(65536)
                assert chunk, received
                received += chunk
            front = serving_pid(srv.port, conn.getsockname()[1], pids.values())
            return conn.session, conn.session_reused, front

    session, _, _ = connect()
    fronts_seen = set()
    for _ in range(40):  # until both fronts have resumed it (each try lands on either)
        _, reused, front = connect(session)
        assert reused
        fronts_seen.add(front)
        if fronts_seen >= set(pids.values()):
            break
    assert fronts_seen == set(pids.values())
