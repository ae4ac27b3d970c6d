"""HTTP/2 on one client connection: libnghttp2's state machine (askr.front.nghttp2), our I/O and flow
control.

Each stream is a request. Streams are handed to PHP workers independently, so one connection's
concurrent requests run in parallel on different workers. Flow control both ways:

- uploads: a stream's window is re-opened only as its body moves on to a worker, so a slow
  worker holds back that stream's sender, not the connection; the connection window is
  re-opened at once (per-stream windows bound what we hold);
- downloads: a stream's response waits in nghttp2's buffer for that stream until the client's
  window allows it; past HIGH_WATER that stream's PHP worker is paused (and a static file is read
  no further), so a slow reader does not stall other streams or grow memory.

Protections: SETTINGS_MAX_CONCURRENT_STREAMS and MAX_HEADER_LIST_SIZE from [limits], header and
body limits per stream as in HTTP/1.1, and rapid reset (CVE-2023-44487): streams reset in the
same read as they were opened never reach PHP, and a client resetting more than twice
max_streams streams within RESET_WINDOW seconds gets GOAWAY(ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
from typing import TYPE_CHECKING

from askr.bridge import wire
from askr.bridge.pool import Exchange
from askr.front import dispatch
from askr.front import nghttp2 as ng
from askr.front.hotfiles import HotFile
from askr.front.nghttp2 import ErrorCodes
from askr.front.responses import DATE, SERVER_HEADER, error_body
from askr.front.router import PhpScript, Redirect, StaticFile
from askr.front.static import serve_static

if TYPE_CHECKING:
    from askr.front.server import FrontContext

log = logging.getLogger("askr.front")

STREAM_WINDOW = 256 * 1024  # request body we accept per stream before a worker takes it
HIGH_WATER = 256 * 1024  # response bytes buffered per stream before its worker is paused
FILE_CHUNK = 256 * 1024
RESET_WINDOW = 10.0
NO_BODY_STATUS = frozenset((204, 304))
MALFORMED = -1
_PSEUDO_REQUEST = frozenset((b":method", b":scheme", b":authority", b":path"))
# Connection-specific fields (RFC 9113 8.2.2): malformed in a request, dropped from PHP's response.
_CONNECTION_SPECIFIC = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                  b"upgrade"))
# What PHP's headers never pass on: those, and the worker's CGI Status line (HTTP/2 has no reason).
_NOT_FORWARDED = _CONNECTION_SPECIFIC | {b"status"}
# Field names: lower-case token characters (a leading ':' for pseudo-headers); values: no NUL/CR/LF.
_BAD_FIELD = re.compile(rb"[^a-z0-9!#$%&'*+\-.^_`|~]", re.ASCII)
_BAD_VALUE = re.compile(rb"[\0\r\n]")
_WHITESPACE = (b" ", b"\t")
_SERVER_VALUE = SERVER_HEADER[len(b"server: "):-2]


def _front_headers(status: int) -> list[tuple[bytes, bytes]]:
    """:status, date and server, for responses the front makes itself."""
    return [(b":status", b"%d" % status), (b"date", DATE.field()), (b"server", _SERVER_VALUE)]


class Http2Stream:
    """One request/response. Quacks like http1.Request for dispatch.request_params, and is the
    ResponseSink of its PHP exchange."""

    __slots__ = (
        "body",
        "body_complete",
        "body_size",
        "chunked",
        "closed",
        "conn",
        "content_length",
        "end_after",
        "exchange",
        "file",
        "flat_headers",
        "head_only",
        "headers",
        "method",
        "out",
        "out_size",
        "path",
        "paused_worker",
        "php_deadline",
        "query",
        "responded",
        "response_started",
        "sent",
        "started",
        "status",
        "stream_id",
        "unacked",
        "url",
        "version",
        "window_bytes",
        "worker",
    )

    def __init__(self, conn: Http2Connection, stream_id: int):
        self.conn = conn
        self.stream_id = stream_id
        self.version = "2"
        self.method = b""
        self.url = b""
        self.path = b""
        self.query = b""
        self.headers: dict[bytes, list] = {}  # lower name -> [name, value] (as http1.Request)
        self.flat_headers: list[bytes] = []
        self.content_length: int | None = None
        self.chunked = False  # a body without content-length: collected first, like HTTP/1.1 chunked
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.window_bytes = 0
        self.unacked = 0  # body bytes received but whose window was not yet re-opened
        self.exchange: Exchange | None = None
        self.head_only = False
        self.response_started = False
        self.responded = False
        self.closed = False
        self.out: collections.deque[bytes] = collections.deque()
        self.out_size = 0
        self.end_after = False  # end the stream once `out` is sent
        self.file: tuple[int, int, int] | None = None  # (fd, offset, remaining) of a static file
        self.paused_worker = False
        self.php_deadline = 0.0
        self.started = 0.0  # loop time the request arrived (for the duration metric)
        self.status = 0
        self.sent = 0  # response body bytes (access log)
        self.worker = 0  # pid of the PHP worker that answered (access log)

    def header(self, lower_name: bytes) -> bytes | None:
        entry = self.headers.get(lower_name)
        return entry[1] if entry else None

    # -- ResponseSink ------------------------------------------------------------------------
    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        if complete:
            self.exchange = None  # the worker is done with it, whatever happens to the stream
        headers = [(b":status", b"%d" % status)]
        has_date = has_server = False
        for line in header_block.split(b"\n") if header_block else ():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if not name or name in _NOT_FORWARDED or (name == b"content-length" and complete
                                                            and not self.head_only):
                continue
            has_date = has_date or name == b"date"
            has_server = has_server or name == b"server"
            headers.append((name, value.strip()))
        if not has_date:
            headers.append((b"date", DATE.field()))
        if not has_server:
            headers.append((b"server", _SERVER_VALUE))
        no_body = self.head_only or status in NO_BODY_STATUS
        data = b"".join(body)
        if complete and not no_body:
            headers.append((b"content-length", b"%d" % len(data)))
        self.conn.send_response_head(self, headers, end=complete and (no_body or not data))
        if no_body:
            body = []
        elif complete:
            body = [data]
        self.php_body(body, complete)

    def php_body(self, body: list[bytes], complete: bool) -> None:
        if complete:
            self.exchange = None
        if self.closed:
            return
        if not self.head_only:
            for part in body:
                if part:
                    self.out.append(part)
                    self.out_size += len(part)
        if complete:
            self.php_deadline = 0.0
            if not self.responded:
                self.end_after = True
        self.conn.flush_stream(self)

    def php_failed(self) -> None:
        if self.closed or self.responded:
            return
        self.exchange = None
        if not self.response_started:
            log.error("PHP worker died while handling %s %s (HTTP/2); answering 502",
                      self.method.decode(), self.url.decode("latin-1"))
            self.conn.respond_simple(self, 502)
        else:
            log.error("PHP worker died while streaming %s (HTTP/2); resetting the stream",
                      self.url.decode("latin-1"))
            self.conn.reset(self, ErrorCodes.INTERNAL_ERROR)

    def php_backpressure(self, paused: bool) -> None:
        """The worker is slow to take this stream's body: stop re-opening its window."""
        if not paused:
            self.conn.ack_body(self)

    def php_informational(self, status: int, header_block: bytes) -> None:
        if self.closed or self.response_started or status == 101:
            return
        links = [line.partition(b":")[2].strip() for line in header_block.split(b"\n")
                 if line[:5].lower() == b"link:"]
        if links:
            self.conn.send_informational(self, status, links)


