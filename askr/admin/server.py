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
    GET  /api/history         JSON: the last minutes' traffic, one sample a second, and the last reloads
    GET  / (or /dashboard)    the dashboard: one self-contained HTML page polling the two above

One request per connection, JSON out, an optional bearer token ([admin] token / token_file; the
health probes are exempt with [admin] health_public). A browser cannot send a bearer token when it
opens a page, so `GET /?token=TOKEN` swaps a right token for a session cookie (HttpOnly,
SameSite=Strict) that the API accepts instead of the header. A POST that a browser could send for
another site (a cookie authenticates it, or there is no token) must carry `X-Askr-Admin: 1`, which
a cross-site form cannot, and an Origin, when there is one, naming this listener; a browser's
request without a token must name a loopback host (DNS rebinding). The master's loop owns all
state; this module only reads it and asks for a reload or a drain.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("askr.admin")

MAX_HEAD = 16 * 1024
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
READ_TIMEOUT = 10.0


HEALTH_PROBES = {"/api/health/live": "live", "/api/health/ready": "ready"}
DASHBOARD_PATHS = ("/", "/dashboard")
DASHBOARD_FILE = Path(__file__).with_name("dashboard.html")
COOKIE = "askr_admin"
CSRF_HEADER = "x-askr-admin"  # a custom header: a cross-site form cannot send one
SECURITY_HEADERS = ("x-frame-options: DENY\r\nx-content-type-options: nosniff\r\n"
                    "referrer-policy: no-referrer\r\ncache-control: no-store\r\n")
PAGE_POLICY = ("content-security-policy: default-src 'none'; script-src 'unsafe-inline'; "
               "style-src 'unsafe-inline'; img-src data:; connect-src 'self'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n")


@dataclass
class Reply:
    """An answer that is not JSON: the page, a redirect, /metrics' text."""

    content_type: str
    payload: bytes = b""
    headers: str = ""  # extra header lines, each ending in CRLF


class Refused(Exception):
    def __init__(self, status: HTTPStatus, why: str):
        super().__init__(why)
        self.status, self.why = status, why


