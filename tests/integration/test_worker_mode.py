"""Worker mode: a script boots once per PHP worker and serves requests from askr_handle_request().

Each request must look exactly as it would in classic mode (the behaviour suite in
test_php_semantics.py runs in both modes through the `php_app` fixture; here the two modes are
also compared side by side), and nothing of one request may reach the next: superglobals, body,
uploads, session, filter_input, headers, status.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from askrtest import APP, REPO, WORKER_APP
from rawhttp import Conn, request_bytes


def worker_server(askr_server, *extra: str, workers: int = 1, env: dict | None = None,
                  wait_ready: bool = True):
    return askr_server("--root", APP, "--worker", WORKER_APP, "--workers", str(workers), *extra,
                       env=env, wait_ready=wait_ready)


def get_json(server, target: str, **kw) -> dict:
    r = httpx.request(kw.pop("method", "GET"), server.url + target, timeout=30, **kw)
    assert r.status_code == 200, r.text
    return r.json()


# -- both modes, side by side ------------------------------------------------------------------

VOLATILE = {"REMOTE_PORT", "REQUEST_TIME", "REQUEST_TIME_FLOAT", "SERVER_PORT", "HTTP_HOST",
            "ASKR_WORKER", "FRANKENPHP_WORKER", "ASKR_APP_BASE"}


def _normalise(body: dict) -> dict:
    body = dict(body)
    body.pop("pid", None)
    body["server"] = {k: v for k, v in body["server"].items() if k not in VOLATILE}
    for name in ("CONTENT_TYPE", "HTTP_CONTENT_TYPE"):  # a multipart boundary is random per request
        if name in body["server"]:
            body["server"][name] = body["server"][name].split("boundary=")[0]
    for f in (body.get("files") or {}).values():
        f.pop("tmp_name", None)
    return body


REQUESTS = [
    ("GET", "/info.php?a=1&b[]=x&b[]=y&enc=%C3%A9", {"headers": {"Cookie": "k=v; n=2", "X-Thing": "1"}}),
    ("POST", "/info.php?g=1", {"data": {"name": "Ada", "list[]": ["1", "2"]}}),
    ("POST", "/info.php", {"content": b'{"json": true}', "headers": {"Content-Type": "application/json"}}),
    ("PUT", "/info.php", {"content": b"raw body"}),
    ("POST", "/info.php", {"files": {"up": ("a.txt", b"hello upload", "text/plain")}, "data": {"f": "v"}}),
    ("GET", "/info.php/extra/path?x=1", {}),
    ("GET", "/some/route?q=1", {}),
]


def body_has_full_server(target: str) -> bool:
    return target.startswith("/info.php")  # index.php (the front controller) reports a few keys


@pytest.mark.parametrize(("method", "target", "kw"), REQUESTS, ids=[f"{m} {t}" for m, t, _ in REQUESTS])
def test_classic_and_worker_mode_agree(both_modes, method, target, kw):
    """What a script sees is identical in both modes (apart from ports, times and the worker
    mode markers)."""
    bodies = {}
    for mode, server in both_modes.items():
        r = httpx.request(method, server.url + target, timeout=30, **kw)
        assert r.status_code == 200, (mode, r.text)
        bodies[mode] = r.json()
    if body_has_full_server(target):
        assert bodies["worker"]["server"]["ASKR_WORKER"] == "1"
        assert "ASKR_WORKER" not in bodies["classic"]["server"]
    assert _normalise(bodies["classic"]) == _normalise(bodies["worker"])


def test_headers_status_and_cookies_agree(both_modes):
    seen = {}
    for mode, server in both_modes.items():
        r = httpx.get(server.url + "/headers.php", timeout=30)
        seen[mode] = (r.status_code, r.headers.get_list("set-cookie"), r.headers.get("x-custom"), r.text)
    assert seen["classic"] == seen["worker"]


# -- booting once, and what does not leak ------------------------------------------------------


def test_app_boots_once_and_serves_many_requests(askr_server):
    server = worker_server(askr_server)
    first = get_json(server, "/")
    later = [get_json(server, f"/?n={i}") for i in range(20)]
    assert {b["boot"] for b in later} == {first["boot"]}
    assert [b["served"] for b in later] == list(range(2, 22))
    assert first["askr_worker"] == "1" and first["frankenphp_worker"] == "1"
    assert first["script_name"] == "/index.php"  # as if the front controller ran


def test_request_state_never_reaches_the_next_request(askr_server, tmp_path):
    """One worker serves everything, so anything left over would show up in the next request."""
    server = worker_server(askr_server)
    upload = get_json(server, "/?a=1", method="POST", files={"f": ("x.bin", b"z" * 5000)},
                      headers={"Cookie": "secret=1", "X-Secret": "1"})
    assert upload["files"]["f"]["name"] == "x.bin"
    assert upload["filter_a"] == "1"
    tmp_name = upload["files"]["f"]["tmp_name"]
    after = get_json(server, "/")
    assert after["served"] == upload["served"] + 1  # the same booted worker
    assert after["get"] == [] and after["post"] == [] and after["files"] == [] and after["cookie"] == []
    assert after["input"] == ""
    assert after["filter_a"] is None
    assert "X-Secret" not in after["headers"]
    assert not os.path.exists(tmp_name), "an unmoved upload must be deleted after its request"
    posted = get_json(server, "/", method="POST", content=b"body-one")
    assert posted["input"] == "body-one"
    assert get_json(server, "/")["input"] == ""


def test_request_limits_return_to_boot_values_other_ini_values_stay(askr_server):
    """memory_limit and max_execution_time raised by one request do not carry over; other
    ini_set() values do (documented in docs/worker-mode.md)."""
    server = worker_server(askr_server)
    boot = get_json(server, "/")["ini"]
    raised = get_json(server, "/?do=raise")["ini"]
    assert raised["memory_limit"] == "512M" and raised["max_execution_time"] == "0"
    after = get_json(server, "/")["ini"]
    assert after["memory_limit"] == boot["memory_limit"]
    assert after["max_execution_time"] == boot["max_execution_time"]
    assert after["default_charset"] == "ISO-8859-1"


def test_sessions_do_not_leak_between_clients(askr_server):
    server = worker_server(askr_server)
    with httpx.Client(base_url=server.url, timeout=30) as alice, \
            httpx.Client(base_url=server.url, timeout=30) as bob:
        a1 = alice.get("/?do=session&put=alice").json()
        assert a1["session"] == {"owner": "alice"}
        b1 = bob.get("/?do=session").json()
        assert b1["session"] == [] and b1["session_id"] != a1["session_id"]
        assert b1["pid"] == a1["pid"]
        a2 = alice.get("/?do=session").json()
        assert a2["session"] == {"owner": "alice"} and a2["session_id"] == a1["session_id"]
        plain = bob.get("/").json()  # no session_start(): no $_SESSION, no id from earlier
        assert plain["session"] is None and plain["session_id"] == ""


def test_interleaved_clients_are_isolated(askr_server):
    """Two clients, each with its own cookie, session, query string, header and body, interleaved
    over many requests on 2 workers: nothing of one ever appears in the other's response."""
    server = worker_server(askr_server, workers=2)

    def run(name: str) -> list[str]:
        problems = []
        other = "bob" if name == "alice" else "alice"
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.cookies.set("who", name)
            c.get(f"/?do=session&put={name}")
            for i in range(150):
                if i % 3 == 0:
                    r = c.post(f"/?do=session&client={name}&i={i}", data={"from": name},
                               headers={"X-Client": name})
                else:
                    r = c.get(f"/?do=session&client={name}&i={i}", headers={"X-Client": name})
                text = r.text
                body = r.json()
                if other in text:
                    problems.append(f"{name} saw {other} in request {i}: {text}")
                if body["get"]["client"] != name or body["session"] != {"owner": name}:
                    problems.append(f"{name} got someone else's request {i}: {text}")
                if body["cookie"].get("who") != name or body["headers"].get("X-Client") != name:
                    problems.append(f"{name} request {i} lost its own data: {text}")
                if i % 3 and body["post"] != []:
                    problems.append(f"{name} GET {i} saw a POST body: {text}")
        return problems

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, ["alice", "bob"]))
    assert results == [[], []]


