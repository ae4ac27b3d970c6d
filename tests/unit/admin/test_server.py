"""askr/admin/server.py: routing, methods and the token, through `respond` and a real socket."""

from __future__ import annotations

import asyncio
import socket
from http import HTTPStatus
from types import SimpleNamespace

import pytest

from askr.admin.server import AdminServer


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
    server = AdminServer(socket.socket(), SimpleNamespace(token=token, health_public=public),
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