def _host_name(host_header: str) -> str:
    """The name in a Host header, without its port or an IPv6 literal's brackets."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.partition(":")[0]


def _from_browser(headers: dict[str, str]) -> bool:
    """Browsers send Origin with every cross-origin POST, and Sec-Fetch-Site with every request."""
    return "origin" in headers or "sec-fetch-site" in headers


def _loopback_name(host: str) -> bool:
    host = host.lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminServer:
    def __init__(self, sock: socket.socket, config: Any, status: Callable[[], dict[str, Any]],
                 reload: Callable[[str, bool], dict[str, Any]], metrics: Callable[[], bytes],
                 health: Callable[[str], tuple[bool, dict[str, str]]],
                 drain: Callable[[bool], dict[str, Any]],
                 history: Callable[[float | None], dict[str, Any]] | None = None,
                 full_status: Callable[[], dict[str, Any]] | None = None,
                 openmetrics: Callable[[], bytes] | None = None):
        """`config` is the [admin] section (token, health_public, listen). `full_status` and
        `openmetrics` answer GET /api/status?full and ?format=openmetrics."""
        self.sock = sock
        self.history = history
        self.listen_host: str = config.listen.host
        # The dashboard's session cookie: random per master start, so it is not the token and
        # dies with the process.
        self.cookie_value = secrets.token_urlsafe(32)
        self.metrics = metrics
        self.token: str | None = config.token
        self.health_public: bool = config.health_public
        self.full_status = full_status or status
        self.openmetrics = openmetrics
        self.status = status
        self.reload = reload
        self.health = health
        self.drain = drain
        self.server: asyncio.AbstractServer | None = None
        self.page = DASHBOARD_FILE.read_bytes().replace(b"__ASKR_ACCESS__", self._access_note().encode())

    def _access_note(self) -> str:
        if self.token is None:
            return ("No admin token is set, so this API answers on loopback only "
                    f"({self.listen_host}); anyone on this machine can use it.")
        return ("The admin token guards this page: it was swapped for a session cookie that lasts "
                "until the browser closes or askr restarts.")

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
        extra = ""
        if isinstance(body, Reply):
            payload, content_type, extra = body.payload, body.content_type, body.headers
        elif isinstance(body, bytes):  # /metrics
            payload, content_type = body, "text/plain; version=0.0.4; charset=utf-8"
        else:
            payload, content_type = json.dumps(body, indent=1).encode() + b"\n", "application/json"
        head_out = (f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: {content_type}\r\n"
                    f"content-length: {len(payload)}\r\nconnection: close\r\n{SECURITY_HEADERS}{extra}")
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

    def respond(self, head: bytes) -> tuple[HTTPStatus, dict[str, Any] | bytes | Reply]:
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
        page = target.path in DASHBOARD_PATHS
        if page and method in ("GET", "HEAD") and "token" in parse_qs(target.query):
            return self._swap_token(parse_qs(target.query)["token"][0], headers)
        public = self.health_public and target.path in HEALTH_PROBES
        try:
            how = self._authorize(headers, public, page)
            if method == "POST" and (how == "cookie" or (how == "open" and _from_browser(headers))):
                self._check_same_origin(headers)
        except Refused as e:
            if page and method in ("GET", "HEAD"):
                return e.status, self._refusal_page(e.why, e.status == HTTPStatus.UNAUTHORIZED)
            return e.status, {"error": e.why}
        if page:
            if method not in ("GET", "HEAD"):
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET"}
            return HTTPStatus.OK, Reply("text/html; charset=utf-8", self.page, PAGE_POLICY)
        if target.path == "/api/history" and self.history is not None:
            if method != "GET":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET"}
            since = parse_qs(target.query).get("since", [""])[0]
            try:
                return HTTPStatus.OK, self.history(float(since) if since else None)
            except ValueError:
                return HTTPStatus.BAD_REQUEST, {"error": "since must be a number (a sample's t)"}
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
                return HTTPStatus.OK, Reply(OPENMETRICS_TYPE, self.openmetrics())
            return HTTPStatus.OK, self.full_status() if "full" in query else self.status()
        if target.path == "/api/reload":
            if method != "POST":
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"}
            canary = parse_qs(target.query).get("canary", ["0"])[0] not in ("0", "")
            return HTTPStatus.ACCEPTED, self.reload("admin API", canary)
        return HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {target.path}"}

    # -- who may ask -----------------------------------------------------------------------------
    def _authorize(self, headers: dict[str, str], public: bool, page: bool) -> str:
        """Raise Refused unless the request may go on; else say what let it in: "bearer" (no
        browser sends one by itself, so it cannot be a forged cross-site request), "cookie",
        "public" (a health probe with health_public) or "open" (no token is set)."""
        if self.token is None:
            host = _host_name(headers.get("host", ""))
            if (page or _from_browser(headers)) and host and not (
                    _loopback_name(host) or host == self.listen_host):
                # without a token, a browser asking by another name is a DNS rebinding attempt
                raise Refused(HTTPStatus.FORBIDDEN, f"host {host!r} is not this admin listener; without "
                              "a token the admin API answers browsers on loopback names only")
            return "open"
        if public:
            return "public"
        given = headers.get("authorization", "")
        if given and hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return "bearer"
        if hmac.compare_digest(self._cookie(headers).encode(), self.cookie_value.encode()):
            return "cookie"
        raise Refused(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")

    @staticmethod
    def _cookie(headers: dict[str, str]) -> str:
        try:
            morsel = SimpleCookie(headers.get("cookie", "")).get(COOKIE)
        except CookieError:
            return ""
        return morsel.value if morsel is not None else ""

    @staticmethod
    def _check_same_origin(headers: dict[str, str]) -> None:
        """A POST not carrying the bearer token: the dashboard's, or a forged one from another
        site. Only a script of the same origin can add the custom header; the Origin, when the
        browser sends one, must name this listener."""
        if headers.get(CSRF_HEADER) != "1":
            raise Refused(HTTPStatus.FORBIDDEN, "a POST without the bearer token needs the header "
                          "X-Askr-Admin: 1 (cross-site request forgery guard)")
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{headers.get('host', '')}":
            raise Refused(HTTPStatus.FORBIDDEN, f"Origin {origin} is not this admin listener")

    def _swap_token(self, given: str, headers: dict[str, str]) -> tuple[HTTPStatus, Reply]:
        """GET /?token=TOKEN: a right token becomes the session cookie, and a redirect drops
        it from the address bar (and the history)."""
        if self.token is None:
            return HTTPStatus.SEE_OTHER, Reply("text/plain", b"", "location: /\r\n")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return HTTPStatus.UNAUTHORIZED, self._refusal_page("wrong token", True)
        cookie = f"{COOKIE}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        return HTTPStatus.SEE_OTHER, Reply("text/plain", b"", f"set-cookie: {cookie}\r\nlocation: /\r\n")

    @staticmethod
    def _refusal_page(why: str, token_hint: bool) -> Reply:
        text = (f"<!doctype html><meta charset=utf-8><title>askr admin</title><h1>askr admin</h1>"
                f"<p>{why.replace('&', '&amp;').replace('<', '&lt;')}.</p>")
        if token_hint:
            text += ("<p>This admin API needs its token: open <code>/?token=TOKEN</code> once (the "
                     "token is in [admin] token_file), and a session cookie stands in for it from "
                     "then on.</p>")
        return Reply("text/html; charset=utf-8", text.encode(), PAGE_POLICY)
