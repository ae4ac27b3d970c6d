"""Health endpoints and drain for load balancers: /api/health/live and /ready on the admin
listener, [server] health_path on the traffic port, askr drain / undrain, and SIGTERM's
drain_delay. Every readiness state is reached for real: booting (a worker script that waits for a
file before its loop), ready, draining, no ready workers (the only worker quits and its
replacement is held at boot), stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from askrtest import APP, REPO, TESTS, free_port, run_askr, wait_until, write_config
from h2client import H2Client
from rawhttp import Conn, request_bytes

HEALTH = TESTS / "php" / "health"  # public/ (index.php and a file named askr-health), worker.php
HEALTH_PATH = "/askr-health"


def probe(url: str, headers: dict | None = None) -> tuple[int, dict]:
    r = httpx.get(url, headers=headers, timeout=30)
    return r.status_code, r.json()


def wait_probe(url: str, expected: tuple[int, dict], what: str, timeout: float = 60.0) -> None:
    """Readiness follows the master's state within about a second: poll until it says `expected`."""
    wait_until(lambda: probe(url) == expected, timeout=timeout, what=f"{url} to answer {expected} ({what})")


NOT_READY = 503


def not_ready(reason: str) -> tuple[int, dict]:
    return NOT_READY, {"status": "not ready", "reason": reason}


READY = (200, {"status": "ready"})


def held_worker_server(askr_server, tmp_path: Path, gate: Path, **server: object):
    """Worker mode, one worker, that boots only once `gate` exists; the traffic port is chosen
    here (free_port) because askr names it only once ready."""
    port = free_port()
    config = write_config(tmp_path, root=HEALTH / "public", workers=1,
                          worker={"script": str(HEALTH / "worker.php")},
                          server={"listen": f"127.0.0.1:{port}", "health_path": HEALTH_PATH, "fronts": 1,
                                  **server})
    started = askr_server("--config", config, env={"ASKR_TEST_BOOT_GATE": str(gate)},
                          wait_ready=gate.exists())
    return started, f"http://127.0.0.1:{port}"


def test_booting_until_a_worker_is_ready_then_ready(askr_server, tmp_path):
    gate = tmp_path / "boot-gate"
    server, traffic = held_worker_server(askr_server, tmp_path, gate)
    admin = server.admin_url
    wait_probe(admin + "/api/health/live", (200, {"status": "live"}), "a front is up")
    assert probe(admin + "/api/health/ready") == not_ready("booting")
    wait_probe(traffic + HEALTH_PATH, not_ready("booting"), "the front answers before any worker")
    head = httpx.head(admin + "/api/health/ready", timeout=30)
    assert head.status_code == 503 and head.content == b""
    assert httpx.get(admin + "/api/status", timeout=30).json()["state"] == "booting"
    gate.touch()
    server.wait_for_log(r"askr ready:")
    wait_probe(admin + "/api/health/ready", READY, "the worker booted")
    wait_probe(traffic + HEALTH_PATH, READY, "the front heard from the master")
    assert httpx.head(admin + "/api/health/ready", timeout=30).status_code == 200
    assert httpx.get(traffic + "/", timeout=30).text == "from php"


def test_no_ready_workers_when_the_only_worker_is_gone_and_its_replacement_cannot_boot(askr_server, tmp_path):
    gate = tmp_path / "boot-gate"
    gate.touch()
    server, traffic = held_worker_server(askr_server, tmp_path, gate)
    admin = server.admin_url
    assert probe(admin + "/api/health/ready") == READY
    gate.unlink()  # the replacement will wait at boot
    assert httpx.get(traffic + "/?do=quit", timeout=30).text == "from php"
    wait_probe(admin + "/api/health/ready", not_ready("no ready workers"), "the worker quit")
    wait_probe(traffic + HEALTH_PATH, not_ready("no ready workers"), "the fronts were told")
    assert httpx.get(admin + "/api/health/live", timeout=30).status_code == 200  # alive, just not ready
    gate.touch()
    wait_probe(admin + "/api/health/ready", READY, "the replacement booted")
    wait_probe(traffic + HEALTH_PATH, READY, "the fronts were told")


