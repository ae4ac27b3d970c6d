"""CGI/1.1 variables for a PHP request, as nginx's fastcgi_params + php-fpm provide them."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from askr import SERVER_SOFTWARE
from askr.bridge import wire
from askr.front.proxy import FORWARD_HEADERS, strip_forward_headers
from askr.front.router import PhpScript

if TYPE_CHECKING:
    from askr.front.context import FrontContext


class Origin(Protocol):
    """What CGI needs of a connection (askr.front.stream.Connection)."""

    ctx: FrontContext
    server_addr: bytes
    origin: tuple[bytes, bytes]
    trusted_peer: bool | None


class RequestHead(Protocol):
    """What CGI needs of a request (askr.front.stream.Stream)."""

    method: bytes
    url: bytes
    query: bytes
    version: str
    headers: dict[bytes, list]
    flat_headers: list[bytes]
    content_length: int | None
    chunked: bool
    body_size: int
    header: Callable[[bytes], bytes | None]


_SOFTWARE = SERVER_SOFTWARE.encode()


def connection_params(ctx: FrontContext, transport: asyncio.BaseTransport
                      ) -> tuple[bytes, bytes, tuple[bytes, bytes]]:
    """The variables that are the same for every request on one connection, encoded once:
    (REQUEST-frame params prefix, SERVER_ADDR, (REQUEST_SCHEME, SERVER_PORT))."""
    sock = transport.get_extra_info("sockname") or ("", 0)
    peer = transport.get_extra_info("peername") or ("", 0)
    https = ctx.config.server.https or transport.get_extra_info("ssl_object") is not None
    server_addr = str(sock[0]).encode()
    scheme, port = b"https" if https else b"http", str(sock[1]).encode()
    params = [
        b"GATEWAY_INTERFACE", b"CGI/1.1",
        b"SERVER_SOFTWARE", _SOFTWARE,
        b"DOCUMENT_ROOT", ctx.root_bytes,
        b"SERVER_ADDR", server_addr,
        b"SERVER_PORT", port,
        b"REMOTE_ADDR", str(peer[0]).encode(),
        b"REMOTE_PORT", str(peer[1]).encode(),
        b"REQUEST_SCHEME", scheme,
        b"REDIRECT_STATUS", b"200",
    ]
    if https:
        params += [b"HTTPS", b"on"]
    return wire.encode_params(params), server_addr, (scheme, port)


def server_name(host: bytes | None, fallback: bytes) -> bytes:
    """SERVER_NAME: the Host header without its port (as Caddy does), else the bound address."""
    if not host:
        return fallback
    if host[:1] == b"[":  # [::1]:8080
        return host.partition(b"]")[0] + b"]"
    return host.partition(b":")[0]


# Host names as nginx accepts them in Host (ngx_http_validate_host): anything else never reaches
# a Location header; the bound address stands in.
_HOST = re.compile(rb"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def absolute_url(conn: Origin, req: RequestHead, path: str) -> bytes:
    """`path` on the origin the client used: scheme, host and port as PHP sees them in $_SERVER
    (REQUEST_SCHEME, SERVER_NAME, SERVER_PORT; a trusted proxy's X-Forwarded-* included), the
    default port left out. nginx's `absolute_redirect on` and `port_in_redirect on` (its defaults)."""
    scheme, port = conn.origin
    host = server_name(req.header(b"host"), conn.server_addr)
    if conn.trusted_peer:
        forwarded = conn.ctx.proxies.params(req.header)
        names, values = forwarded[::2], forwarded[1::2]
        seen = dict(zip(names, values, strict=True))
        scheme = seen.get(b"REQUEST_SCHEME", scheme)
        host = seen.get(b"SERVER_NAME", host)
        port = seen.get(b"SERVER_PORT", port)
    if not _HOST.fullmatch(host):
        host = conn.server_addr
    if b":" in host and host[:1] != b"[":
        host = b"[" + host + b"]"  # a bare IPv6 bound address
    if port != (b"443" if scheme == b"https" else b"80"):
        host += b":" + port
    return scheme + b"://" + host + path.encode()


_PROTOCOLS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "2": b"HTTP/2.0"}


def php_headers(conn: Origin, req: RequestHead) -> list[bytes]:
    """The headers PHP gets: forwarding headers from an untrusted peer are dropped; through a
    trusted proxy, Host is the host the proxy was asked for. With X-Sendfile or X-Accel-Redirect
    configured, X-Sendfile-Type (and X-Accel-Mapping) are the front's (askr/front/xsendfile.py)."""
    offload = conn.ctx.offload
    flat = _proxied_headers(conn, req)
    return flat if offload is None else offload.php_headers(flat, req.headers)


def _proxied_headers(conn: Origin, req: RequestHead) -> list[bytes]:
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


def basic_auth_user(authorization: bytes) -> bytes:
    """nginx's $remote_user: the user name of a valid Basic Authorization header, else empty."""
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"basic":
        return b""
    try:
        user, sep, _ = base64.b64decode(credentials.strip(), validate=True).partition(b":")
    except ValueError:
        return b""
    return user if sep and b"\0" not in user else b""


def request_params(conn: Origin, req: RequestHead,
                   route: PhpScript) -> list[bytes]:
    """Flat [name, value, ...] CGI params for one request, after the per-connection ones."""
    script_name = route.script_name_bytes
    path_info = route.path_info.encode()
    params = [
        b"REQUEST_METHOD", req.method,
        b"REQUEST_URI", req.url,
        b"QUERY_STRING", req.query,
        b"SCRIPT_FILENAME", route.script_filename_bytes,
        b"SCRIPT_NAME", script_name,
        b"PHP_SELF", script_name + path_info,
        # nginx's $document_uri once `try_files $fastcgi_script_name` has matched: the script
        b"DOCUMENT_URI", script_name,
        b"SERVER_PROTOCOL", _PROTOCOLS[req.version],
        b"SERVER_NAME", server_name(req.header(b"host"), conn.server_addr),
    ]
    if path_info:
        # php-fpm's cgi.fix_pathinfo=1: PATH_TRANSLATED is DOCUMENT_ROOT + PATH_INFO, set only
        # with a PATH_INFO (Phar::webPhar() and older front controllers map it to a file)
        params += [b"PATH_INFO", path_info, b"PATH_TRANSLATED", conn.ctx.root_bytes.rstrip(b"/") + path_info]
    # nginx's fastcgi_params always send these three, empty when the request has none
    if req.chunked:
        content_length = str(req.body_size).encode()
    elif req.content_length is not None:
        content_length = str(req.content_length).encode()
    else:
        content_length = b""
    authorization = req.header(b"authorization")
    params += [b"CONTENT_TYPE", req.header(b"content-type") or b"", b"CONTENT_LENGTH", content_length,
               b"REMOTE_USER", basic_auth_user(authorization) if authorization else b""]
    if conn.trusted_peer:
        params += conn.ctx.proxies.params(req.header)  # later params win in $_SERVER
    return params
