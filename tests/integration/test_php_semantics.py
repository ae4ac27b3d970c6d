"""PHP as apps see it under askr: superglobals, bodies, uploads, headers, sessions, CGI variables.

The reference is nginx (fastcgi_params) + php-fpm: an app must not be able to tell the difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time

import httpx
import pytest
from askrtest import APP, VERSION
from rawhttp import Conn


@pytest.fixture(scope="module")
def client(php_app):
    with httpx.Client(base_url=php_app.url, timeout=30.0) as c:
        yield c


def info(client: httpx.Client, target: str = "/info.php", **kw) -> dict:
    r = client.request(kw.pop("method", "GET"), target, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_hello(client):
    r = client.get("/hello.php")
    assert r.status_code == 200
    assert r.text == "hello"


def test_php_sapi_is_fpm_fcgi(client):
    body = info(client)
    assert body["sapi"] == "fpm-fcgi"
    assert body["php_sapi_name"] == "fpm-fcgi"


def test_opcache_enabled_in_worker(client):
    assert info(client)["opcache_enabled"] is True


def test_get_superglobal_with_arrays(client):
    body = info(client, "/info.php?a=1&b[]=x&b[]=y&m[k]=v&empty=&enc=%C3%A9%20%2B")
    assert body["get"] == {"a": "1", "b": ["x", "y"], "m": {"k": "v"}, "empty": "", "enc": "é +"}
    assert body["server"]["QUERY_STRING"] == "a=1&b[]=x&b[]=y&m[k]=v&empty=&enc=%C3%A9%20%2B"


def test_post_form_urlencoded(client):
    body = info(client, "/info.php?g=1", method="POST", data={"name": "Ada", "list[]": ["1", "2"]})
    assert body["post"] == {"name": "Ada", "list": ["1", "2"]}
    assert body["get"] == {"g": "1"}
    # request_order "GP": $_REQUEST merges GET and POST
    assert body["request"]["name"] == "Ada"
    assert body["request"]["g"] == "1"
    assert body["server"]["REQUEST_METHOD"] == "POST"
    assert body["server"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"


def test_cookies_superglobal(client):
    body = info(client, headers={"Cookie": "a=1; b=two%20words; c"})
    assert body["cookie"]["a"] == "1"
    assert body["cookie"]["b"] == "two words"
    assert body["server"]["HTTP_COOKIE"] == "a=1; b=two%20words; c"


def test_php_input_json_body(client):
    payload = json.dumps({"hello": "wörld", "n": [1, 2, 3]}).encode()
    body = info(client, method="POST", content=payload, headers={"Content-Type": "application/json"})
    assert body["input"].encode() == payload
    assert body["post"] == []  # not form data: PHP leaves $_POST empty
    assert body["server"]["CONTENT_TYPE"] == "application/json"
    assert body["server"]["CONTENT_LENGTH"] == str(len(payload))


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_php_input_other_methods(client, method):
    body = info(client, method=method, content=b"raw-body-" + method.encode())
    assert body["server"]["REQUEST_METHOD"] == method
    assert body["input"] == "raw-body-" + method


def test_large_php_input(client):
    payload = os.urandom(300 * 1024).hex().encode()  # 600 KB, many BODY frames
    body = info(client, method="POST", content=payload, headers={"Content-Type": "text/plain"})
    assert len(body["input"]) == len(payload)
    assert hashlib.md5(body["input"].encode()).hexdigest() == hashlib.md5(payload).hexdigest()


def test_no_content_headers_without_body(client):
    server = info(client)["server"]
    assert "CONTENT_LENGTH" not in server or server["CONTENT_LENGTH"] == ""
    assert "CONTENT_TYPE" not in server or server["CONTENT_TYPE"] == ""


def test_multipart_upload(client):
    small = b"hello upload\n"
    big = os.urandom(300 * 1024)
    r = client.post(
        "/upload.php",
        data={"title": "two files"},
        files={
            "doc": ("notes.txt", small, "text/plain"),
            "blob": ("blob.bin", big, "application/octet-stream"),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["post"] == {"title": "two files"}
    doc, blob = body["files"]["doc"], body["files"]["blob"]
    assert doc["name"] == "notes.txt"
    assert doc["type"] == "text/plain"
    assert doc["error"] == 0
    assert doc["is_uploaded_file"] is True
    assert doc["moved"] is True
    assert doc["size"] == doc["stored_size"] == len(small)
    assert doc["md5"] == hashlib.md5(small).hexdigest()
    assert blob["is_uploaded_file"] is True
    assert blob["size"] == blob["stored_size"] == len(big)
    assert blob["md5"] == hashlib.md5(big).hexdigest()


def test_multipart_upload_with_curl(php_app, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    f = tmp_path / "photo.jpg"
    data = os.urandom(64 * 1024)
    f.write_bytes(data)
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "30",
            "-F",
            f"pic=@{f};type=image/jpeg",
            "-F",
            "k=v",
            f"{php_app.url}/upload.php",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    body = json.loads(out.stdout)
    assert body["post"] == {"k": "v"}
    pic = body["files"]["pic"]
    assert pic["name"] == "photo.jpg"
    assert pic["type"] == "image/jpeg"
    assert pic["is_uploaded_file"] is True
    assert pic["md5"] == hashlib.md5(data).hexdigest()


def test_header_status_and_cookies(client):
    r = client.get("/headers.php")
    assert r.status_code == 201
    assert r.text == "headers-ok"
    assert r.headers["x-askr-test"] == "one"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers.get_list("x-replaced") == ["new"]
    multi = r.headers.get_list("x-multi")
    assert multi == ["a", "b"] or multi == ["a, b"]
    # Set-Cookie can never be folded into one line: three separate fields.
    cookies = r.headers.get_list("set-cookie")
    assert len(cookies) == 3, cookies
    assert cookies[0] == "first=alpha"
    assert cookies[1].startswith("second=beta; path=/")
    assert "HttpOnly" in cookies[1]
    assert cookies[2].startswith("third=gamma%20value")
    assert "SameSite=Lax" in cookies[2]


def test_location_header_gives_302(client):
    r = client.get("/headers.php?redirect=1")
    assert r.status_code == 302
    assert r.headers["location"] == "/elsewhere?from=headers"


def test_session_persists_with_cookie_jar(php_app):
    with httpx.Client(base_url=php_app.url, timeout=30.0) as a:
        first = a.get("/session.php")
        assert first.status_code == 200
        assert "PHPSESSID" in first.cookies
        ids = {first.json()["id"]}
        counts = [first.json()["n"]]
        for _ in range(2):
            r = a.get("/session.php")
            counts.append(r.json()["n"])
            ids.add(r.json()["id"])
        assert counts == [1, 2, 3]
        assert len(ids) == 1
    with httpx.Client(base_url=php_app.url, timeout=30.0) as b:  # a fresh jar: a fresh session
        r = b.get("/session.php")
        assert r.json()["n"] == 1
        assert r.json()["id"] not in ids


def raw_info(php_app, headers: list[tuple[str, str]], target: str = "/info.php") -> tuple[dict, int]:
    with Conn(php_app.host, php_app.port) as c:
        resp = c.request("GET", target, headers)
        assert resp.status == 200, resp
        return resp.json(), c.local_port


def test_cgi_variables(php_app):
    before = time.time()
    body, client_port = raw_info(
        php_app,
        [("Host", "example.test"), ("Accept-Language", "fr"), ("X-Custom-Thing", "v1")],
        "/info.php?q=1",
    )
    s = body["server"]
    root = os.path.realpath(APP)
    assert os.path.realpath(s["DOCUMENT_ROOT"]) == root
    assert os.path.realpath(s["SCRIPT_FILENAME"]) == os.path.join(root, "info.php")
    assert s["SCRIPT_NAME"] == "/info.php"
    assert s["PHP_SELF"] == "/info.php"
    assert s["DOCUMENT_URI"] == "/info.php"
    assert s["REQUEST_URI"] == "/info.php?q=1"
    assert s["QUERY_STRING"] == "q=1"
    assert s["REQUEST_METHOD"] == "GET"
    assert s["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert s["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert s["SERVER_SOFTWARE"] == f"askr/{VERSION}"
    assert s["REQUEST_SCHEME"] == "http"
    assert s["SERVER_ADDR"] == "127.0.0.1"
    assert s["SERVER_PORT"] == str(php_app.port)
    assert s["REMOTE_ADDR"] == "127.0.0.1"
    assert s["REMOTE_PORT"] == str(client_port)
    assert isinstance(s["SERVER_NAME"], str)
    assert s["SERVER_NAME"] != ""
    assert s["HTTP_HOST"] == "example.test"
    assert s["HTTP_ACCEPT_LANGUAGE"] == "fr"
    assert s["HTTP_X_CUSTOM_THING"] == "v1"
    assert "HTTPS" not in s or s["HTTPS"] in ("", "off")
    assert "PATH_INFO" not in s or s["PATH_INFO"] == ""
    assert isinstance(s["REQUEST_TIME"], int)
    assert isinstance(s["REQUEST_TIME_FLOAT"], float)
    assert before - 5 <= s["REQUEST_TIME_FLOAT"] <= time.time() + 5  # a clock sanity check, not latency
    assert int(s["REQUEST_TIME"]) == int(s["REQUEST_TIME_FLOAT"])


def test_path_info(php_app):
    body, _ = raw_info(php_app, [], "/info.php/extra/path?x=1")
    s = body["server"]
    assert body["script"] == "info.php"
    assert s["PATH_INFO"] == "/extra/path"
    assert s["SCRIPT_NAME"] == "/info.php"
    assert s["PHP_SELF"] == "/info.php/extra/path"
    assert os.path.realpath(s["SCRIPT_FILENAME"]) == os.path.join(os.path.realpath(APP), "info.php")
    assert s["REQUEST_URI"] == "/info.php/extra/path?x=1"
    assert s["QUERY_STRING"] == "x=1"
    assert body["get"] == {"x": "1"}


def test_proxy_header_dropped_httpoxy(php_app):
    body, _ = raw_info(php_app, [("Proxy", "http://evil.example:3128")])
    assert "HTTP_PROXY" not in body["server"]
    assert body["getenv_http_proxy"] is False


def test_underscore_headers_dropped(php_app):
    body, _ = raw_info(
        php_app, [("X-Forwarded-For", "10.0.0.1"), ("X_Forwarded_For", "6.6.6.6"), ("My_Header", "x")]
    )
    s = body["server"]
    assert s["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert "HTTP_MY_HEADER" not in s
    assert "6.6.6.6" not in json.dumps(s)


def test_repeated_headers_joined(php_app):
    body, _ = raw_info(php_app, [("X-Dup", "one"), ("X-Dup", "two"), ("Cookie", "a=1"), ("Cookie", "b=2")])
    assert body["server"]["HTTP_X_DUP"] == "one, two"
    assert body["cookie"] == {"a": "1", "b": "2"}


def test_front_controller_sees_original_request_uri(client):
    r = client.get("/blog/2024/hello-world?page=2&sort=new")
    assert r.status_code == 200
    body = r.json()
    assert body["script"] == "index.php"
    assert body["server"]["REQUEST_URI"] == "/blog/2024/hello-world?page=2&sort=new"
    assert body["server"]["QUERY_STRING"] == "page=2&sort=new"
    assert body["server"]["SCRIPT_NAME"] == "/index.php"
    assert body["get"] == {"page": "2", "sort": "new"}


def test_request_uri_is_raw_and_path_info_decoded(php_app):
    body, _ = raw_info(php_app, [], "/info.php/caf%C3%A9/a%20b?x=%2F")
    s = body["server"]
    assert s["REQUEST_URI"] == "/info.php/caf%C3%A9/a%20b?x=%2F"
    assert s["PATH_INFO"] == "/café/a b"
    assert s["QUERY_STRING"] == "x=%2F"
    assert body["get"] == {"x": "/"}


def test_front_controller_request_uri_keeps_encoding(php_app):
    with Conn(php_app.host, php_app.port) as c:
        resp = c.request("GET", "/caf%C3%A9/a%20b?q=%26")
        assert resp.status == 200
        assert resp.json()["script"] == "index.php"
        assert resp.json()["server"]["REQUEST_URI"] == "/caf%C3%A9/a%20b?q=%26"
        assert resp.json()["get"] == {"q": "&"}


def test_content_headers_are_also_http_vars_as_under_fpm(php_app):
    """nginx passes every request header to php-fpm, Content-Type and -Length too (compared with
    the real thing in test_fpm_fidelity)."""
    with Conn(php_app.host, php_app.port) as c:
        resp = c.request("POST", "/info.php", [("Content-Type", "text/plain")], b"abc")
        s = resp.json()["server"]
        assert s["CONTENT_TYPE"] == s["HTTP_CONTENT_TYPE"] == "text/plain"
        assert s["CONTENT_LENGTH"] == s["HTTP_CONTENT_LENGTH"] == "3"