# -- failures -----------------------------------------------------------------------------------


def test_handler_exception_is_a_500_for_that_request_only(askr_server):
    server = worker_server(askr_server)
    before = get_json(server, "/")
    r = httpx.get(server.url + "/?do=throw", timeout=30)
    assert r.status_code == 500
    after = get_json(server, "/")
    assert (after["pid"], after["boot"]) == (before["pid"], before["boot"])  # the worker went on
    assert after["status"] == 200
    server.wait_for_log(r"\[php#0\] PHP Fatal error:  Uncaught RuntimeException: handler failed on purpose")


def test_fatal_error_answers_then_the_worker_is_replaced(askr_server):
    server = worker_server(askr_server)
    before = get_json(server, "/")
    r = httpx.get(server.url + "/?do=fatal", timeout=30)
    assert r.status_code == 500
    server.wait_for_log(r"fatal error in the request handler; this worker exits and is replaced")
    after = get_json(server, "/")
    assert after["pid"] != before["pid"] and after["served"] == 1


def test_exit_in_the_handler_ends_only_that_request(askr_server):
    server = worker_server(askr_server)
    before = get_json(server, "/")
    r = httpx.get(server.url + "/?do=exit", timeout=30)
    assert (r.status_code, r.text) == (200, "exited")
    assert get_json(server, "/")["pid"] == before["pid"]