def test_drain_keeps_serving_and_undrain_restores(config_server):
    server = config_server(workers=1, server={"health_path": HEALTH_PATH})
    admin = server.admin_url
    assert probe(admin + "/api/health/ready") == READY
    r = httpx.post(admin + "/api/drain", timeout=30)
    assert r.status_code == 200
    assert r.json() == {"state": "draining", "ready": False, "draining": True}
    assert probe(admin + "/api/health/ready") == not_ready("draining")
    wait_probe(server.url + HEALTH_PATH, not_ready("draining"), "the fronts were told")
    for _ in range(5):  # draining only changes what the balancer is told
        assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200
    assert httpx.get(server.url + "/style.css", timeout=30).status_code == 200
    address = admin.removeprefix("http://")
    code, out = run_askr(["status", "--admin", address])
    assert code == 0 and "state: draining" in out, out
    assert httpx.get(admin + "/api/status", timeout=30).json()["draining"] is True
    code, out = run_askr(["undrain", "--admin", address])
    assert code == 0 and "state: ready" in out, out
    assert probe(admin + "/api/health/ready") == READY
    wait_probe(server.url + HEALTH_PATH, READY, "the fronts were told")
    code, out = run_askr(["drain", "--admin", address])
    assert code == 0 and "state: draining" in out, out
    assert httpx.get(admin + "/api/drain", timeout=30).status_code == 405


def test_sigterm_with_drain_delay_says_stopping_and_serves_until_the_delay_is_over(config_server):
    server = config_server(workers=1, server={"drain_delay": "3s", "health_path": HEALTH_PATH})
    admin = server.admin_url
    with Conn(server.host, server.port, timeout=30) as kept:  # a keep-alive connection across the delay
        kept.send(request_bytes("GET", "/hello.php"))
        assert kept.read_final_response().status == 200
        sent_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_log(r"readiness is now 503 stopping")
        assert probe(admin + "/api/health/ready") == not_ready("stopping")
        assert httpx.get(admin + "/api/status", timeout=30).json()["state"] == "stopping"
        # during the delay the host serves as before: new connections, kept ones, PHP, the probe
        assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200
        kept.send(request_bytes("GET", "/hello.php"))
        response = kept.read_final_response()
        assert response.status == 200
        if time.monotonic() - sent_at < 2.5:  # answers seen inside the delay (a slow machine may not)
            assert probe(server.url + HEALTH_PATH) == not_ready("stopping")
        assert server.proc.wait(60) == 0
    assert time.monotonic() - sent_at >= 2.9  # the drain waited for drain_delay
    log = server.log
    assert log.index("readiness is now 503 stopping") < log.index("SIGTERM: draining in-flight requests")
    assert "Traceback" not in log and "restarting it" not in log


