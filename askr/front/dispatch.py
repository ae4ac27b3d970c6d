"""CGI/1.1 variables for a PHP request, as nginx's fastcgi_params + php-fpm provide them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from askr import SERVER_SOFTWARE
from askr.bridge import wire
from askr.front.proxy import FORWARD_HEADERS, strip_forward_headers
from askr.front.router import PhpScript

if TYPE_CHECKING:
    from askr.front.http1 import Http1Connection, Request
    from askr.front.http2 import Http2Connection, Http2Stream
    from askr.front.server import FrontContext

_SOFTWARE = SERVER_SOFTWARE.encode()


def connection_made(conn: Http1Connection | Http2Connection, transport: asyncio.BaseTransport,
                    high_water: int) -> None:
    """What every HTTP connection learns about itself when it opens (both protocols)."""
    conn.transport = transport  # type: ignore[assignment]
    conn.ctx.connections.add(conn)
    conn.conn_params, conn.server_addr = connection_params(conn.ctx, transport)
    conn.peer_ip = str((transport.get_extra_info("peername") or ("-",))[0])
    # None when [server] trusted_proxies is off; else whether this peer is one of them
    proxies = conn.ctx.proxies
    conn.trusted_peer = proxies.trusts(conn.peer_ip) if proxies.enabled else None
    transport.set_write_buffer_limits(high=high_water)  # type: ignore[attr-defined]


def connection_params(ctx: FrontContext, transport: asyncio.BaseTransport) -> tuple[bytes, bytes]:
    """The variables that are the same for every request on one connection, encoded once:
    (REQUEST-frame params prefix, SERVER_ADDR)."""
    sock = transport.get_extra_info("sockname") or ("", 0)
    peer = transport.get_extra_info("peername") or ("", 0)
    https = ctx.config.server.https or transport.get_extra_info("ssl_object") is not None
    server_addr = str(sock[0]).encode()
    params = [
        b"GATEWAY_INTERFACE", b"CGI/1.1",
        b"SERVER_SOFTWARE", _SOFTWARE,
        b"DOCUMENT_ROOT", ctx.root_bytes,
        b"SERVER_ADDR", server_addr,
        b"SERVER_PORT", str(sock[1]).encode(),
        b"REMOTE_ADDR", str(peer[0]).encode(),
        b"REMOTE_PORT", str(peer[1]).encode(),
        b"REQUEST_SCHEME", b"https" if https else b"http",
        b"REDIRECT_STATUS", b"200",
    ]
    if https:
        params += [b"HTTPS", b"on"]
    return wire.encode_params(params), server_addr


def server_name(host: bytes | None, fallback: bytes) -> bytes:
    """SERVER_NAME: the Host header without its port (as Caddy does), else the bound address."""
    if not host:
        return fallback
    if host[:1] == b"[":  # [::1]:8080
        return host.partition(b"]")[0] + b"]"
    return host.partition(b":")[0]


_PROTOCOLS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "2": b"HTTP/2.0"}


def php_headers(conn: Http1Connection | Http2Connection, req: Request | Http2Stream) -> list[bytes]:
    """The headers PHP gets: forwarding headers from an untrusted peer are dropped; through a
    trusted proxy, Host is the host the proxy was asked for."""
    flat = req.flat_headers
    trusted = conn.trusted_peer
    if trusted is None or not any(name in req.headers for name in FORWARD_HEADERS):
        return flat
    if not trusted:
        return strip_forward_headers(flat)
    host = conn.ctx.proxies.host(req.header)
    if host is None:
        return flat
    out = [value for i in range(0, len(flat), 2) if flat[i].lower() != b"host" for value in flat[i : i + 2]]
    return [b"Host", host.encode(), *out]


def request_params(conn: Http1Connection | Http2Connection, req: Request | Http2Stream,
                   route: PhpScript) -> list[bytes]:
    """Flat [name, value, ...] CGI params for one request, after the per-connection ones."""
    script_name = route.script_name_bytes
    path_info = route.path_info
    document_uri = script_name + path_info.encode() if path_info else script_name
    params = [
        b"REQUEST_METHOD", req.method,
        b"REQUEST_URI", req.url,
        b"QUERY_STRING", req.query,
        b"SCRIPT_FILENAME", route.script_filename_bytes,
        b"SCRIPT_NAME", script_name,
        b"PHP_SELF", document_uri,
        b"DOCUMENT_URI", document_uri,
        b"SERVER_PROTOCOL", _PROTOCOLS[req.version],
        b"SERVER_NAME", server_name(req.header(b"host"), conn.server_addr),
    ]
    if path_info:
        params += [b"PATH_INFO", path_info.encode()]
    content_type = req.header(b"content-type")
    if content_type is not None:
        params += [b"CONTENT_TYPE", content_type]
    if req.chunked:
        params += [b"CONTENT_LENGTH", str(req.body_size).encode()]
    elif req.content_length is not None:
        params += [b"CONTENT_LENGTH", str(req.content_length).encode()]
    if conn.trusted_peer:
        params += conn.ctx.proxies.params(req.header)  # later params win in $_SERVER
    return params