def test_worker_script_returning_is_respawned(askr_server):
    server = worker_server(askr_server, env={"ASKR_TEST_RETURN_AFTER": "3"})
    pids = [get_json(server, "/")["pid"] for _ in range(7)]
    assert pids[0] == pids[1] == pids[2]
    assert pids[3] == pids[4] == pids[5] != pids[0]
    assert pids[6] not in pids[:6]
    server.wait_for_log(r"worker script returned after 3 requests")


def test_boot_failure_is_retried_with_backoff_then_askr_exits_with_the_reason(askr_server):
    server = worker_server(askr_server, workers=2, env={"ASKR_TEST_BOOT_FAIL": "1"}, wait_ready=False)
    assert server.proc.wait(60) == 1
    server.wait_for_log(r"next start in 0\.1 s")
    server.wait_for_log(r"next start in 0\.2 s")
    server.wait_for_log(r"no PHP worker could boot \(3 attempts\): PHP Fatal error:  Uncaught "
                        r"RuntimeException: boot failed on purpose")
    assert "askr ready" not in server.log


def test_frankenphp_function_name_works(askr_server):
    server = worker_server(askr_server, env={"ASKR_TEST_FRANKENPHP": "1"})
    assert get_json(server, "/")["frankenphp_worker"] == "1"


def test_askr_handle_request_outside_worker_mode_throws(askr_server, tmp_path):
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.php").write_text("<?php askr_handle_request(fn () => null);")
    server = askr_server("--root", root, "--workers", "1")
    assert httpx.get(server.url + "/", timeout=30).status_code == 500
    server.wait_for_log(r"askr_handle_request\(\) is only available to a worker script")


# -- PHP functions for apps ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_early_hints_reach_the_client_before_the_response(askr_server, tmp_path, mode):
    root = tmp_path / "public"
    root.mkdir()
    (root / "index.php").write_text(
        "<?php header('Link: </style.css>; rel=preload; as=style'); header('Set-Cookie: a=1');"
        " headers_send(103); echo 'final';"
    )
    script = tmp_path / "worker.php"
    script.write_text("<?php while (askr_handle_request(function () {"
                      " require $_SERVER['SCRIPT_FILENAME']; })) {}")
    extra = ["--worker", str(script)] if mode == "worker" else []
    server = askr_server("--root", root, "--workers", "1", *extra)
    with Conn(server.host, server.port) as c:
        c.send(request_bytes("GET", "/"))
        hints = c.read_head(timeout=20)
        assert hints.status == 103
        assert hints.header("link") == "</style.css>; rel=preload; as=style"
        assert hints.header("set-cookie") is None  # cookies belong to the final response
        final = c.read_response(timeout=20)
        assert final.status == 200 and final.body == b"final"
        assert final.header("link") == "</style.css>; rel=preload; as=style"
    with Conn(server.host, server.port) as c:  # HTTP/1.0 clients must not get a 1xx
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        assert c.read_response(timeout=20).status == 200


@pytest.mark.parametrize("mode", ["classic", "worker"])
def test_fastcgi_finish_request_sends_the_response_while_the_script_runs_on(askr_server, tmp_path, mode):
    if mode == "worker":
        server = worker_server(askr_server)
    else:
        root = tmp_path / "public"
        root.mkdir()
        (root / "index.php").write_text(FINISH_SCRIPT)
        server = askr_server("--root", root, "--workers", "1")
    gate = tmp_path / "gate"
    q = urllib.parse.urlencode({"do": "finish", "gate": str(gate)})
    r = httpx.get(f"{server.url}/?{q}", timeout=30)  # returns although the script waits on the gate
    assert (r.status_code, r.text) == (200, "finished early")
    assert not Path(str(gate) + ".after").exists()
    gate.write_text("go")
    deadline = time.monotonic() + 30
    while not Path(str(gate) + ".after").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert Path(str(gate) + ".after").read_text() == "ran on"


