"""A real Laravel 8 app (tests/laravel on Debian's php-laravel-framework) under askr, in classic
mode (public/index.php per request) and in worker mode (examples/laravel-worker.php): the same
answers, and in worker mode one boot serving many requests with nothing leaking between them."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from askrtest import REPO
from laravel_fixture import laravel_args, make_laravel_app

WORKER_SCRIPT = REPO / "examples" / "laravel-worker.php"


@pytest.fixture(scope="module")
def laravel_app(tmp_path_factory):
    return make_laravel_app(tmp_path_factory.mktemp("laravel") / "app")


@pytest.fixture(scope="module", params=["classic", "worker"])
def laravel(request, laravel_app, askr_module_server):
    extra = ["--worker", WORKER_SCRIPT] if request.param == "worker" else []
    server = askr_module_server(*laravel_args(laravel_app), "--workers", "2", *extra)
    server.mode = request.param
    return server


@pytest.fixture(scope="module")
def laravel_worker(laravel_app, askr_module_server):
    """Worker mode with a single worker: every request meets what the previous one left behind."""
    return askr_module_server(*laravel_args(laravel_app), "--workers", "1", "--worker", WORKER_SCRIPT)


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def test_json_route(laravel):
    r = httpx.get(laravel.url + "/api/json", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert (body["hello"], body["framework"], body["version"][:2]) == ("world", "laravel", "8.")
    assert r.headers["content-type"] == "application/json"


def test_form_validation_redirects_back_with_errors(laravel):
    with client(laravel) as c:
        r = c.post("/form", data={"name": "ab"}, headers={"Referer": laravel.url + "/form"})
        assert r.status_code == 302
        assert r.headers["location"] == laravel.url + "/form"
        errors = c.get("/form").json()["errors"]  # flashed into the session
        assert errors == {"name": ["The name must be at least 3 characters."],
                          "email": ["The email field is required."]}
        assert c.get("/form").json()["errors"] == []  # flash data lives for one request


def test_form_validation_json_and_success(laravel):
    r = httpx.post(laravel.url + "/form", data={"name": "ab", "email": "nope"},
                   headers={"Accept": "application/json"}, timeout=30)
    assert r.status_code == 422
    assert set(r.json()["errors"]) == {"name", "email"}
    ok = httpx.post(laravel.url + "/form", data={"name": "Ada", "email": "ada@example.org"}, timeout=30)
    assert ok.json() == {"saved": {"name": "Ada", "email": "ada@example.org"}}


def test_session_counter_with_cookies(laravel):
    with client(laravel) as a, client(laravel) as b:
        assert [a.get("/counter").json()["count"] for _ in range(3)] == [1, 2, 3]
        assert b.get("/counter").json()["count"] == 1  # a new cookie jar: a new session
        assert a.get("/counter").json()["count"] == 4


def test_file_upload(laravel):
    data = bytes(range(256)) * 400
    r = httpx.post(laravel.url + "/upload", files={"file": ("blob.bin", data)}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "blob.bin", "size": len(data), "sha1": hashlib.sha1(data).hexdigest()}


def test_sqlite_reads_and_writes(laravel):
    marker = f"note-{laravel.mode}"
    r = httpx.post(laravel.url + "/notes", data={"body": marker}, timeout=30)
    assert r.status_code == 201
    assert r.json()["body"] == marker
    bodies = [n["body"] for n in httpx.get(laravel.url + "/notes", timeout=30).json()]
    assert marker in bodies


def test_exception_is_a_500_page_and_the_app_goes_on(laravel):
    r = httpx.get(laravel.url + "/boom", timeout=30)
    assert r.status_code == 500
    assert "Server Error" in r.text
    assert httpx.get(laravel.url + "/api/json", timeout=30).status_code == 200


def test_streamed_response(laravel):
    r = httpx.get(laravel.url + "/stream", timeout=30)
    assert r.text == "".join(f"line {i}\n" for i in range(1, 6))


def test_unknown_route_is_laravels_404(laravel):
    assert httpx.get(laravel.url + "/no/such/page", timeout=30).status_code == 404


def test_classic_mode_boots_per_request_worker_mode_once(laravel):
    ids = [httpx.get(laravel.url + "/whoami", timeout=30).json() for _ in range(6)]
    if laravel.mode == "classic":
        assert len({i["boot_id"] for i in ids}) == 6
    else:
        by_pid: dict[int, set[str]] = {}
        for i in ids:
            by_pid.setdefault(i["pid"], set()).add(i["boot_id"])
        assert all(len(boots) == 1 for boots in by_pid.values())
        assert max(i["requests"] for i in ids) > 1


def test_framework_state_does_not_leak_between_requests(laravel_worker):
    """/leak stores ?secret= in the request, auth, session, queued cookies, config, shared view
    data and the container, then reports what it found from before. examples/laravel-worker.php
    must have reset all of it; plain statics and globals are the app's and are kept (documented)."""
    previous = None
    for i in range(5):
        r = httpx.get(f"{laravel_worker.url}/leak?secret=s{i}", timeout=30)
        body = r.json()
        assert body["seen"] == dict.fromkeys(body["seen"])  # all None
        assert body["process_state"]["static"] == previous
        cookies = r.headers.get_list("set-cookie")
        assert sum(c.startswith("leak=") for c in cookies) == 1  # only this request's
        previous = f"s{i}"


def test_interleaved_clients_see_only_their_own_data(laravel_worker):
    """Two clients with different cookies, sessions, query strings and headers, interleaved on one
    booted worker: nothing of one ever shows up in the other's responses."""

    def run(name: str) -> list[str]:
        other = "bob" if name == "alice" else "alice"
        problems = []
        with client(laravel_worker) as c:
            c.get(f"/whoami?client={name}")  # puts the name into this client's session
            for i in range(100):
                r = c.get(f"/whoami?q={name}-{i}", headers={"X-Client": name})
                body = r.json()
                if other in r.text:
                    problems.append(f"{name} saw {other}: {r.text}")
                if (body["session"], body["header"], body["query"]) != (name, name, {"q": f"{name}-{i}"}):
                    problems.append(f"{name} request {i} is not its own: {r.text}")
                counter = c.get("/counter").json()["count"]
                if counter != i + 1:
                    problems.append(f"{name} counter {counter} at step {i}")
        return problems

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, ["alice", "bob"])) == [[], []]
