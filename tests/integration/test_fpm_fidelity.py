"""Fidelity with nginx + php-fpm, asked, not remembered: the same request goes to askr and to
Debian's nginx + php-fpm serving the same document root (tests/php/fidelity) with the same
php.ini settings, and both must answer alike. The reference is started here (fpm_reference.py)
and skipped only when Debian's nginx or php-fpm is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from askrtest import TESTS, write_config
from fpm_reference import Reference, nginx_fpm
from h2client import H2Client
from rawhttp import Conn, Response

ROOT = TESTS / "php" / "fidelity"
WORKER_SCRIPT = TESTS / "php" / "worker.php"  # runs the routed script: the same scripts, booted once

# Both stacks get these on top of Debian's php.ini: errors shown (the warnings are what item 8
# compares), sessions as php-src's rfc1867_sid_invalid.phpt sets them up.
INI = {
    "display_errors": "1",
    "display_startup_errors": "1",
    "html_errors": "0",
    "error_reporting": "E_ALL & ~E_NOTICE",
    "upload_max_filesize": "1024",
    "session.save_path": "",
    "session.name": "PHPSESSID",
    "session.use_cookies": "1",
    "session.use_only_cookies": "0",
    "session.use_strict_mode": "0",
    "session.auto_start": "0",
    "session.upload_progress.enabled": "1",
    "session.upload_progress.cleanup": "0",
    "session.upload_progress.prefix": "upload_progress_",
    "session.upload_progress.name": "PHP_SESSION_UPLOAD_PROGRESS",
    "session.upload_progress.freq": "0",
    "session.save_handler": "files",
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    with nginx_fpm(ROOT, tmp_path_factory.mktemp("reference"), ini=INI) as ref:
        yield ref


def _askr(factory, tmp: Path, worker_mode: bool) -> Any:
    worker: dict[str, object] = {"ini": INI}
    if worker_mode:
        worker["script"] = str(WORKER_SCRIPT)
    return factory("--config", write_config(tmp, root=ROOT, server={"h2c": True}, worker=worker))


@pytest.fixture(scope="module")
def askr(askr_module_server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _askr(askr_module_server, tmp_path_factory.mktemp("askr"), worker_mode=False)


@pytest.fixture(scope="module")
def askr_worker(askr_module_server, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _askr(askr_module_server, tmp_path_factory.mktemp("askr-worker"), worker_mode=True)


def ask(server: Any | Reference, method: str, target: str, headers: dict[str, str] | None = None,
        body: bytes = b"") -> Response:
    with Conn(server.host, server.port) as c:
        return c.request(method, target, headers={"Host": f"{server.host}:{server.port}", **(headers or {})},
                         body=body)


def ask_h2(server: Any, method: str, target: str, headers: dict[str, str] | None = None,
           body: bytes | None = None):
    client = H2Client(server.host, server.port, tls=False)
    try:
        return client.get(target, method=method, headers=list((headers or {}).items()), body=body)
    finally:
        client.close()


def without_framing(resp: Response) -> list[tuple[str, str]]:
    """Response headers minus what legitimately differs between two servers (their names,
    dates and framing): each server frames the same body its own way."""
    skip = {"date", "server", "connection", "content-length", "transfer-encoding", "keep-alive"}
    return [(k.lower(), v) for k, v in resp.headers if k.lower() not in skip]


# -- 1. redirect status after POST --------------------------------------------------------------


def test_location_after_post_is_302_as_under_fpm(reference: Reference, askr: Any,
                                                 askr_worker: Any) -> None:
    """PHP answers a bare Location with 303 only when the request's protocol number is above
    1.0; php-fpm never sets it, so nginx + php-fpm says 302, over every HTTP version."""
    expected = ask(reference, "POST", "/redirect.php", body=b"a=1")
    assert (expected.status, expected.header("location")) == (302, "/target")
    for server in (askr, askr_worker):
        got = ask(server, "POST", "/redirect.php", body=b"a=1")
        assert (got.status, got.reason, got.header("location")) == (302, "Found", "/target")
        h2 = ask_h2(server, "POST", "/redirect.php", body=b"a=1")
        assert (h2.status, h2.header(b"location")) == (302, b"/target")


# -- 2. a .php URL whose script does not exist ------------------------------------------------


@pytest.mark.parametrize("target", ["/missing.php", "/missing.php/extra", "/assets/missing.php?x=1"])
def test_missing_script_is_404_in_classic_mode(reference: Reference, askr: Any,
                                               askr_worker: Any, target: str) -> None:
    assert ask(reference, "GET", target).status == 404
    assert ask(askr, "GET", target).status == 404
    assert ask_h2(askr, "GET", target).status == 404
    # worker mode: the worker script is the app's front controller, and it answers
    got = ask(askr_worker, "GET", target)
    assert got.status == 200 and got.body.startswith(b"front controller: " + target.encode())


def test_unknown_paths_still_reach_the_front_controller(reference: Reference, askr: Any) -> None:
    for server in (reference, askr):
        got = ask(server, "GET", "/blog/post?page=2")
        assert (got.status, got.body) == (200, b"front controller: /blog/post?page=2\n")


# -- 3. static Content-Type --------------------------------------------------------------------


def test_static_content_types_are_nginx_mime_types(reference: Reference, askr: Any) -> None:
    names = sorted(p.name for p in (ROOT / "assets").iterdir())
    assert len(names) > 25
    expected = {name: ask(reference, "GET", f"/assets/{name}").header("content-type") for name in names}
    got = {name: ask(askr, "GET", f"/assets/{name}").header("content-type") for name in names}
    assert got == expected
    assert got["style.css"] == "text/css" and got["app.js"] == "application/javascript"


def test_static_charset_and_types_options(askr_server, tmp_path: Path) -> None:
    """[static] charset/charset_types/types: nginx's charset, charset_types and types block."""
    server = askr_server("--config", write_config(tmp_path, root=ROOT, static={
        "charset": "utf-8", "types": {"mjs": "text/javascript", "webmanifest": "application/manifest+json"}}))
    types = {name: ask(server, "GET", f"/assets/{name}").header("content-type")
             for name in ("page.html", "readme.txt", "app.js", "style.css", "module.mjs", "app.webmanifest")}
    assert types == {"page.html": "text/html; charset=utf-8", "readme.txt": "text/plain; charset=utf-8",
                     "app.js": "application/javascript; charset=utf-8", "style.css": "text/css",
                     "module.mjs": "text/javascript", "app.webmanifest": "application/manifest+json"}


