"""The admin API, served by the master on [admin] listen (loopback by default).

    GET  /api/status          JSON: version, uptime, readiness state, generation, workers, last reload
                              (?full: each worker's latest request too; ?format=openmetrics: the
                              metrics in the OpenMetrics format, as php-fpm's status page)
    GET  /metrics             Prometheus text format (askr/metrics.py)
    POST /api/reload          start a rolling reload (202); ?canary=1 starts it with a canary
    GET  /api/health/live     200 while the master and a front are up, else 503 (HEAD too)
    GET  /api/health/ready    200 while the host should get traffic, else 503 and why (HEAD too)
    POST /api/drain           readiness says 503 "draining"; everything that arrives is still served
    POST /api/undrain         back to the workers' readiness

One request per connection, JSON out, an optional bearer token ([admin] token / token_file; the
health probes are exempt with [admin] health_public). The master's loop owns all state; this
module only reads it and asks for a reload or a drain.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("askr.admin")

MAX_HEAD = 16 * 1024
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class OpenMetrics(bytes):
    """A body in the OpenMetrics text format (its own content type)."""
READ_TIMEOUT = 10.0


HEALTH_PROBES = {"/api/health/live": "live", "/api/health/ready": "ready"}


class AdminServer:
    def __init__(self, sock: socket.socket, config: Any, status: Callable[[], dict[str, Any]],
                 reload: Callable[[str, bool], dict[str, Any]], metrics: Callable[[], bytes],
                 health: Callable[[str], tuple[bool, dict[str, str]]],
                 drain: Callable[[bool], dict[str, Any]]):
        """`config` is the [admin] section (token, health_public)."""
        self.sock = sock
        self.metrics = metrics
        self.token: str | None = config.token
        self.health_public: bool = config.health_public
        # GET /api/status?full, ?format=openmetrics (given after construction: set_status_views)
        self.full_status = status
        self.openmetrics: Callable[[], bytes] | None = None
        self.status = status
        self.reload = reload
        self.health = health
        self.drain = drain
        self.server: asyncio.AbstractServer | None = None

    def set_status_views(self, full: Callable[[], dict[str, Any]], openmetrics: Callable[[], bytes]) -> None:
        """GET /api/status?full and ?format=openmetrics."""
        self.full_status = full
        self.openmetrics = openmetrics

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, sock=self.sock, limit=MAX_HEAD)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, body = self.respond(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            head, status, body = b"", HTTPStatus.BAD_REQUEST, {"error": "malformed or incomplete request"}
        if isinstance(body, OpenMetrics):
            payload, content_type = bytes(body), OPENMETRICS_TYPE
        elif isinstance(body, bytes):  # /metrics
            payload, content_type = body, "text/plain; version=0.0.4; charset=utf-8"
        else:
            payload, content_type = json.dumps(body, indent=1).encode() + b"\n", "application/json"
        head_out = (f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: {content_type}\r\n"
                    f"content-length: {len(payload)}\r\nconnection: close\r\n")
        if status == HTTPStatus.UNAUTHORIZED:
            head_out += 'www-authenticate: Bearer realm="askr"\r\n'
        if head.startswith(b"HEAD "):
            payload = b""  # its length and status stand (a balancer's HEAD probe)
        try:
            writer.write(head_out.encode() + b"\r\n" + payload)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def respond(self, head: bytes) -> tuple[HTTPStatus, dict[str, Any] | bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return HTTPStatus.BAD_REQUEST, {"error": "malformed request line"}
        method, target = parts[0], urlsplit(parts[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        public = self.health_public and target.path in HEALTH_PROBES
        if self.token is not None and not public:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token"}
        if target.path in HEALTH_PROBES:
            if method not in ("GET", "HEAD"):
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET or HEAD"}
            ok, body = self.health(HEALTH_PROBES[target.path])
            return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), body
        if target.path in ("/api/drain", "/api/undrain"):
            if method != "POST":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"}
            return HTTPStatus.OK, self.drain(target.path == "/api/drain")
        if target.path == "/metrics":
            if method != "GET":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET"}
            return HTTPStatus.OK, self.metrics()
        if target.path == "/api/status":
            if method != "GET":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET"}
            query = parse_qs(target.query, keep_blank_values=True)
            if query.get("format", [""])[0] == "openmetrics" and self.openmetrics is not None:
                return HTTPStatus.OK, OpenMetrics(self.openmetrics())
            return HTTPStatus.OK, self.full_status() if "full" in query else self.status()
        if target.path == "/api/reload":
            if method != "POST":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"}
            canary = parse_qs(target.query).get("canary", ["0"])[0] not in ("0", "")
            return HTTPStatus.ACCEPTED, self.reload("admin API", canary)
        return HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {target.path}"}
