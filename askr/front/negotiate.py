"""Choosing a connection's protocol: ALPN after a TLS handshake, the HTTP/2 preface on plain
listeners with [server] h2c, and the https redirect listener ([server] redirect_http)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from askr.front import tls
from askr.front.http1 import Http1Connection
from askr.front.http2 import Http2Connection
from askr.front.responses import DATE, SERVER_HEADER, error_response, status_line

if TYPE_CHECKING:
    from askr.front.context import FrontContext

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _hand_over(transport: asyncio.BaseTransport, protocol: asyncio.Protocol, data: bytes = b"") -> None:
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)


class AlpnSelector(asyncio.Protocol):
    """On a TLS listener: connection_made comes after the handshake, when ALPN has chosen."""

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        protocol = Http2Connection(self.ctx) if tls.negotiated_h2(transport) else Http1Connection(self.ctx)
        _hand_over(transport, protocol)


class _Brief(asyncio.Protocol):
    """A connection that only reads a request's first bytes: swept by the front (closed after
    header_timeout) and closed at once on drain."""

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ctx.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.connection_closed(self)

    def check_deadline(self, now: float) -> None:
        if not self.deadline:
            self.deadline = now + self.ctx.config.limits.header_timeout
        elif now >= self.deadline and self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()


class PriorKnowledgeSniffer(_Brief):
    """On a plain listener with h2c: HTTP/2 if the client opens with the connection preface,
    else HTTP/1.1 (decided on the first bytes, which are then replayed)."""

    def __init__(self, ctx: FrontContext):
        super().__init__(ctx)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        n = min(len(self.buffer), len(H2_PREFACE))
        if self.buffer[:n] == H2_PREFACE[:n] and n < len(H2_PREFACE):
            return  # still could be either
        self.ctx.connections.discard(self)
        is_h2 = self.buffer.startswith(H2_PREFACE)
        protocol = Http2Connection(self.ctx) if is_h2 else Http1Connection(self.ctx)
        assert self.transport is not None
        _hand_over(self.transport, protocol, self.buffer)


class RedirectToHttps(_Brief):
    """[server] redirect_http: every request gets 308 to the same URL on https, then close."""

    def __init__(self, ctx: FrontContext, https_port: int):
        super().__init__(ctx)
        self.port_suffix = b"" if https_port == 443 else b":%d" % https_port
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.host = b""
        self.size = 0

    def data_received(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.ctx.config.limits.max_header_size:
            self._answer(error_response(431, close=True))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.on_headers_complete()
        except httptools.HttpParserError:
            self._answer(error_response(400, close=True))

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.host = value

    def on_headers_complete(self) -> None:
        host = self.host.rpartition(b":")[0] if self.host.rpartition(b":")[2].isdigit() else self.host
        url = self.url if self.url[:1] == b"/" else b"/"
        if not host or any(c in host for c in b"/\\@ \t") or b"\r" in url or b"\n" in url:
            self._answer(error_response(400, close=True))
            return
        location = b"https://" + host + self.port_suffix + url
        self._answer(status_line(308) + DATE.get() + SERVER_HEADER + b"location: " + location +
                     b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    def _answer(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()