# -- 4. 304 from PHP ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?more=1"])
def test_304_from_php_has_no_content_type(reference: Reference, askr: Any, query: str) -> None:
    conditional = {"If-None-Match": '"v1"'}
    expected = ask(reference, "GET", "/notmodified.php" + query, conditional)
    got = ask(askr, "GET", "/notmodified.php" + query, conditional)
    assert (got.status, got.body) == (expected.status, expected.body) == (304, b"")
    assert without_framing(got) == without_framing(expected)
    assert got.header("content-type") is None and got.header("etag") == '"v1"'
    h2 = ask_h2(askr, "GET", "/notmodified.php" + query, conditional)
    assert h2.status == 304 and h2.header(b"content-type") is None and h2.header(b"etag") == b'"v1"'
    # the 200 keeps its type
    assert ask(askr, "GET", "/notmodified.php").header("content-type") == "text/css; charset=utf-8"


# -- 5. reason phrases -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["http-line", "status-header", "status-header-known", "code", "unregistered",
                                  "long", "ok-phrase", "line-then-code", "status-header-bare", "line-bare"])
def test_reason_phrase_is_php_s(reference: Reference, askr: Any, askr_worker: Any,
                                case: str) -> None:
    expected = ask(reference, "GET", f"/status.php?case={case}")
    for server in (askr, askr_worker):
        got = ask(server, "GET", f"/status.php?case={case}")
        assert (got.status, got.reason) == (expected.status, expected.reason)
        assert got.header("status") is None  # the CGI Status field is the status line, not a header
        assert got.body == b"status test\n"
        h2 = ask_h2(server, "GET", f"/status.php?case={case}")
        assert h2.status == expected.status and h2.header(b"status") is None


