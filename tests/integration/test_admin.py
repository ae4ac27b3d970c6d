"""The admin API (GET /api/status, POST /api/reload) and `askr status` / `askr reload`."""

from __future__ import annotations

import time

import httpx
from askrtest import run_askr, write_config
from rawhttp import Conn, request_bytes


def test_status_reports_workers_and_generation(config_server):
    server = config_server(workers=2)
    httpx.get(server.url + "/hello.php", timeout=30)
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["mode"] == "classic"
    assert status["generation"] == 1
    assert (status["workers_configured"], status["workers_alive"], status["workers_ready"]) == (2, 2, 2)
    assert status["busy"] + status["idle"] == 2
    assert sum(w["requests"] for w in status["workers"]) >= 1
    for w in status["workers"]:
        assert w["pid"] > 0 and w["state"] == "ready" and w["rss_kib"] > 0
    assert status["last_reload"] is None


def test_reload_through_the_api_and_the_cli(config_server, tmp_path):
    server = config_server(workers=2)
    before = {w["pid"] for w in httpx.get(server.admin_url + "/api/status", timeout=30).json()["workers"]}
    r = httpx.post(server.admin_url + "/api/reload", timeout=30)
    assert r.status_code == 202 and r.json()["reload"] in ("started", "queued")
    server.wait_for_log("reload complete")
    status = httpx.get(server.admin_url + "/api/status", timeout=30).json()
    assert status["generation"] == 2
    assert status["last_reload"]["outcome"] == "complete"
    assert status["last_reload"]["requested_by"] == "admin API"
    assert before.isdisjoint(w["pid"] for w in status["workers"] if w["state"] == "ready")
    admin = server.admin_url.removeprefix("http://")
    code, out = run_askr(["reload", "--admin", admin])
    assert code == 0, out
    assert "reload complete; PHP generation 3" in out
    code, out = run_askr(["status", "--admin", admin])
    assert code == 0, out
    assert "PHP generation 3" in out and "2 ready of 2" in out


def test_token_is_required_when_set(config_server, tmp_path):
    token_file = tmp_path / "admin-token"
    token_file.write_text("s3cret\n")
    server = config_server(workers=1, admin={"token_file": str(token_file)})
    assert httpx.get(server.admin_url + "/api/status", timeout=30).status_code == 401
    assert httpx.post(server.admin_url + "/api/reload", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.get(server.admin_url + "/api/status", headers=wrong, timeout=30).status_code == 401
    ok = httpx.get(server.admin_url + "/api/status", headers={"Authorization": "Bearer s3cret"}, timeout=30)
    assert ok.status_code == 200
    admin = server.admin_url.removeprefix("http://")
    code, out = run_askr(["status", "--admin", admin])
    assert code == 1 and "HTTP 401" in out
    code, out = run_askr(["status", "--admin", admin, "--token", "s3cret", "--json"])
    assert code == 0 and '"workers_ready": 1' in out


def test_admin_on_a_public_address_needs_a_token(tmp_path):
    path = write_config(tmp_path, admin={"listen": "0.0.0.0:0"})
    code, out = run_askr(["serve", "--config", str(path)])
    assert code == 2
    assert "[admin] listen = '0.0.0.0:0' is reachable from other machines and no token is set" in out


def test_unknown_endpoint_and_wrong_method(config_server):
    server = config_server(workers=1)
    assert httpx.get(server.admin_url + "/nope", timeout=30).status_code == 404
    assert httpx.post(server.admin_url + "/api/status", timeout=30).status_code == 405
    assert httpx.get(server.admin_url + "/api/reload", timeout=30).status_code == 405


def test_status_cli_without_a_server_says_so(tmp_path):
    code, out = run_askr(["status", "--admin", "127.0.0.1:1"])
    assert code == 1 and "cannot reach the admin API" in out


def test_status_shows_what_a_busy_worker_is_doing(config_server, gate):
    server = config_server(workers=1)
    with Conn(server.host, server.port, timeout=30) as c:
        c.send(request_bytes("GET", gate.target))
        gate.wait_started(1)
        time.sleep(0.2)  # let the request age a little, so its duration is visibly above zero
        (worker,) = httpx.get(server.admin_url + "/api/status", timeout=30).json()["workers"]
        assert worker["busy"] is True
        assert worker["current_uri"] == gate.target[:127]  # the scoreboard keeps 127 bytes
        assert worker["current_seconds"] >= 0.1
        gate.open()
        assert c.read_final_response().status == 200
    (worker,) = httpx.get(server.admin_url + "/api/status", timeout=30).json()["workers"]
    assert worker["busy"] is False and worker["current_uri"] is None
