"""askr/admin/server.py: routing, methods and the token, through `respond` and a real socket."""

from __future__ import annotations

import asyncio
import socket
from http import HTTPStatus
from types import SimpleNamespace

import pytest

from askr.admin.server import AdminServer, Reply
from askr.config import parse_listen


class Master:
    """Stands in for the arbiter's callables; records what the API asked."""

    def __init__(self) -> None:
        self.draining = False
        self.ready = True

    def health(self, probe: str) -> tuple[bool, dict[str, str]]:
        if probe == "live":
            return True, {"status": "live"}
        if self.ready and not self.draining:
            return True, {"status": "ready"}
        return False, {"status": "not ready", "reason": "draining" if self.draining else "booting"}

    def drain(self, on: bool) -> dict:
        self.draining = on
        return {"state": "draining" if on else "ready", "ready": not on, "draining": on}


def make(token: str | None = None, public: bool = False) -> tuple[AdminServer, Master]:
    master = Master()
    config = SimpleNamespace(token=token, health_public=public, listen=parse_listen("127.0.0.1:9000"))
    server = AdminServer(socket.socket(), config,
                         lambda: {"state": "ready"}, lambda why, canary: {"reload": "started"},
                         lambda: b"# metrics\n", master.health, master.drain)
    server.sock.close()
    return server, master


def ask(server: AdminServer, method: str, path: str, token: str | None = None) -> tuple[HTTPStatus, object]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return server.respond(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())