def test_reason_phrases_seen(reference: Reference) -> None:
    """What the parametrised test above holds askr to, spelled out."""
    cases = ("http-line", "status-header", "unregistered", "line-then-code")
    answers = {case: ask(reference, "GET", f"/status.php?case={case}") for case in cases}
    seen = {case: (r.status, r.reason) for case, r in answers.items()}
    assert seen == {"http-line": (403, "Access Denied"), "status-header": (399, "Choose Your Own Adventure"),
                    "unregistered": (399, ""), "line-then-code": (410, "Long Gone")}


# -- 6 and 9. CGI path variables ----------------------------------------------------------------

PATH_KEYS = ("SCRIPT_NAME", "SCRIPT_FILENAME", "PATH_INFO", "PATH_TRANSLATED", "PHP_SELF")


def server_vars(server: Any | Reference, target: str) -> dict:
    resp = ask(server, "GET", target)
    assert resp.status == 200, resp.body
    return json.loads(resp.body)


def test_path_translated_as_php_fpm_computes_it(askr: Any, askr_worker: Any,
                                                tmp_path: Path) -> None:
    """php-fpm's cgi.fix_pathinfo=1, given the whole path as nginx configurations without
    fastcgi_split_path_info (or Apache's mod_proxy_fcgi) hand it over, derives PATH_INFO and
    PATH_TRANSLATED = DOCUMENT_ROOT + PATH_INFO itself; without a PATH_INFO there is none."""
    with nginx_fpm(ROOT, tmp_path / "reference", php_location="fix_pathinfo") as ref:
        for target in ("/server.php/some/path?q=1", "/server.php/a%20b/", "/server.php"):
            expected = {k: server_vars(ref, target)[k] for k in PATH_KEYS}
            for server in (askr, askr_worker):
                got = {k: server_vars(server, target)[k] for k in PATH_KEYS}
                if expected["PATH_INFO"] == "":  # nginx sends it empty; askr (like Laravel's config) not
                    expected["PATH_INFO"] = None
                assert got == expected, target
    assert server_vars(askr, "/server.php/x")["PATH_TRANSLATED"] == str(ROOT) + "/x"
    assert server_vars(askr, "/server.php/x")["getenv_PATH_TRANSLATED"] == str(ROOT) + "/x"


def test_cgi_path_variables_match_debian_snippet(reference: Reference, askr: Any) -> None:
    """Under Debian's snippets/fastcgi-php.conf, DOCUMENT_URI is the script (try_files rewrote
    $uri), and nothing sets PATH_TRANSLATED without a PATH_INFO."""
    keys = (*PATH_KEYS, "DOCUMENT_URI", "REQUEST_URI", "QUERY_STRING", "SERVER_PROTOCOL", "REQUEST_METHOD")
    for target in ("/server.php", "/server.php?x=%20y", "/sub%20dir/../server.php"):
        expected = {k: server_vars(reference, target)[k] for k in keys}
        expected["PATH_INFO"] = None if expected["PATH_INFO"] == "" else expected["PATH_INFO"]
        assert {k: server_vars(askr, target)[k] for k in keys} == expected, target
    expected = server_vars(reference, "/server.php/a%2Fb")
    got = server_vars(askr, "/server.php/a%2Fb")
    assert got["DOCUMENT_URI"] == expected["DOCUMENT_URI"] == "/server.php"
    assert got["PHP_SELF"] == expected["PHP_SELF"] == "/server.php/a/b"


# -- 7. directory redirects --------------------------------------------------------------------


