"""The admin dashboard (GET / on the admin listener), GET /api/history, the token swapped for a
session cookie, the CSRF guard on POSTs, and the page itself in a headless Chromium."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest
from askrtest import wait_until
from cdp import CHROMIUM, Browser

TOKEN = "s3cret-dashboard"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def history(server, **params) -> dict:
    r = httpx.get(server.admin_url + "/api/history", params=params, headers=BEARER, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def status(server) -> dict:
    return httpx.get(server.admin_url + "/api/status", headers=BEARER, timeout=30).json()


def test_the_page_is_served_self_contained(config_server):
    server = config_server(workers=1)
    r = httpx.get(server.admin_url + "/", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "loopback only" in r.text
    # works offline: nothing is loaded from elsewhere (the SVG namespace is a name, not a fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", r.text)
    assert "<link" not in r.text and "@import" not in r.text
    assert httpx.get(server.admin_url + "/dashboard", timeout=30).text == r.text
    assert httpx.head(server.admin_url + "/", timeout=30).status_code == 200


def test_history_samples_traffic_every_second(config_server):
    server = config_server(workers=2, admin={"token": TOKEN})
    assert httpx.get(server.admin_url + "/api/history", timeout=30).status_code == 401
    with httpx.Client(timeout=30) as client:
        for i in range(200):
            assert client.get(server.url + f"/sleep.php?ms={i % 4}").status_code == 200

    def counted() -> list[dict]:
        return [s for s in history(server)["samples"] if s["requests_per_s"] > 0]

    busy = wait_until(counted, timeout=30, what="a sample with requests")
    assert all(s["p50_ms"] is not None and 0 < s["p50_ms"] <= s["p99_ms"] for s in busy)
    doc = history(server)
    assert doc["sample_seconds"] == 1 and doc["keeps_seconds"] == 600
    assert all(s["workers"] == 2 and s["errors_5xx_per_s"] == 0 for s in doc["samples"])
    last = doc["samples"][-1]["t"]
    assert all(s["t"] > last for s in history(server, since=last)["samples"])


def test_reloads_are_listed_with_their_canary_verdict(config_server):
    server = config_server(workers=2, admin={"token": TOKEN}, reload={"canary_seconds": 1})
    assert history(server)["reloads"] == []
    r = httpx.post(server.admin_url + "/api/reload?canary=1", headers=BEARER, timeout=30)
    assert r.status_code == 202
    server.wait_for_log("reload complete")
    wait_until(lambda: history(server)["reloads"] and history(server)["reloads"][0]["outcome"] == "complete",
               timeout=30, what="the reload in /api/history")
    httpx.post(server.admin_url + "/api/reload", headers=BEARER, timeout=30)
    wait_until(lambda: len(history(server)["reloads"]) == 2 and history(server)["reloads"][0]["outcome"]
               == "complete", timeout=60, what="the second reload")
    newest, first = history(server)["reloads"]
    assert (first["canary"], first["from_generation"], first["generation"]) == ("healthy", 1, 2)
    assert (newest["canary"], newest["from_generation"], newest["generation"]) == (None, 2, 3)
    assert status(server)["last_reload"]["canary"] is None


def test_token_in_the_url_becomes_a_cookie_and_posts_need_the_header(config_server):
    server = config_server(workers=1, admin={"token": TOKEN})
    admin = server.admin_url
    with httpx.Client(timeout=30) as client:
        page = client.get(admin + "/")
        assert page.status_code == 401 and "/?token=" in page.text
        assert client.get(admin + "/?token=nope").status_code == 401
        swap = client.get(admin + f"/?token={TOKEN}")
        assert swap.status_code == 303 and swap.headers["location"] == "/"
        cookie = swap.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        # the client keeps the cookie from here on
        assert client.get(admin + "/").status_code == 200
        assert client.get(admin + "/api/status").json()["generation"] == 1
        assert client.get(admin + "/api/history").status_code == 200
        assert client.get(admin + "/metrics").status_code == 200
        refused = client.post(admin + "/api/reload")
        assert refused.status_code == 403 and "X-Askr-Admin" in refused.json()["error"]
        forged = client.post(admin + "/api/reload", headers={"X-Askr-Admin": "1", "Origin": "http://evil.example"})
        assert forged.status_code == 403
        assert status(server)["reloading"] is False and status(server)["generation"] == 1
        origin = admin  # http://127.0.0.1:PORT, what the page's own fetch sends
        ok = client.post(admin + "/api/reload", headers={"X-Askr-Admin": "1", "Origin": origin})
        assert ok.status_code == 202 and ok.json()["reload"] == "started"
    server.wait_for_log("reload complete")
    assert httpx.get(admin + "/api/status", timeout=30).status_code == 401  # no cookie, no token


@pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian package) could not be installed here")
def test_the_page_in_chromium_moves_under_load_and_reloads(config_server, tmp_path):
    server = config_server(workers=2, admin={"token": TOKEN})
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(server.admin_url + f"/?token={TOKEN}")  # swapped for the cookie, then /

        def text(element_id: str) -> str | None:
            return browser.evaluate(f"(document.getElementById({element_id!r}) || {{}}).textContent || null")

        def number(element_id: str) -> float | None:
            value = text(element_id)
            return float(value.replace(",", "")) if value and value[0].isdigit() else None

        wait_until(lambda: number("requests-total") is not None, timeout=60, what="the page's first numbers")
        assert browser.evaluate("location.href") == server.admin_url + "/"  # the token left the URL
        assert text("generation") == "1" and text("state") == "ready"
        before = number("requests-total")
        seen_rate = threading.Event()
        stop = threading.Event()

        def load() -> None:  # bounded: at most 3000 requests or 60 s, whichever first
            deadline = time.monotonic() + 60
            with httpx.Client(timeout=30) as client:
                for _ in range(3000):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    client.get(server.url + "/hello.php")

        loader = threading.Thread(target=load)
        loader.start()
        try:
            def moved() -> bool:
                if (number("rps") or 0) > 0:
                    seen_rate.set()
                return seen_rate.is_set() and (number("requests-total") or 0) >= before + 100

            wait_until(moved, timeout=60, what="requests/s and the request count to move on the page")
        finally:
            stop.set()
            loader.join(timeout=60)

        browser.evaluate("document.getElementById('reload').click()")
        wait_until(lambda: status(server)["generation"] == 2, timeout=60,
                   what="the reload the button asked for")
        server.wait_for_log("reload complete")
        wait_until(lambda: text("generation") == "2", timeout=30, what="the page to show generation 2")
        assert "reload: reload started" in (text("action") or "")
        wait_until(lambda: "complete" in browser.evaluate("document.getElementById('reloads').textContent"),
                   timeout=30, what="the reload listed on the page")
        assert status(server)["last_reload"]["requested_by"] == "admin API"
        assert browser.exceptions() == []
    finally:
        browser.close()