FINISH_SCRIPT = """<?php
echo 'finished early';
fastcgi_finish_request();
echo 'nobody hears this';
$gate = $_GET['gate'];
$deadline = microtime(true) + 30;
while (!file_exists($gate) && microtime(true) < $deadline) {
    usleep(5000);
}
file_put_contents($gate . '.after', 'ran on');
"""


def test_getallheaders(askr_server):
    server = worker_server(askr_server)
    body = get_json(server, "/", headers={"X-One": "1", "Accept": "text/plain"})
    assert body["headers"]["X-One"] == "1"
    assert body["headers"]["Accept"] == "text/plain"


# -- max_requests recycling ---------------------------------------------------------------------


def test_recycling_is_staggered_and_never_lowers_capacity(askr_server):
    """max_requests = 50 with 4 workers over 1,000 requests: every response is 200, each worker's
    quota differs, and a worker is retired only after its replacement is ready."""
    server = worker_server(askr_server, "--max-requests", "50", workers=4)
    start = len(server.lines)

    def fetch(n: int) -> list[int]:  # quotas count requests, not connections: keep-alive is enough
        with httpx.Client(timeout=30) as client:
            return [client.get(f"{server.url}/?i={i}").status_code for i in range(n)]

    with ThreadPoolExecutor(4) as pool:
        statuses = [status for batch in pool.map(fetch, [250] * 4) for status in batch]
    assert statuses == [200] * 1000
    server.wait_for_log(r"retired", start=start)
    log = server.lines[start:]
    quotas = {int(m.group(1)): int(m.group(2)) for line in log
              if (m := re.search(r"php#(\d) \(pid \d+\) reached max_requests \((\d+)\)", line))}
    assert len(quotas) == 4, log
    assert len(set(quotas.values())) == 4, quotas  # recycle points differ
    # Replay the master's view: a retirement always follows its replacement becoming ready.
    ready_replacing = set()
    for line in log:
        if m := re.search(r"ready; retiring pid (\d+)", line):
            ready_replacing.add(int(m.group(1)))
        elif m := re.search(r"\(pid (\d+)\) retired", line):
            assert int(m.group(1)) in ready_replacing, line
    assert not re.search(r"exited with|killed by", "\n".join(log))


def test_sigterm_stops_idle_workers_in_worker_mode(askr_server):
    server = worker_server(askr_server, workers=2)
    get_json(server, "/")
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.log


def test_plain_example_worker_runs(askr_server, tmp_path):
    """examples/worker.php, the documented starting point, works as documented."""
    (tmp_path / "public").mkdir()
    server = askr_server("--root", tmp_path / "public", "--worker", REPO / "examples" / "worker.php",
                         "--workers", "1")
    first = get_json(server, "/?name=ada")
    assert first["hello"] == "ada"
    assert get_json(server, "/time")["served_by_this_worker"] == first["served_by_this_worker"] + 1
    assert httpx.get(server.url + "/nope", timeout=30).status_code == 404


def test_crash_looping_worker_backs_off_and_status_shows_it(askr_server, tmp_path):
    """A worker script that starts crashing (here: it kills itself while booting once a flag file
    exists) is restarted with exponential backoff, then behind an open circuit (a slow, steady
    retry), never in a tight loop; /api/status and the log say so; it heals when the fault goes."""
    flag = tmp_path / "crash"
    script = tmp_path / "worker.php"
    script.write_text(f"<?php if (file_exists('{flag}')) posix_kill(getmypid(), 9);\n"
                      "while (askr_handle_request(function () { echo getmypid(); })) {}\n")
    (tmp_path / "public").mkdir()
    server = askr_server("--root", tmp_path / "public", "--worker", script, "--workers", "1")
    pid = int(httpx.get(server.url + "/", timeout=30).text)
    flag.write_text("on")
    os.kill(pid, signal.SIGKILL)
    server.wait_for_log(r"php#0 failed 4 times in a row; next start in 0\.8 s", timeout=60)
    server.wait_for_log(r"php#0: circuit open after 5 failed starts in a row \(killed by signal 9\); "
                        r"retrying every 10 s", timeout=60)
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["failing"]["php#0"]["failures"] == 5
    assert status["failing"]["php#0"]["circuit"] == "open"
    assert status["workers_ready"] == 0
    restarts = status["restarts"]
    flag.unlink()  # the fault goes away: the next attempt boots, the circuit closes
    server.wait_for_log(r"php#0: circuit closed: a worker started again", timeout=60)
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["workers_ready"] == 1 and status["failing"] == {}
    assert status["restarts"] - restarts <= 1  # one slow retry, not a spin
    assert httpx.get(server.url + "/", timeout=30).status_code == 200