@pytest.mark.parametrize(("target", "host"), [
    ("/wp-admin", None), ("/wp-admin?a=1&b=2", None),
    ("/wp-admin", "example.test"), ("/wp-admin", "example.test:81"),
])
def test_directory_redirect_is_absolute(reference: Reference, askr: Any, target: str,
                                        host: str | None) -> None:
    """nginx's absolute_redirect and port_in_redirect (both on by default): the Host's name with
    the port the connection came in on."""
    for server in (reference, askr):
        headers = {"Host": host} if host else None
        got = ask(server, "GET", target, headers)
        name = (host or server.host).partition(":")[0]
        path, _, query = target.partition("?")
        expected = f"http://{name}:{server.port}{path}/" + (f"?{query}" if query else "")
        assert (got.status, got.header("location")) == (301, expected)
    h2 = ask_h2(askr, "GET", "/wp-admin")
    assert h2.status == 301 and h2.header(b"location") == f"http://{askr.host}:{askr.port}/wp-admin/".encode()


def test_directory_redirect_behind_a_tls_terminating_proxy(askr_server, tmp_path: Path) -> None:
    """From a trusted proxy, the URL the client used: https, its host, its port (or none)."""
    server = askr_server("--config", write_config(tmp_path, root=ROOT,
                                                  server={"trusted_proxies": ["127.0.0.1"]}))
    https = {"X-Forwarded-Proto": "https"}
    got = ask(server, "GET", "/wp-admin", {**https, "X-Forwarded-Host": "shop.example"})
    assert got.header("location") == "https://shop.example/wp-admin/"
    got = ask(server, "GET", "/wp-admin", {**https, "X-Forwarded-Host": "shop.example:8443"})
    assert got.header("location") == "https://shop.example:8443/wp-admin/"
    got = ask(server, "GET", "/wp-admin", {"Host": "bad host/x"})  # never echoed into Location
    assert got.header("location") == f"http://127.0.0.1:{server.port}/wp-admin/"


# -- 8. session upload progress with an invalid session id --------------------------------------

BOUNDARY = "---------------------------20896060251896012921717172737"
UPLOAD = (
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"PHP_SESSION_UPLOAD_PROGRESS\"\r\n\r\n"
    f"upload_progress.php\r\n"
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file1\"; filename=\"file1.txt\"\r\n\r\n1\r\n"
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file2\"; filename=\"file2.txt\"\r\n\r\n2\r\n"
    f"--{BOUNDARY}--\r\n"
).encode()


def test_upload_progress_warnings_with_an_illegal_session_id(reference: Reference, askr: Any,
                                                              askr_worker: Any) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", "Cookie": "PHPSESSID=_"}
    expected = ask(reference, "POST", "/upload_progress.php", headers, UPLOAD)
    assert expected.status == 200
    assert expected.body.count(b"Session ID is too long or contains illegal characters") == 2
    for server in (askr, askr_worker):
        got = ask(server, "POST", "/upload_progress.php", headers, UPLOAD)
        assert (got.status, got.body.decode()) == (expected.status, expected.body.decode()), server.mode


# -- 9. every other CGI variable -----------------------------------------------------------------

# What legitimately differs: who the server is, ports, times, the FastCGI transport's own
# variable, the worker's user environment (php-fpm sets USER and HOME), and SERVER_NAME, which
# nginx takes from its server_name directive (unset here) and askr from the Host header.
NOT_COMPARED = {"SERVER_SOFTWARE", "SERVER_PORT", "REMOTE_PORT", "HTTP_HOST", "REQUEST_TIME",
                "REQUEST_TIME_FLOAT", "FCGI_ROLE", "USER", "HOME", "SERVER_NAME"}


