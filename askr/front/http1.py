"""HTTP/1.1 on one client connection: httptools parsing, limits, pipelining, keep-alive, streaming.

Requests on a connection are answered strictly in order: only the first request in `queue` is
active; pipelined ones wait (their bodies buffered, bounded by pausing the socket). A PHP request is
handed to a worker as soon as its head is in, and a Content-Length body streams to the worker as
it arrives; a chunked body is collected first (like nginx) so PHP gets a real CONTENT_LENGTH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools

from askr.bridge import wire
from askr.bridge.pool import Exchange
from askr.front import dispatch
from askr.front.hotfiles import HotFile
from askr.front.responses import DATE, SERVER_HEADER, cgi_status_line, error_body, error_response, status_line
from askr.front.router import PhpScript, Redirect, Refused, StaticFile
from askr.front.static import serve_static

if TYPE_CHECKING:
    from askr.front.server import FrontContext

log = logging.getLogger("askr.front")

HIGH_WATER = 256 * 1024  # bytes buffered towards a peer before we stop reading from the other side
NO_BODY_STATUS = frozenset((204, 304))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SINGLETONS = frozenset((b"host", b"content-length"))
# Response headers from PHP that the front manages itself (framing, connection, Date, Server), and
# the worker's CGI Status line that carries PHP's own reason phrase.
_MANAGED_HEADER = re.compile(
    rb"(?:^|\n)(?:content-length|connection|transfer-encoding|date|server|status):", re.I)
_VERSIONS = frozenset(("1.1", "1.0"))
LINGER_SECONDS = 5.0  # how long to drain a client's unread input after an error response
SENDFILE_CHUNK = 1024 * 1024  # per sendfile call: the loop gets a turn between chunks


class _Reject(Exception):
    """Raised inside a parser callback to answer `status` and close the connection."""

    def __init__(self, status: int):
        self.status = status


class Request:
    __slots__ = (
        "body", "body_complete", "body_size", "chunked", "content_length", "dispatched", "exchange",
        "expect_continue", "flat_headers", "headers", "keep_alive", "method", "path", "query", "reject",
        "responded", "sent", "started", "status", "url", "version", "window_bytes", "worker",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, list] = {}  # lower name -> [original name, value, index in flat]
        self.flat_headers: list[bytes] = []  # [name, value, ...] as PHP gets them (names unique)
        self.method = b""
        self.path = b""
        self.query = b""
        self.version = "1.1"
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.window_bytes = 0
        self.body_complete = False
        self.dispatched = False  # handed to a worker (or answered by the front)
        self.responded = False  # response fully written
        self.exchange: Exchange | None = None
        self.reject = 0  # answer this status and close when the request's turn comes
        self.started = 0.0  # loop time its head was complete (for the duration metric)
        self.status = 0  # the response's status, once its head is written
        self.sent = 0  # response body bytes (access log)
        self.worker = 0  # pid of the PHP worker that answered (access log)

    def header(self, lower_name: bytes) -> bytes | None:
        entry = self.headers.get(lower_name)
        return entry[1] if entry else None

    @property
    def expects_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class Http1Connection(asyncio.Protocol):
    """One client connection; also the ResponseSink of its active PHP exchange."""

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.limits = ctx.config.limits
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.header_bytes = 0
        self.header_count = 0
        # Header/keep-alive deadline, checked by the front's sweeper (a timer handle per request
        # would cost more than the rest of the request's bookkeeping).
        self.deadline = 0.0
        self.on_deadline: Callable[[], None] | None = None
        self.php_deadline = 0.0  # [server] request_timeout of the active PHP exchange (same scheme)
        self.body_timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.lingering = False
        self.read_paused = False
        self.write_paused = False
        self.write_resumed: asyncio.Event | None = None
        self.buffered = 0  # body bytes held for requests not yet handed to a worker
        self.conn_params = b""  # this connection's fixed CGI params, already encoded
        self.server_addr = b""
        self.origin = (b"http", b"")  # (REQUEST_SCHEME, SERVER_PORT) of this connection
        self.trusted_peer: bool | None = None  # [server] trusted_proxies: is this peer one?
        self.peer_ip = "-"
        # response state of the active PHP exchange
        self.resp_mode = 0  # 0 = none, 1 = content-length/identity, 2 = chunked, 3 = close-delimited
        self.resp_head_only = False
        self.resp_close = False

    # -- connection lifecycle ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        dispatch.connection_made(self, transport, HIGH_WATER)
        self._arm(self.limits.keepalive_timeout, self._idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connection_closed(self)
        self._cancel_timers()
        if self.queue and self.resp_mode != 0:
            # The client left mid-response: close the worker's channel, as nginx closes its
            # upstream, so PHP sees the abort on its next write (an endless stream would
            # otherwise run on for nobody). The worker exits and is replaced.
            ex = self.queue[0].exchange
            if ex is not None and ex.channel is not None and ex.channel.exchange is ex:
                ex.channel.close()
        for req in self.queue:
            self._cancel_exchange(req)
        self.queue.clear()
        if self.write_resumed is not None:
            self.write_resumed.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self._active_exchange()
        if ex is not None and ex.channel is not None:
            ex.channel.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self._active_exchange()
        if ex is not None and ex.channel is not None:
            ex.channel.resume_reading()
        if self.write_resumed is not None:
            self.write_resumed.set()

    def _active_exchange(self) -> Exchange | None:
        return self.queue[0].exchange if self.queue else None

    @staticmethod
    def _cancel_exchange(req: Request) -> None:
        ex = req.exchange
        if ex is not None and not req.responded:
            req.exchange = None
            ex.cancel()
            if not req.body_complete:
                ex.send(wire.BODY_END_FRAME)  # unblock the worker; its answer is discarded

    # -- timers ------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        # A negative deadline is "delay seconds from when the sweeper first sees it": no clock
        # read per request, at the cost of up to one SWEEP_INTERVAL of slack.
        self.deadline = -delay
        self.on_deadline = callback

    def check_deadline(self, now: float) -> None:
        """Called by the sweeper about every SWEEP_INTERVAL seconds."""
        deadline = self.deadline
        if deadline < 0:
            self.deadline = now - deadline
        elif deadline and now >= deadline and self.on_deadline is not None:
            self.deadline = 0.0
            self.on_deadline()
        php_deadline = self.php_deadline
        if php_deadline < 0:
            self.php_deadline = now - php_deadline
        elif php_deadline and now >= php_deadline:
            self.php_deadline = 0.0
            self._php_timeout()

    def _cancel_timers(self) -> None:
        self.deadline = 0.0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _php_timeout(self) -> None:
        """The active PHP request ran past request_timeout: 504 (or, mid-response, a cut
        connection), and the master kills the worker, which cannot be interrupted otherwise."""
        req = self.queue[0] if self.queue else None
        ex = req.exchange if req is not None else None
        if req is None or ex is None or req.responded:
            return
        self.ctx.pool.timed_out(ex, req.method, req.url, self.ctx.config.server.request_timeout)
        self._cancel_exchange(req)
        if self.resp_mode == 0:
            self._respond_simple(req, 504)
        else:
            self._abort()

    def _idle_timeout(self) -> None:
        if not self.queue and self.parsing is None:
            self._close()

    def _header_timeout(self) -> None:
        self._fail(408)

    def _body_window(self) -> None:
        self.body_timer = None
        req = self.parsing
        if req is None or req.body_complete or self.closing:
            return
        if not self.read_paused and req.window_bytes < self.limits.body_min_rate * self.limits.body_timeout:
            log.info("request body too slow from %s; answering 408", self.peer_text())
            self._fail(408)
            return
        req.window_bytes = 0
        self.body_timer = self.loop.call_later(self.limits.body_timeout, self._body_window)

    def peer_text(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # -- input -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after an error: discard what the client still sends
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _Reject):
                self._fail(cause.status)
            else:
                log.exception("internal error while parsing a request", exc_info=cause)
                self._fail(500)
        except httptools.HttpParserUpgrade:
            # No protocol switches here (no WebSockets to PHP): answer the request, then close.
            if self.queue:
                self.queue[-1].keep_alive = False
            self._stop_reading()
        except httptools.HttpParserError:
            self._fail(400)

    def on_message_begin(self) -> None:
        self.parsing = Request()
        self.header_bytes = 0
        self.header_count = 0
        if not self.queue:
            self._arm(self.limits.header_timeout, self._header_timeout)

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        req.url += url  # type: ignore[union-attr]
        if len(req.url) > self.limits.max_request_line:  # type: ignore[union-attr]
            raise _Reject(414)
        if b"\0" in url:
            raise _Reject(400)  # NUL separates fields on the worker channel

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value) + 4
        if self.header_count > self.limits.max_headers or self.header_bytes > self.limits.max_header_size:
            raise _Reject(431)
        if b"\0" in value or b"\0" in name:
            raise _Reject(400)
        headers = self.parsing.headers  # type: ignore[union-attr]
        lower = name.lower()
        entry = headers.get(lower)
        flat = self.parsing.flat_headers  # type: ignore[union-attr]
        if entry is None:
            headers[lower] = [name, value, len(flat)]
            flat.append(name)
            flat.append(value)
        elif lower in _SINGLETONS:
            raise _Reject(400)  # RFC 9112 3.2 / 6.3: a second Host or Content-Length is an attack
        else:
            entry[1] += (b"; " if lower == b"cookie" else b", ") + value
            flat[entry[2] + 1] = entry[1]

    def on_headers_complete(self) -> None:
        req: Request = self.parsing  # type: ignore[assignment]
        parser = self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        if req.version not in _VERSIONS:
            raise _Reject(505)
        url = req.url
        if url[:1] != b"/":
            if req.method == b"OPTIONS" and url == b"*":
                url = b"/"
            else:
                try:
                    url = httptools.parse_url(url).path or b"/"  # absolute-form target
                except httptools.HttpParserInvalidURLError:
                    raise _Reject(400) from None
        path, _, query = url.partition(b"?")
        req.path = path.partition(b"#")[0]
        req.query = query
        headers = req.headers
        if req.version == "1.1" and b"host" not in headers:
            raise _Reject(400)
        te = headers.get(b"transfer-encoding")
        if te is not None:
            if te[1].strip().lower() != b"chunked":
                raise _Reject(501 if b"chunked" not in te[1].lower() else 400)
            req.chunked = True
        cl = headers.get(b"content-length")
        if cl is not None:
            value = cl[1].strip()
            if not value.isdigit():
                raise _Reject(400)
            req.content_length = int(value)
            if req.content_length > self.limits.max_body_size:
                raise _Reject(413)
        expect = headers.get(b"expect")
        if expect is not None:
            if expect[1].lower() != b"100-continue":
                raise _Reject(417)
            req.expect_continue = req.expects_body
        if not self.queue:
            self.deadline = 0.0
        req.started = self.loop.time()
        self.queue.append(req)
        if req.expects_body:
            self.body_timer = self.loop.call_later(self.limits.body_timeout, self._body_window)
        else:
            req.body_complete = True
        if len(self.queue) == 1:
            self._activate(req)

    def on_body(self, body: bytes) -> None:
        req: Request = self.parsing  # type: ignore[assignment]
        size = len(body)
        req.body_size += size
        req.window_bytes += size
        if req.chunked and req.body_size > self.limits.max_body_size:
            raise _Reject(413)
        ex = req.exchange
        if ex is not None:
            ex.send(wire.encode_body(body))
            if ex.channel is None:
                self.buffered += size
                if self.buffered > HIGH_WATER:
                    self._pause_reading()  # resumed when a worker takes the exchange
            return
        if req.responded:
            return  # answered without reading the body (e.g. static): discard
        req.body.append(body)
        self.buffered += size
        if self.buffered > HIGH_WATER:
            self._pause_reading()

    def on_message_complete(self) -> None:
        req: Request = self.parsing  # type: ignore[assignment]
        self.parsing = None
        if not req.expects_body:
            return
        req.body_complete = True
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        ex = req.exchange
        if ex is not None:
            ex.send(wire.BODY_END_FRAME)
        elif req.chunked and self.queue and self.queue[0] is req and not req.dispatched:
            self._dispatch(req)
        if not req.keep_alive:
            self._stop_reading()

    # -- flow control ------------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.closing and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def _stop_reading(self) -> None:
        """No more requests on this connection will be read (Connection: close, upgrade)."""
        self._pause_reading()

    # -- dispatch ----------------------------------------------------------------------------
    def _activate(self, req: Request) -> None:
        """`req` became the first in line: answer it (or start it on a worker)."""
        if req.reject:
            self._respond_simple(req, req.reject, close=True)
            return
        if req.expect_continue and not req.body_complete:
            self.transport.write(CONTINUE)  # type: ignore[union-attr]
        if req.chunked and not req.body_complete:
            return  # dispatched at on_message_complete
        self._dispatch(req)

    def _dispatch(self, req: Request) -> None:
        req.dispatched = True
        self.resp_mode = 0
        router = self.ctx.router
        hot = router.hot
        # A small file asked for with a plain GET comes from memory, without routing (the entry
        # replays this path's route, checked again every second); anything else goes the long way.
        if hot is not None and req.method == b"GET" and b"range" not in req.headers:
            entry = hot.get(req.path)
            if entry is not None:
                self._send_hot(req, entry)
                return
        else:
            hot = None
        route = router.resolve(req.path, req.query)
        if type(route) is PhpScript:
            self._start_php(req, route)
        elif type(route) is StaticFile:
            entry = hot.load(req.path, route) if hot is not None else None
            if entry is not None:
                self._send_hot(req, entry)
            else:
                self._serve_static(req, route)
        elif type(route) is Redirect:
            location = dispatch.absolute_url(self, req, route.location)
            self._respond_simple(req, 301, b"location: " + location + b"\r\n")
        else:
            assert type(route) is Refused
            self._respond_simple(req, route.status)

    def _start_php(self, req: Request, route: PhpScript) -> None:
        params = dispatch.request_params(self, req, route)
        frames = [wire.encode_request(params, dispatch.php_headers(self, req), self.conn_params)]
        if req.body:
            frames.extend(wire.encode_body(b) for b in req.body)
            self.buffered -= sum(map(len, req.body))
            req.body = []
            self._resume_reading()
        if req.body_complete:
            frames.append(wire.BODY_END_FRAME)
        self.resp_head_only = req.method == b"HEAD"
        self.resp_close = not req.keep_alive
        self.php_deadline = -self.ctx.config.server.request_timeout
        exchange = Exchange(frames, self, self._php_started)
        req.exchange = exchange
        if not self.ctx.pool.submit(exchange):
            req.exchange = None
            exchange.cancelled = True
            log.warning("all PHP workers busy and %d requests queued; answering 503", self.limits.max_queue)
            self._respond_simple(req, 503, b"retry-after: 1\r\n")

    def _serve_static(self, req: Request, route: StaticFile) -> None:
        headers = {name: entry[1] for name, entry in req.headers.items()}
        resp = serve_static(req.method, headers, route)
        req.status = resp.status
        req.sent = len(resp.body) if resp.file_path is None else resp.count
        head = [status_line(resp.status), DATE.get(), SERVER_HEADER]
        head.extend(b"%s: %s\r\n" % pair for pair in resp.headers)
        close = not req.keep_alive or self.ctx.draining
        if close:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if resp.file_path is None:
            head.append(resp.body)
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self._finish(req, close)
        else:
            self.resp_mode = 1
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self.ctx.loop.create_task(self._send_file(req, resp.file_path, resp.offset, resp.count, close))

    def _send_hot(self, req: Request, entry: HotFile) -> None:
        """A GET answered from the hot-file cache: the same bytes _serve_static would send."""
        close = not req.keep_alive or self.ctx.draining
        req.status, data, req.sent = entry.http1(req.header(b"if-none-match"),
                                                 req.header(b"if-modified-since"), close)
        self.transport.write(data)  # type: ignore[union-attr]
        self._finish(req, close)

    async def _send_file(self, req: Request, path: str, offset: int, count: int, close: bool) -> None:
        """Stream a large static file with back-pressure (no whole-file reads): sendfile on
        cleartext connections, else (and for whatever sendfile leaves) pread + write."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self._abort()
            return
        try:
            sock = self._sendfile_socket()
            if sock is not None:
                offset, count = await self._sendfile(fd, sock, offset, count)
            while count > 0 and not self.closing:
                chunk = os.pread(fd, min(count, 256 * 1024), offset)
                if not chunk:
                    break
                self.transport.write(chunk)  # type: ignore[union-attr]
                offset += len(chunk)
                count -= len(chunk)
                if self.write_paused:
                    self.write_resumed = asyncio.Event()
                    await self.write_resumed.wait()
                    self.write_resumed = None
        finally:
            os.close(fd)
        if count > 0:
            self._abort()  # the file shrank under us: the promised length cannot be met
        elif not self.closing:
            self._finish(req, close)

    def _sendfile_socket(self) -> int | None:
        """The socket's fd when the kernel may copy the file itself: plain TCP, not TLS (whose
        bytes must pass through OpenSSL) and not a transport that hides its socket."""
        transport = self.transport
        if transport is None or transport.get_extra_info("ssl_object") is not None:
            return None
        sock = transport.get_extra_info("socket")
        fileno = getattr(sock, "fileno", None)
        fd = fileno() if fileno is not None else -1
        return fd if fd >= 0 else None

    async def _sendfile(self, fd: int, sock_fd: int, offset: int, count: int) -> tuple[int, int]:
        """os.sendfile from `fd` into the connection; returns the (offset, count) still unsent.

        uvloop has no loop.sendfile, so this writes to the socket behind the transport's back,
        which is safe only while the transport has nothing buffered: uvloop writes at once when it
        can, so with an empty buffer the head is already in the kernel and the file lands after
        it. Lowering the write limits to 0 makes resume_writing mean exactly "buffer empty".
        Nothing else writes meanwhile: a connection answers one request at a time, and pipelined
        ones wait in `queue` (reading stays on, so a client that leaves is seen).

        We send through a dup() of the fd: uvloop refuses add_writer on a transport's own fd,
        and should the transport close under us, the dup still names this connection rather
        than whatever socket reuses the number.
        """
        transport = self.transport
        assert transport is not None
        transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        dup = -1
        try:
            while transport.get_write_buffer_size() and not self.closing:
                await self._wait_writable(None)
            dup = os.dup(sock_fd)
            while count > 0 and not self.closing and not transport.is_closing():
                try:
                    sent = os.sendfile(dup, fd, offset, min(count, SENDFILE_CHUNK))
                except BlockingIOError:  # the socket buffer is full: a slow reader
                    if not await self._wait_writable(dup):
                        break  # cannot poll it: pread + write send the rest
                    continue
                except OSError:  # EPIPE, ECONNRESET: the client left mid-file
                    self._abort()
                    break
                if sent == 0:
                    break  # the file shrank: the caller cuts the connection
                offset += sent
                count -= sent
                if count:
                    await asyncio.sleep(0)  # other connections get a turn between chunks
        except OSError:  # no fd left for the dup: pread + write send it all
            pass
        finally:
            if dup >= 0:
                os.close(dup)
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        return offset, count

    async def _wait_writable(self, dup: int | None) -> bool:
        """Until the transport's buffer is empty (dup None), or the socket can take more; False
        if the socket cannot be polled. Also woken by connection_lost; a poll that misses an
        error event gives up after a second, and the caller's next try sees the error."""
        event = self.write_resumed = asyncio.Event()
        if dup is not None:
            try:
                self.loop.add_writer(dup, event.set)
            except (OSError, RuntimeError, ValueError):
                self.write_resumed = None
                return False
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)
        finally:
            if dup is not None:
                self.loop.remove_writer(dup)
            self.write_resumed = None
        return True

    def _php_started(self, exchange: Exchange) -> None:
        """A worker took the exchange: the body it buffered is on its way."""
        if self.queue and self.queue[0].exchange is exchange and exchange.channel is not None:
            self.queue[0].worker = exchange.channel.pid
        if self.buffered:
            self.buffered = 0
            self._resume_reading()

    def _respond_simple(self, req: Request, status: int, extra: bytes = b"", close: bool = False) -> None:
        close = close or not req.keep_alive or self.ctx.draining or not req.body_complete
        req.status = status
        req.sent = 0 if req.method == b"HEAD" else len(error_body(status))
        self.transport.write(  # type: ignore[union-attr]
            error_response(status, close, extra, head_only=req.method == b"HEAD")
        )
        self._finish(req, close)

    def _finish(self, req: Request, close: bool) -> None:
        """The active request's response is fully written."""
        req.responded = True
        seconds = self.loop.time() - req.started if req.started else 0.0
        self.ctx.stats.record(req.status, seconds)
        if self.ctx.access is not None:
            self.ctx.access.write(self.peer_ip, req.method, req.url, "HTTP/" + req.version, req.status,
                                  req.sent, req.header(b"referer"), req.header(b"user-agent"), seconds,
                                  req.worker)
        self.php_deadline = 0.0
        if self.queue and self.queue[0] is req:
            self.queue.popleft()
        if close or self.ctx.draining:
            self._close()
            return
        if self.queue:
            self._activate(self.queue[0])
        elif self.parsing is None:
            self._arm(self.limits.keepalive_timeout, self._idle_timeout)
        self._resume_reading()

    # -- ResponseSink (called by the worker channel) ----------------------------------------
    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        req = self.queue[0]
        req.status = status
        head = [status_line(status)]
        has_length = has_date = has_server = False
        close = self.resp_close or self.ctx.draining
        if header_block and _MANAGED_HEADER.search(header_block) is None:
            # Common case: nothing in PHP's headers for us to rewrite; pass them through whole.
            head.append(header_block.replace(b"\n", b"\r\n"))
            head.append(b"\r\n")
            header_lines: list[bytes] = []
        else:
            header_lines = header_block.split(b"\n") if header_block else []
        for line in header_lines:  # only when PHP set a header we manage
            name = line.partition(b":")[0].strip().lower()
            if name == b"content-length":
                has_length = True
                if complete and not self.resp_head_only:
                    continue  # we know the exact length; set it below
            elif name == b"connection":
                if b"close" in line.lower():
                    close = True
                continue  # connection management is ours
            elif name == b"transfer-encoding":
                continue
            elif name == b"date":
                has_date = True
            elif name == b"server":
                has_server = True
            elif name == b"status":  # PHP's own reason phrase (the worker sends it first)
                head[0] = cgi_status_line(status, line)
                continue
            head.append(line)
            head.append(b"\r\n")
        if not has_date:
            head.append(DATE.get())
        if not has_server:
            head.append(SERVER_HEADER)
        no_body = status in NO_BODY_STATUS or status < 200
        if complete:
            data = b"".join(body)
            # HEAD: PHP discards the body itself (SG(request_info).headers_only), so a length
            # computed here would be 0; only a Content-Length the script set is meaningful.
            if not no_body and not self.resp_head_only:
                head.append(b"content-length: %d\r\n" % len(data))
        elif no_body or has_length:
            self.resp_mode = 1
        elif req.version == "1.1":
            self.resp_mode = 2
            head.append(b"transfer-encoding: chunked\r\n")
        else:
            self.resp_mode = 3
            close = True
        if close:
            head.append(b"connection: close\r\n")
        elif req.version == "1.0":
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        self.resp_close = close
        if complete:
            if not self.resp_head_only and not no_body:
                head.append(data)
                req.sent = len(data)
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self._finish(req, close)
            return
        if self.resp_head_only or no_body:
            self.resp_mode = 4  # discard body
        self.transport.write(b"".join(head))  # type: ignore[union-attr]
        if body:
            self.php_body(body, False)

    def php_body(self, body: list[bytes], complete: bool) -> None:
        mode = self.resp_mode
        out: list[bytes] = []
        if mode == 2:
            for part in body:
                if part:
                    out.append(b"%x\r\n" % len(part))
                    out.append(part)
                    out.append(b"\r\n")
            if complete:
                out.append(b"0\r\n\r\n")
        elif mode != 4:
            out = body
        if mode != 4 and self.queue:
            self.queue[0].sent += sum(map(len, body))
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]
        if complete:
            self._finish(self.queue[0], self.resp_close or mode == 3)

    def php_failed(self) -> None:
        req = self.queue[0] if self.queue else None
        if req is None or req.responded:
            return
        req.exchange = None
        if self.resp_mode == 0:
            log.error("PHP worker died while handling %s %s; answering 502",
                      req.method.decode(), req.url.decode("latin-1"))
            self._respond_simple(req, 502)
        else:
            log.error("PHP worker died while streaming %s; aborting the connection",
                      req.url.decode("latin-1"))
            self._abort()

    def php_informational(self, status: int, header_block: bytes) -> None:
        """103 Early Hints from headers_send(103): only HTTP/1.1 clients may get a 1xx, and only
        its Link headers go out (cookies and the like belong to the final response)."""
        req = self.queue[0] if self.queue else None
        if req is None or req.version != "1.1" or self.resp_mode != 0 or status == 101:
            return
        links = [line for line in header_block.split(b"\n") if line[:5].lower() == b"link:"]
        if links:
            self.transport.write(  # type: ignore[union-attr]
                status_line(status) + b"".join(line + b"\r\n" for line in links) + b"\r\n"
            )

    def php_backpressure(self, paused: bool) -> None:
        if paused:
            self._pause_reading()
        else:
            self._resume_reading()

    # -- closing -----------------------------------------------------------------------------
    def _fail(self, status: int) -> None:
        """The request being read broke a rule (or the parser): answer `status` in turn, then close.

        Responses stay in order: if requests ahead of it are still being answered, the error
        waits for its turn; reading stops at once.
        """
        if self.closing:
            return
        self._pause_reading()
        req = self.parsing
        self.parsing = None
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if req is None or req not in self.queue:
            req = req or Request()
            req.reject = status
            req.body_complete = False  # the rest of it is unread: the connection must close
            self.queue.append(req)
            if len(self.queue) == 1:
                self._activate(req)
            return
        if req is not self.queue[0]:
            req.reject = status
            return
        # the failing request is the one being answered
        self._cancel_exchange(req)
        if self.resp_mode == 0 and not req.responded:
            self._respond_simple(req, status, close=True)
        else:
            self._abort()  # mid-response: the only honest signal left is to cut the connection

    def shutdown(self) -> None:
        """Server drain: close now if idle, else after the response in flight."""
        if not self.queue:
            self._close()

    def _close(self) -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        self._cancel_timers()
        if self.parsing is not None or self.read_paused:
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Half-close and drain for a moment, so the client reads our answer instead of a reset
        (closing with unread input makes the kernel send RST, which can destroy the response)."""
        transport = self.transport
        try:
            transport.write_eof()  # type: ignore[union-attr]
        except (NotImplementedError, RuntimeError, OSError):
            transport.close()  # type: ignore[union-attr]
            return
        self.lingering = True
        self.read_paused = False
        transport.resume_reading()  # type: ignore[union-attr]
        self.loop.call_later(LINGER_SECONDS, transport.close)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        if self.lingering and self.transport is not None:
            self.transport.close()
        return False

    def _abort(self) -> None:
        if self.transport is not None:
            self.closing = True
            self._cancel_timers()
            self.transport.abort()