def test_health_probes_answer_200_or_503_with_the_reason():
    server, master = make()
    assert ask(server, "GET", "/api/health/live") == (HTTPStatus.OK, {"status": "live"})
    assert ask(server, "GET", "/api/health/ready") == (HTTPStatus.OK, {"status": "ready"})
    master.ready = False
    assert ask(server, "GET", "/api/health/ready") == (
        HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not ready", "reason": "booting"})
    assert ask(server, "HEAD", "/api/health/ready")[0] == HTTPStatus.SERVICE_UNAVAILABLE
    assert ask(server, "POST", "/api/health/ready")[0] == HTTPStatus.METHOD_NOT_ALLOWED


def test_drain_and_undrain_are_posts_that_return_the_new_state():
    server, master = make()
    assert ask(server, "POST", "/api/drain") == (HTTPStatus.OK, {"state": "draining", "ready": False,
                                                                 "draining": True})
    assert master.draining
    assert ask(server, "GET", "/api/health/ready")[1] == {"status": "not ready", "reason": "draining"}
    assert ask(server, "GET", "/api/drain")[0] == HTTPStatus.METHOD_NOT_ALLOWED
    assert ask(server, "POST", "/api/undrain")[1]["state"] == "ready" and not master.draining


@pytest.mark.parametrize("public", [False, True])
def test_the_token_guards_everything_but_public_health_probes(public: bool):
    server, master = make(token="s3cret", public=public)
    probe = HTTPStatus.OK if public else HTTPStatus.UNAUTHORIZED
    assert ask(server, "GET", "/api/health/live")[0] == probe
    assert ask(server, "GET", "/api/health/ready")[0] == probe
    assert ask(server, "GET", "/api/health/ready", token="s3cret")[0] == HTTPStatus.OK
    assert ask(server, "POST", "/api/drain")[0] == HTTPStatus.UNAUTHORIZED
    assert not master.draining  # refused before anything was asked of the master
    for method, path in (("GET", "/api/status"), ("POST", "/api/drain"), ("POST", "/api/undrain"),
                         ("POST", "/api/reload"), ("GET", "/metrics")):
        assert ask(server, method, path)[0] == HTTPStatus.UNAUTHORIZED
        assert ask(server, method, path, token="s3cret")[0] in (HTTPStatus.OK, HTTPStatus.ACCEPTED)


def test_head_gets_the_length_but_no_body():
    async def main() -> tuple[bytes, bytes]:
        server, _ = make()
        listener = socket.create_server(("127.0.0.1", 0))
        server.sock = listener
        await server.start()
        port = listener.getsockname()[1]
        out = []
        for method in ("GET", "HEAD"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"{method} /api/health/ready HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            out.append(await reader.read())
            writer.close()
        server.close()
        return out[0], out[1]

    get, head = asyncio.run(asyncio.wait_for(main(), 10))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    get_head, get_body = get.split(b"\r\n\r\n", 1)
    assert head == get_head + b"\r\n\r\n" and get_body.startswith(b"{")


# -- the dashboard: the page, the token swapped for a cookie, and forged requests refused ----------
def ask_with(server: AdminServer, method: str, path: str, **headers: str) -> tuple[HTTPStatus, object]:
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    return server.respond(f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode())


def cookie_from(reply: Reply) -> str:
    line = next(h for h in reply.headers.split("\r\n") if h.startswith("set-cookie: "))
    return line.removeprefix("set-cookie: ").split(";")[0]


def test_the_page_is_the_packaged_html_with_a_policy_against_outside_assets():
    server, _ = make()
    status, reply = ask_with(server, "GET", "/", Host="127.0.0.1:9000")
    assert status == HTTPStatus.OK and isinstance(reply, Reply)
    assert reply.content_type == "text/html; charset=utf-8"
    assert b"<title>askr admin</title>" in reply.payload and b"__ASKR_ACCESS__" not in reply.payload
    assert b"loopback only" in reply.payload  # no token: the page says who can reach it
    assert "default-src 'none'" in reply.headers and "connect-src 'self'" in reply.headers
    assert ask_with(server, "GET", "/dashboard", Host="localhost:9000")[0] == HTTPStatus.OK
    assert ask_with(server, "POST", "/", Host="127.0.0.1:9000")[0] == HTTPStatus.METHOD_NOT_ALLOWED


def test_a_right_token_in_the_url_becomes_a_session_cookie_the_api_accepts():
    server, master = make(token="s3cret")
    status, page = ask_with(server, "GET", "/", Host="127.0.0.1:9000")
    assert status == HTTPStatus.UNAUTHORIZED and b"/?token=TOKEN" in page.payload
    assert ask_with(server, "GET", "/?token=wrong", Host="127.0.0.1:9000")[0] == HTTPStatus.UNAUTHORIZED
    status, reply = ask_with(server, "GET", "/?token=s3cret", Host="127.0.0.1:9000")
    assert status == HTTPStatus.SEE_OTHER and "location: /\r\n" in reply.headers
    assert "; HttpOnly; SameSite=Strict" in reply.headers and "s3cret" not in reply.headers
    cookie = cookie_from(reply)
    assert ask_with(server, "GET", "/", Cookie=cookie)[0] == HTTPStatus.OK
    assert ask_with(server, "GET", "/api/status", Cookie=f"other=1; {cookie}")[0] == HTTPStatus.OK
    assert ask_with(server, "GET", "/api/status", Cookie="askr_admin=guess")[0] == HTTPStatus.UNAUTHORIZED
    assert ask_with(server, "GET", "/api/status", Cookie='askr_admin="unclosed')[0] == HTTPStatus.UNAUTHORIZED
    # a new master (restart) has another cookie: the old one is worthless
    restarted, _ = make(token="s3cret")
    assert ask_with(restarted, "GET", "/api/status", Cookie=cookie)[0] == HTTPStatus.UNAUTHORIZED
    assert not master.draining


def test_a_post_with_the_cookie_needs_the_custom_header_and_a_matching_origin():
    server, master = make(token="s3cret")
    cookie = cookie_from(ask_with(server, "GET", "/?token=s3cret")[1])
    host = "127.0.0.1:9000"
    # what a cross-site form would send: the cookie (were it not SameSite) but no custom header
    assert ask_with(server, "POST", "/api/drain", Host=host, Cookie=cookie)[0] == HTTPStatus.FORBIDDEN
    assert not master.draining
    assert ask_with(server, "POST", "/api/drain", Host=host, Cookie=cookie, X_Askr_Admin="1",
                    Origin="http://evil.example")[0] == HTTPStatus.FORBIDDEN
    assert ask_with(server, "POST", "/api/drain", Host=host, Cookie=cookie, X_Askr_Admin="1",
                    Origin="null")[0] == HTTPStatus.FORBIDDEN
    assert not master.draining
    assert ask_with(server, "POST", "/api/drain", Host=host, Cookie=cookie, X_Askr_Admin="1",
                    Origin=f"http://{host}")[0] == HTTPStatus.OK
    assert master.draining
    # the bearer token alone still does (the CLI, curl): no browser adds it by itself
    assert ask(server, "POST", "/api/undrain", token="s3cret")[0] == HTTPStatus.OK and not master.draining


def test_without_a_token_browsers_must_use_a_loopback_name_and_the_custom_header():
    server, master = make()
    # curl and the CLI, as before: no browser headers, nothing more needed
    assert ask(server, "POST", "/api/drain")[0] == HTTPStatus.OK and master.draining
    master.draining = False
    # a cross-site form posting to 127.0.0.1:9000
    assert ask_with(server, "POST", "/api/drain", Host="127.0.0.1:9000",
                    Origin="http://evil.example")[0] == HTTPStatus.FORBIDDEN
    assert ask_with(server, "POST", "/api/drain", Host="127.0.0.1:9000", Sec_Fetch_Site="cross-site",
                    Content_Type="application/x-www-form-urlencoded")[0] == HTTPStatus.FORBIDDEN
    assert not master.draining
    # DNS rebinding: the attacker's name now points at 127.0.0.1, so its page is "same-origin"
    for path in ("/", "/api/status"):
        assert ask_with(server, "GET", path, Host="evil.example:9000",
                        Sec_Fetch_Site="same-origin")[0] == HTTPStatus.FORBIDDEN
    assert ask_with(server, "POST", "/api/drain", Host="evil.example:9000", X_Askr_Admin="1",
                    Origin="http://evil.example:9000")[0] == HTTPStatus.FORBIDDEN
    assert not master.draining
    # the dashboard itself, on a loopback name
    for host in ("127.0.0.1:9000", "localhost:9000", "[::1]:9000"):
        assert ask_with(server, "POST", "/api/drain", Host=host, X_Askr_Admin="1",
                        Origin=f"http://{host}", Sec_Fetch_Site="same-origin")[0] == HTTPStatus.OK


def test_history_takes_since_as_a_number():
    asked = []
    server, _ = make()
    server.history = lambda since: asked.append(since) or {"samples": []}
    assert ask(server, "GET", "/api/history") == (HTTPStatus.OK, {"samples": []})
    assert ask(server, "GET", "/api/history?since=1700000000.5")[0] == HTTPStatus.OK
    assert ask(server, "GET", "/api/history?since=yesterday")[0] == HTTPStatus.BAD_REQUEST
    assert ask(server, "POST", "/api/history")[0] == HTTPStatus.METHOD_NOT_ALLOWED
    assert asked == [None, 1700000000.5]