def fronts_catching_sigterm(master: int) -> int:
    """The master's front processes that have installed their SIGTERM handler (/proc SigCgt)."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        caught = int(status.get("SigCgt", "0").strip(), 16)
        if (b"askr.front" in cmdline and int(status.get("PPid", "0")) == master
                and caught & (1 << (signal.SIGTERM - 1))):
            count += 1
    return count


def test_sigterm_to_the_whole_group_waits_for_drain_delay_too(askr_server, tmp_path):
    """systemd's KillMode=control-group, kill -TERM -PGID: the fronts get SIGTERM as well, and
    serve on for the delay as the master does."""
    config = write_config(tmp_path, workers=1, server={"drain_delay": "3s", "fronts": 2})
    server = askr_server("--config", config, new_session=True)
    # "ready" needs only the first front: a signal must not beat the other one's handlers
    wait_until(lambda: fronts_catching_sigterm(server.proc.pid) == 2, timeout=60,
               what="both fronts to handle SIGTERM")
    sent_at = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    server.wait_for_log(r"readiness is now 503 stopping")
    served = 0
    while time.monotonic() - sent_at < 2.0:  # well inside the delay: new connections are accepted
        assert httpx.get(server.url + "/hello.php", timeout=30).status_code == 200
        served += 1
    assert served >= 1
    assert server.proc.wait(60) == 0
    assert time.monotonic() - sent_at >= 2.9
    assert "restarting it" not in server.log  # the fronts served on, rather than exit and be replaced


def test_a_second_sigterm_during_drain_delay_drains_at_once(config_server):
    server = config_server(workers=1, server={"drain_delay": "300s"})
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_log(r"readiness is now 503 stopping")
    assert probe(server.admin_url + "/api/health/ready") == not_ready("stopping")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0  # well before the 300 s delay
    assert "SIGTERM: draining in-flight requests" in server.log


def test_sigint_during_drain_delay_stops_now(config_server):
    server = config_server(workers=1, server={"drain_delay": "300s"})
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_log(r"readiness is now 503 stopping")
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(60)
    assert "SIGINT: stopping now" in server.log


class Traffic:
    """Requests one after another on a thread until stop() (bounded: at most `limit`, each with a
    timeout); `last_end` is when the latest one completed."""

    def __init__(self, url: str, limit: int = 2000):
        self.url, self.limit = url, limit
        self.stopping = threading.Event()
        self.count = 0
        self.statuses: set[int] = set()
        self.last_end = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopping.is_set() and self.count < self.limit:
                self.statuses.add(client.get(self.url).status_code)
                self.last_end = time.monotonic()
                self.count += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(60)


def askr_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "askr", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_drain_wait_returns_once_requests_have_stopped_for_drain_quiet(config_server):
    quiet = 2.0
    server = config_server(workers=2, admin={"drain_quiet": f"{quiet:g}s"})
    traffic = Traffic(server.url + "/hello.php")
    try:
        wait_until(lambda: traffic.count >= 20, timeout=60, what="traffic to flow")
        drain = askr_cli("drain", "--wait", "--timeout", "120", "--admin", server.admin_url.removeprefix("http://"))
        wait_until(lambda: httpx.get(server.admin_url + "/api/status", timeout=30).json()["draining"],
                   timeout=60, what="the drain to begin")
        seen = traffic.count
        wait_until(lambda: traffic.count >= seen + 100, timeout=60, what="more traffic while draining")
        assert drain.poll() is None, drain.communicate()[0]  # requests keep coming: not quiet yet
    finally:
        traffic.stop()
    last = traffic.last_end
    out, _ = drain.communicate(timeout=120)
    returned = time.monotonic()
    assert drain.returncode == 0, out
    assert "drained: no request for" in out
    assert traffic.statuses == {200}  # draining never refused anything
    # the balancer's silence has to last drain_quiet (a little slack: the last request reached the
    # server a moment before its response reached the client)
    assert returned - last >= quiet - 0.25, (returned - last, out)
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["traffic"]["in_flight"] == 0 and status["traffic"]["quiet"] is True


def test_drain_wait_times_out_while_the_host_is_not_quiet(config_server):
    server = config_server(workers=1, admin={"drain_quiet": "600s"})  # younger than that: never quiet
    address = server.admin_url.removeprefix("http://")
    started = time.monotonic()
    code, out = run_askr(["drain", "--wait", "--timeout", "2", "--admin", address])
    assert code == 1, out
    assert "still receiving traffic after --timeout 2 s" in out
    assert time.monotonic() - started >= 2
    assert probe(server.admin_url + "/api/health/ready") == not_ready("draining")  # stays drained


@pytest.mark.parametrize("public", [False, True])
def test_health_needs_the_token_unless_health_public(config_server, tmp_path, public):
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret\n")
    server = config_server(workers=1, admin={"token_file": str(token_file), "health_public": public})
    admin = server.admin_url
    for path in ("/api/health/live", "/api/health/ready"):
        assert httpx.get(admin + path, timeout=30).status_code == (200 if public else 401)
        authorised = httpx.get(admin + path, headers={"Authorization": "Bearer s3cret"}, timeout=30)
        assert authorised.status_code == 200
    for method, path in (("GET", "/api/status"), ("POST", "/api/drain"), ("POST", "/api/undrain")):
        assert httpx.request(method, admin + path, timeout=30).status_code == 401  # only probes are public
    assert probe(admin + "/api/health/ready", {"Authorization": "Bearer s3cret"}) == READY


def test_health_path_is_the_fronts_own_answer_over_http1_and_h2c(config_server):
    server = config_server(root=HEALTH / "public", workers=1,
                           server={"health_path": HEALTH_PATH, "h2c": True})

    def php_requests() -> int:
        status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
        return sum(w["requests"] for w in status["workers"])

    assert httpx.get(server.url + "/askr-health.txt", timeout=30).text == "from php"  # routing as usual
    wait_until(lambda: php_requests() == 1, timeout=30, what="the scoreboard to count the PHP request")
    r = httpx.get(server.url + HEALTH_PATH + "?from=haproxy", timeout=30)
    assert (r.status_code, r.json()) == READY
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    head = httpx.head(server.url + HEALTH_PATH, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(r.content)
    client = H2Client(server.host, server.port, tls=False)
    try:
        response = client.get(HEALTH_PATH)
        assert response.status == 200 and bytes(response.data) == r.content
    finally:
        client.close()
    httpx.post(server.admin_url + "/api/drain", timeout=30)
    wait_probe(server.url + HEALTH_PATH, not_ready("draining"), "the fronts were told")
    assert php_requests() == 1  # neither PHP (index.php) nor the docroot's askr-health file answered


def test_health_path_is_off_by_default(config_server):
    server = config_server(workers=1)
    r = httpx.get(server.url + HEALTH_PATH, timeout=30)
    assert r.status_code == 200 and r.json()["script"] == "index.php"  # routed as any other path


def test_bad_health_settings_name_the_key(tmp_path):
    path = write_config(tmp_path, root=APP, server={"health_path": "askr-health"})
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2 and "[server] health_path = 'askr-health'" in out, out
    path = write_config(tmp_path, root=APP, server={"drain_delay": "soon"})
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2 and "[server] drain_delay = 'soon'" in out, out