class Http2Connection(asyncio.Protocol):
    """asyncio.Protocol for one HTTP/2 connection (TLS with ALPN h2, or h2c prior knowledge)."""

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.limits = ctx.config.limits
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        # nghttp2 validates inbound headers (and _parse_headers applies askr's limits); outbound
        # headers are built here from PHP's lines (lower-cased, connection-specific ones dropped,
        # no CR/LF), which nghttp2 does not check.
        self.h2: ng.Session | None = None  # made in connection_made, from [limits]
        self.streams: dict[int, Http2Stream] = {}
        self.conn_params = b""
        self.server_addr = b""
        self.origin = (b"http", b"")  # (REQUEST_SCHEME, SERVER_PORT) of this connection
        self.trusted_peer: bool | None = None
        self.peer_ip = "-"
        self.closing = False
        self.goaway_sent = False
        self.last_stream_id = 0  # the highest stream we accepted (GOAWAY's last-stream-id)
        self.write_paused = False
        self.resets: collections.deque[float] = collections.deque()
        self.idle_since: float | None = None  # for keepalive_timeout (connection without streams)
        self.new_streams: list[Http2Stream] = []  # opened in this read; dispatched after it
        self._body_check_at = 0.0
        self.write_scheduled = False
        self._more_room = False  # a WINDOW_UPDATE or SETTINGS came: streams may send more

    # -- connection lifecycle ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        dispatch.connection_made(self, transport, HIGH_WATER)
        limits = self.limits
        # The connection window covers every stream's window, so streams never starve each other.
        # nghttp2's own reset-flood bucket is a backstop behind askr's rule (_on_reset).
        self.h2 = ng.Session(max_concurrent_streams=limits.max_streams, initial_window_size=STREAM_WINDOW,
                             max_header_list_size=limits.max_header_size,
                             connection_window=max(65535, limits.max_streams * STREAM_WINDOW),
                             reset_burst=1000 + 8 * limits.max_streams, reset_rate=limits.max_streams)
        self.idle_since = None
        self._write()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connection_closed(self)
        for stream in list(self.streams.values()):
            self._abandon(stream)
        self.streams.clear()
        if self.h2 is not None:
            self.h2.close()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            self.flush_stream(stream, write=False)
        self._write()

    def eof_received(self) -> bool:
        return False

    # -- input -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            events = self.h2.receive_data(data)  # type: ignore[union-attr]
        except ng.ProtocolError as e:
            log.info("HTTP/2 protocol error from %s: %s; closing", self._peer(), e)
            self._close()  # after nghttp2's GOAWAY
            return
        self._handle(events)
        if self.closing:
            return
        new, self.new_streams = self.new_streams, []
        for stream in new:
            if not stream.closed:  # reset in the same read: never reaches a worker
                self._dispatch(stream)
        self._write()
        if self.goaway_sent and not self.streams:
            self._close()

    def _handle(self, events: list[ng.Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is ng.DataReceived:
                self._on_data(event)  # type: ignore[arg-type]
            elif kind is ng.RequestReceived:
                self._on_request(event)  # type: ignore[arg-type]
            elif kind is ng.StreamEnded:
                self._on_body_end(event.stream_id)  # type: ignore[attr-defined]
            elif kind is ng.StreamReset:
                self._on_reset(event.stream_id)  # type: ignore[attr-defined]
            elif kind is ng.ConnectionTerminated:
                self.goaway_sent = True  # the client is leaving: nothing new, close when done
            elif kind is ng.WindowUpdated or kind is ng.RemoteSettingsChanged:
                self._more_room = True  # files and paused workers may go on (_flush_output)
            if self.closing:
                return

    def _on_request(self, event: ng.RequestReceived) -> None:
        stream_id = event.stream_id
        if self.goaway_sent:  # opened after our GOAWAY: refused, the client retries elsewhere
            with contextlib.suppress(ng.StreamClosedError):
                self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)  # type: ignore[union-attr]
            return
        stream = Http2Stream(self, stream_id)
        stream.started = self.loop.time()
        self.streams[stream_id] = stream
        self.last_stream_id = max(self.last_stream_id, stream_id)
        self.idle_since = None
        status = 431 if event.headers_too_large else self._parse_headers(stream, event.headers)
        if event.end_stream:
            stream.body_complete = True
        if status == MALFORMED:  # RFC 9113 8.1.1: a stream error, not an HTTP answer
            self.reset(stream, ErrorCodes.PROTOCOL_ERROR)
            return
        if status:
            self.respond_simple(stream, status)
            return
        self.new_streams.append(stream)

    def _parse_headers(self, stream: Http2Stream, headers: list[tuple[bytes, bytes]]) -> int:
        """Fill `stream` from the header block (validated here, in one pass, rather than by h2:
        RFC 9113 8.2 and 8.3). A status to answer when a limit is broken; MALFORMED when the
        block breaks the protocol."""
        limits = self.limits
        size = 0
        authority = None
        scheme = b""
        regular = False
        if len(headers) > limits.max_headers + 4:
            return 431
        for name, value in headers:
            size += len(name) + len(value) + 32
            if (not name or _BAD_FIELD.search(name, 1 if name[:1] == b":" else 0) is not None
                    or _BAD_VALUE.search(value) is not None
                    or value[:1] in _WHITESPACE or value[-1:] in _WHITESPACE):
                return MALFORMED
            if name[:1] == b":":
                if regular or name not in _PSEUDO_REQUEST:
                    return MALFORMED  # unknown pseudo-header, or one after a regular field
                if name == b":method":
                    if stream.method:
                        return MALFORMED
                    stream.method = value
                elif name == b":path":
                    if stream.url:
                        return MALFORMED
                    stream.url = value
                elif name == b":authority":
                    if authority is not None:
                        return MALFORMED
                    authority = value
                elif name == b":scheme":
                    if scheme:
                        return MALFORMED
                    scheme = value
                continue
            regular = True
            if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
                return MALFORMED
            entry = stream.headers.get(name)
            if entry is None:
                stream.headers[name] = [name, value, len(stream.flat_headers)]
                stream.flat_headers += [name, value]
            else:  # HTTP/2 may split cookies over several fields (RFC 9113 8.2.3)
                entry[1] += (b"; " if name == b"cookie" else b", ") + value
                stream.flat_headers[entry[2] + 1] = entry[1]
        if size > limits.max_header_size:
            return 431
        if authority is not None and b"host" not in stream.headers:
            stream.headers[b"host"] = [b"host", authority, len(stream.flat_headers)]
            stream.flat_headers += [b"host", authority]
        stream.head_only = stream.method == b"HEAD"
        if stream.method == b"CONNECT":
            return 501
        if not stream.method or not stream.url or not scheme:
            return MALFORMED
        if scheme not in (b"https", b"http"):
            return 501
        url = stream.url
        if len(url) > limits.max_request_line:
            return 414
        if url[:1] != b"/":
            if not (stream.method == b"OPTIONS" and url == b"*"):
                return 400
            url = b"/"
        path, _, stream.query = url.partition(b"?")
        stream.path = path.partition(b"#")[0]
        length = stream.header(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400
            stream.content_length = int(length)
            if stream.content_length > limits.max_body_size:
                return 413
        return 0

    def _on_data(self, event: ng.DataReceived) -> None:
        # The connection window re-opens at once (nghttp2 does it); the stream's only as its body
        # moves on.
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.closed:
            return
        data = event.data
        stream.body_size += len(data)
        stream.window_bytes += len(data)
        stream.unacked += event.flow_controlled_length
        limit = stream.content_length if stream.content_length is not None else self.limits.max_body_size
        if stream.body_size > limit:
            if stream.content_length is not None:  # more than it announced: a broken request
                self.reset(stream, ErrorCodes.PROTOCOL_ERROR)
            else:
                self.respond_simple(stream, 413)
            return
        if stream.responded or stream.response_started:
            self.ack_body(stream)  # answered already (an error): read and drop the rest
            return
        ex = stream.exchange
        if ex is not None:
            ex.send(wire.encode_body(data))
            if ex.channel is not None:
                self.ack_body(stream)
        else:
            stream.body.append(data)
            if stream.content_length is None:
                self.ack_body(stream)  # collected whole (bounded by max_body_size), like chunked

    def _on_body_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed:
            return
        stream.body_complete = True
        if stream.exchange is not None:
            stream.exchange.send(wire.BODY_END_FRAME)
        elif stream.chunked and not stream.response_started:
            self._dispatch(stream)  # the collected body is complete: now PHP runs with its length
        if stream.responded:
            self._forget(stream)

    def _on_reset(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        now = self.loop.time()
        resets = self.resets
        resets.append(now)
        while resets and resets[0] < now - RESET_WINDOW:
            resets.popleft()
        self._abandon(stream)
        self._forget(stream)
        if len(resets) > 2 * self.limits.max_streams:
            log.warning("HTTP/2 client %s reset %d streams within %g s (rapid reset); closing the "
                        "connection", self._peer(), len(resets), RESET_WINDOW)
            self.h2.terminate(ErrorCodes.ENHANCE_YOUR_CALM, self.last_stream_id)  # type: ignore[union-attr]
            self._close()

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self, stream: Http2Stream) -> None:
        router = self.ctx.router
        hot = router.hot
        # As in HTTP/1.1: a plain GET of a small file comes from memory, without routing.
        if hot is not None and stream.method == b"GET" and b"range" not in stream.headers:
            entry = hot.get(stream.path)
            if entry is not None:
                self._send_hot(stream, entry)
                return
        else:
            hot = None
        route = router.resolve(stream.path, stream.query)
        if type(route) is PhpScript:
            if stream.content_length is None and not stream.body_complete:
                stream.chunked = True  # no length: collect the body, then run PHP with one
                return
            self._start_php(stream, route)
        elif type(route) is StaticFile:
            entry = hot.load(stream.path, route) if hot is not None else None
            if entry is not None:
                self._send_hot(stream, entry)
            else:
                self._serve_static(stream, route)
        elif type(route) is Redirect:
            location = dispatch.absolute_url(self, stream, route.location)
            self.respond_simple(stream, 301, [(b"location", location)])
        else:
            self.respond_simple(stream, route.status)

    def _start_php(self, stream: Http2Stream, route: PhpScript) -> None:
        params = dispatch.request_params(self, stream, route)
        frames = [wire.encode_request(params, dispatch.php_headers(self, stream), self.conn_params)]
        if stream.body:
            frames.extend(wire.encode_body(b) for b in stream.body)
            stream.body = []
        if stream.body_complete:
            frames.append(wire.BODY_END_FRAME)
        stream.php_deadline = -self.ctx.config.server.request_timeout
        exchange = Exchange(frames, stream, lambda ex: self._php_started(stream))
        stream.exchange = exchange
        if not self.ctx.pool.submit(exchange):
            stream.exchange = None
            exchange.cancelled = True
            log.warning("all PHP workers busy and %d requests queued; answering 503", self.limits.max_queue)
            self.respond_simple(stream, 503, [(b"retry-after", b"1")])

    def _php_started(self, stream: Http2Stream) -> None:
        """A worker took the stream's request: the body held for it went along; re-open."""
        ex = stream.exchange
        if ex is not None and ex.channel is not None:
            stream.worker = ex.channel.pid
        if not stream.closed:
            self.ack_body(stream)
            self._write()

    def ack_body(self, stream: Http2Stream) -> None:
        n, stream.unacked = stream.unacked, 0
        if n and not stream.closed and not stream.body_complete:
            self.h2.consume(stream.stream_id, n)  # type: ignore[union-attr]
            self._write()

    def _serve_static(self, stream: Http2Stream, route: StaticFile) -> None:
        headers = {name: entry[1] for name, entry in stream.headers.items()}
        resp = serve_static(stream.method, headers, route)
        head = _front_headers(resp.status) + [(name.lower(), value) for name, value in resp.headers]
        no_body = stream.head_only or (resp.file_path is None and not resp.body)
        self.send_response_head(stream, head, end=no_body)
        if no_body:
            return
        if resp.file_path is not None:
            try:
                fd = os.open(resp.file_path, os.O_RDONLY)
            except OSError:
                self.reset(stream, ErrorCodes.INTERNAL_ERROR)
                return
            stream.file = (fd, resp.offset, resp.count)
        else:
            stream.out.append(resp.body)
            stream.out_size = len(resp.body)
        stream.end_after = True
        self.flush_stream(stream)

    def _send_hot(self, stream: Http2Stream, entry: HotFile) -> None:
        """A GET answered from the hot-file cache: the header list is built but for :status and date."""
        headers, body = entry.http2(stream.header(b"if-none-match"), stream.header(b"if-modified-since"))
        self.send_response_head(stream, headers, end=not body)
        if body:
            stream.out.append(body)
            stream.out_size = len(body)
            stream.end_after = True
            self.flush_stream(stream)

    # -- output ------------------------------------------------------------------------------
    def send_response_head(self, stream: Http2Stream, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        if stream.closed:
            return
        stream.response_started = True
        stream.status = int(headers[0][1])
        stream.php_deadline = 0.0 if end else stream.php_deadline
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end)  # type: ignore[union-attr]
        except (ng.StreamClosedError, ng.ProtocolError):
            self._abandon(stream)
            self._forget(stream)
            return
        if end:
            self._finished(stream)
        self._write()

    def send_informational(self, stream: Http2Stream, status: int, links: list[bytes]) -> None:
        try:
            self.h2.send_informational(  # type: ignore[union-attr]
                stream.stream_id, [(b":status", b"%d" % status)] + [(b"link", link) for link in links])
        except (ng.StreamClosedError, ng.ProtocolError):
            return
        self._write()

    def respond_simple(self, stream: Http2Stream, status: int,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A small error/redirect response from the front itself."""
        if stream.response_started or stream.closed:
            return
        if stream.exchange is not None:
            self._abandon(stream, keep_open=True)
        full = error_body(status)
        body = b"" if stream.head_only else full
        headers = [*_front_headers(status), (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", b"%d" % len(full)), *(extra or [])]
        self.send_response_head(stream, headers, end=not body)
        if body:
            stream.out.append(body)
            stream.out_size = len(body)
            stream.end_after = True
            self.flush_stream(stream)

    def flush_stream(self, stream: Http2Stream, write: bool = True) -> None:
        """Hand `stream`'s response to nghttp2, which frames it as the client's windows allow. A
        static file is read on only while less than HIGH_WATER of it waits there."""
        if stream.closed or not stream.response_started:
            return
        session: ng.Session = self.h2  # type: ignore[assignment]
        sid = stream.stream_id
        out = stream.out
        pushed = False
        try:
            while True:
                if not out and stream.file is not None and session.pending(sid) < HIGH_WATER:
                    self._read_file(stream)
                    if stream.closed:
                        return
                if not out:
                    break
                chunk = out.popleft()
                stream.out_size -= len(chunk)
                stream.sent += len(chunk)
                last = stream.end_after and not out and stream.file is None
                session.send_data(sid, chunk, end_stream=last)  # END_STREAM on the last DATA frame
                pushed = True
                if last:
                    self._finished(stream)
                    break
            if not stream.responded and stream.end_after and not out and stream.file is None:
                session.end_stream(sid)  # no data left to carry END_STREAM
                pushed = True
                self._finished(stream)
        except (ng.StreamClosedError, ng.ProtocolError):
            self._abandon(stream)
            self._forget(stream)
        self._worker_backpressure(stream)
        if write and pushed:
            self._write()

    def _read_file(self, stream: Http2Stream) -> None:
        fd, offset, remaining = stream.file  # type: ignore[misc]
        chunk = os.pread(fd, min(FILE_CHUNK, remaining), offset) if remaining else b""
        if remaining and not chunk:  # the file shrank under us: the promised length cannot be met
            self._close_file(stream)
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
            return
        remaining -= len(chunk)
        if chunk:
            stream.out.append(chunk)
            stream.out_size += len(chunk)
        if remaining:
            stream.file = (fd, offset + len(chunk), remaining)
        else:
            self._close_file(stream)

    @staticmethod
    def _close_file(stream: Http2Stream) -> None:
        if stream.file is not None:
            os.close(stream.file[0])
            stream.file = None

    def _worker_backpressure(self, stream: Http2Stream) -> None:
        """Pause the stream's PHP worker while its response waits for the client's window."""
        ex = stream.exchange
        channel = ex.channel if ex is not None else None
        if channel is None:
            return
        waiting = self.h2.pending(stream.stream_id)  # type: ignore[union-attr]
        if waiting > HIGH_WATER and not stream.paused_worker:
            stream.paused_worker = True
            channel.pause_reading()
        elif waiting <= HIGH_WATER // 2 and stream.paused_worker:
            stream.paused_worker = False
            channel.resume_reading()

    def _finished(self, stream: Http2Stream) -> None:
        """The response is complete (END_STREAM sent)."""
        stream.responded = True
        seconds = self.loop.time() - stream.started
        self.ctx.stats.record(stream.status, seconds)
        if self.ctx.access is not None:
            self.ctx.access.write(self.peer_ip, stream.method, stream.url, "HTTP/2.0", stream.status,
                                  stream.sent, stream.header(b"referer"), stream.header(b"user-agent"),
                                  seconds, stream.worker)
        stream.php_deadline = 0.0
        if not stream.body_complete:
            # answered before the body was read (an error): stop the upload (RFC 9113 8.1)
            self._abandon(stream)
            self._flush_output()  # the response first: nghttp2 would send the RST_STREAM before it
            with contextlib.suppress(ng.StreamClosedError, ng.ProtocolError):
                self.h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)  # type: ignore[union-attr]
        self._forget(stream)

    def reset(self, stream: Http2Stream, code: int) -> None:
        self._abandon(stream)
        with contextlib.suppress(ng.StreamClosedError, ng.ProtocolError):
            self.h2.reset_stream(stream.stream_id, code)  # type: ignore[union-attr]
        self._forget(stream)
        self._write()

    def _abandon(self, stream: Http2Stream, keep_open: bool = False) -> None:
        """The stream ends without its PHP answer: let the worker go (as HTTP/1.1 does when its
        client leaves: mid-response the worker's channel is closed, so PHP sees the abort)."""
        ex = stream.exchange
        stream.exchange = None
        if ex is not None and not ex.cancelled:
            channel = ex.channel
            if stream.response_started and channel is not None and channel.exchange is ex:
                channel.close()  # the worker is still writing this response
            ex.cancel()
            if not stream.body_complete:
                ex.send(wire.BODY_END_FRAME)
        self._close_file(stream)
        if not keep_open:
            stream.closed = True
            stream.out.clear()
            stream.out_size = 0

    def _forget(self, stream: Http2Stream) -> None:
        stream.closed = stream.closed or stream.responded
        if (stream.responded or stream.closed) and self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        if not self.streams:
            self.idle_since = None  # the sweeper starts the keep-alive clock
            if self.goaway_sent or self.ctx.draining:
                self._write()
                self._close()

    def _write(self) -> None:
        """Send what nghttp2 has queued, once per turn of the event loop: a burst of responses
        from the workers becomes one TLS write instead of one per frame."""
        if not self.write_scheduled:
            self.write_scheduled = True
            self.loop.call_soon(self._flush_output)

    def _flush_output(self) -> None:
        self.write_scheduled = False
        session = self.h2
        transport = self.transport
        if session is None or transport is None or transport.is_closing() or self.write_paused:
            return  # paused: the bytes wait in nghttp2, where backpressure sees them
        try:
            data = session.data_to_send()
        except ng.ProtocolError as e:
            log.info("HTTP/2 error towards %s: %s; closing", self._peer(), e)
            self.closing = True
            transport.close()
            return
        if data:
            transport.write(data)
        events = session.take_events()  # a stream nghttp2 reset on its own while sending
        if events:
            self._handle(events)
        if self._more_room or data:
            # the client's windows moved, or bytes left nghttp2: files read on, workers resume
            self._more_room = False
            for stream in list(self.streams.values()):
                if stream.file is not None or stream.paused_worker:
                    self.flush_stream(stream)
        if not session.want_read() and not session.want_write() and not self.closing:
            self._close()

    # -- timers (called by the front's sweeper) ----------------------------------------------
    def check_deadline(self, now: float) -> None:
        if self.closing:
            return
        if not self.streams:
            if self.idle_since is None:
                self.idle_since = now
            elif now - self.idle_since >= self.limits.keepalive_timeout:
                self.shutdown()
            return
        for stream in list(self.streams.values()):
            deadline = stream.php_deadline
            if deadline < 0:
                stream.php_deadline = now - deadline
            elif deadline and now >= deadline:
                stream.php_deadline = 0.0
                self._php_timeout(stream)
        self._check_body_windows(now)

    def _check_body_windows(self, now: float) -> None:
        """Slow-body protection per stream, on the same terms as HTTP/1.1: in every body_timeout
        window a body must advance by body_min_rate x body_timeout bytes (unless we are the
        ones holding it back)."""
        if not self._body_check_at:
            self._body_check_at = now + self.limits.body_timeout
            return
        if now < self._body_check_at:
            return
        self._body_check_at = now + self.limits.body_timeout
        need = self.limits.body_min_rate * self.limits.body_timeout
        for stream in list(self.streams.values()):
            if stream.body_complete or stream.responded or stream.closed:
                continue
            # its window is (nearly) shut because no worker took the body yet: not its fault
            waiting_on_us = STREAM_WINDOW - stream.unacked < need
            if stream.window_bytes < need and not waiting_on_us:
                log.info("HTTP/2 request body too slow from %s; answering 408", self._peer())
                if stream.response_started:
                    self.reset(stream, ErrorCodes.CANCEL)
                else:
                    self.respond_simple(stream, 408)
            stream.window_bytes = 0

    def _php_timeout(self, stream: Http2Stream) -> None:
        ex = stream.exchange
        if ex is None or stream.responded:
            return
        self.ctx.pool.timed_out(ex, stream.method, stream.url, self.ctx.config.server.request_timeout)
        if stream.response_started:
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
        else:
            self.respond_simple(stream, 504)

    # -- closing -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Drain: GOAWAY now (streams already open finish; newer ones are refused), close when
        the last stream is done. The frame is written by hand: h2's close_connection() would end
        the in-flight streams too."""
        if self.closing:
            return
        if not self.goaway_sent:
            self.goaway_sent = True
            self.h2.goaway(self.last_stream_id)  # type: ignore[union-attr]
            self._flush_output()
        if not self.streams:
            self._close()

    def _close(self) -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        self._flush_output()  # what nghttp2 still holds (a GOAWAY, the last responses)
        self.transport.close()
        # done for the drain's purposes now: a TLS close waits on the client's close_notify
        self.ctx.connection_closed(self)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"