@pytest.mark.parametrize(("method", "target", "headers", "body"), [
    ("GET", "/cgi.php?a=1&b[]=2", {}, b""),
    ("POST", "/cgi.php", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1"),
    ("POST", "/cgi.php", {}, b"raw"),
    ("GET", "/cgi.php", {"Authorization": "Basic YWxpY2U6c2VjcmV0", "X-Custom-Header": "v",
                         "Accept-Language": "en"}, b""),
    ("GET", "/cgi.php", {"Authorization": "Bearer token"}, b""),
])
def test_every_cgi_variable_matches(reference: Reference, askr: Any, askr_worker: Any, method: str,
                                    target: str, headers: dict[str, str], body: bytes) -> None:
    expected = json.loads(ask(reference, method, target, headers, body).body)
    for name in NOT_COMPARED:
        expected["server"].pop(name, None)
    if expected["server"].get("PATH_INFO") == "":
        del expected["server"]["PATH_INFO"]  # see docs/fpm-compatibility.md
    for server in (askr, askr_worker):
        got = json.loads(ask(server, method, target, headers, body).body)
        for name in NOT_COMPARED | {"ASKR_WORKER", "FRANKENPHP_WORKER", "ASKR_APP_BASE"}:
            got["server"].pop(name, None)
        assert got["server"] == expected["server"]
        assert {k: v for k, v in got["headers"].items() if k != "host"} == {
            k: v for k, v in expected["headers"].items() if k != "host"}


# -- 10. header names with blanks before the colon ------------------------------------------------

# tests/php/fidelity/header_names.php's cases whose head nginx refuses (a name with a blank or a
# control character), and those it passes on (an odd name without blanks, blanks in a value, a
# bare name without a colon, which goes out with an empty value)
REFUSED_NAMES = ("one-blank", "blanks", "tab", "only-blanks", "managed", "leading-blank", "control")
PASSED_NAMES = ("paren", "value-blanks", "bare-name")


def test_header_names_nginx_refuses(reference: Reference) -> None:
    """What the tests below hold askr to, spelled out: 502 for every blank in a name (nginx logs
    "upstream sent invalid header"), nothing trimmed or dropped; odd names without one pass."""
    seen = {case: ask(reference, "GET", f"/header_names.php?case={case}").status
            for case in (*REFUSED_NAMES, *PASSED_NAMES)}
    assert seen == {**dict.fromkeys(REFUSED_NAMES, 502), **dict.fromkeys(PASSED_NAMES, 200)}
    assert "upstream sent invalid header" in (reference.tmp / "nginx-error.log").read_text()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "flushed"])
@pytest.mark.parametrize("case", [*REFUSED_NAMES, *PASSED_NAMES])
def test_header_names_with_blanks_as_nginx_answers_them(reference: Reference, askr: Any, askr_worker: Any,
                                                       case: str, stream: bool) -> None:
    """header("X-A : b") over HTTP/1.1: the 502 nginx answers, never the line with its blank."""
    target = f"/header_names.php?case={case}" + ("&stream=1" if stream else "")
    expected = ask(reference, "GET", target)
    for server in (askr, askr_worker):
        got = ask(server, "GET", target)
        assert (got.status, got.reason) == (expected.status, expected.reason), server.mode
        assert all(name == name.strip(" \t") and name for name, _ in got.headers)
        if expected.status == 200:
            assert got.body == expected.body
            # (a flushed body gets askr's Vary)
            for name in ("X(A)", "X-V", "Foo", "X-Mid", "X-After", "Content-Type"):
                assert got.header_list(name) == expected.header_list(name)
        else:
            assert got.header("x-after") is None
        # the worker let go mid-response came back: the next request is answered in full
        assert ask(server, "GET", "/header_names.php").body == b"header names\n"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "flushed"])
def test_header_names_with_blanks_over_http2(askr: Any, askr_worker: Any, stream: bool) -> None:
    """The same 502 over HTTP/2, as nginx answers there too (its upstream check comes before
    the client's protocol): the name is neither trimmed ("x-a") nor dropped."""
    for server in (askr, askr_worker):
        for case in REFUSED_NAMES:
            h2 = ask_h2(server, "GET", f"/header_names.php?case={case}" + ("&stream=1" if stream else ""))
            assert (h2.status, h2.header(b"x-after"), h2.header(b"x-a")) == (502, None, None), case
        h2 = ask_h2(server, "GET", "/header_names.php?case=value-blanks")
        assert (h2.status, h2.header(b"x-v"), h2.header(b"x-after")) == (200, b"a : b\tc", b"1")
        assert ask_h2(server, "GET", "/header_names.php").data == b"header names\n"
