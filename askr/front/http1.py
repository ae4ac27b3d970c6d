"""HTTP/1.1 on one client connection: httptools parsing, limits, pipelining, keep-alive, framing.

The codec around askr.front.stream: it parses requests into `Request` streams and frames their
answers (Content-Length, chunked or close-delimited; 100 Continue; 103 Early Hints).

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

from askr._hotpath import compose_response, parse_head
from askr.front.responses import (
    DATE,
    INVALID_FIELD_NAME,
    SERVER_HEADER,
    cgi_status_line,
    error_body,
    error_response,
    status_line,
)
from askr.front.stream import Connection, Fields, Stream

if TYPE_CHECKING:
    from askr.bridge.pool import WorkerChannel
    from askr.front.context import FrontContext
    from askr.front.hotfiles import HotResponse
    from askr.front.static import StaticResponse

log = logging.getLogger("askr.front")

HIGH_WATER = Connection.HIGH_WATER  # also: request body bytes held before we stop reading
NO_BODY_STATUS = frozenset((204, 304))
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Response headers from PHP that the front manages itself (framing, connection, Date, Server), and
# the worker's CGI Status line that carries PHP's own reason phrase; in the same pass, a line whose
# name is invalid (responses.INVALID_FIELD_NAME: "X-A : b"), found as an empty name, which the head
# is refused for. One scan: a valid head pays nothing more for the check than this alternative.
# ^ with MULTILINE: half the time of (?:^|\n) on a 100-byte head.
_MANAGED_HEADER = re.compile(
    rb"^(?:(content-length|connection|transfer-encoding|date|server|status):|" + INVALID_FIELD_NAME + rb")",
    re.I | re.M)
# Of those, the ones the front must rewrite line by line. PHP's own Date or Server only stops the
# front from adding its own, so a head with one (every Laravel/Symfony response has a Date) still
# goes out whole, cheaper than the line-by-line path.
_REWRITTEN = frozenset((b"content-length", b"connection", b"transfer-encoding", b"status"))
# A PHP header line that is a bare name, header("Foo"): PHP keeps it, and passed on as it is it
# would not be an HTTP field. nginx sends php-fpm's as "Foo: ", an empty value; so does askr (over
# HTTP/2 such a line is a name and an empty value anyway). compose_response declines such heads.
_BARE_NAME = re.compile(rb"^[^:\n]+$", re.M)
_VERSIONS = frozenset(("1.1", "1.0"))
LINGER_SECONDS = 5.0  # how long to drain a client's unread input after an error response
SENDFILE_CHUNK = 1024 * 1024  # per sendfile call: the loop gets a turn between chunks

# how the active PHP response is framed
NONE, LENGTH, CHUNKED, UNTIL_CLOSE, DISCARD = range(5)


class _Reject(Exception):
    """Raised inside a parser callback to answer `status` and close the connection."""

    def __init__(self, status: int):
        self.status = status


class Request(Stream):
    """A Stream as HTTP/1.x carries it."""

    __slots__ = ("expect_continue", "keep_alive", "reject")

    def __init__(self, conn: Http1Connection) -> None:
        super().__init__(conn, "1.1")
        self.keep_alive = True
        self.expect_continue = False
        self.reject = 0  # answer this status and close when the request's turn comes

    @property
    def expects_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class Http1Connection(Connection):
    """One HTTP/1.x client connection."""

    def __init__(self, ctx: FrontContext):
        super().__init__(ctx)
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.parsing: Request | None = None
        self.header_bytes = 0
        self.header_count = 0
        # Header/keep-alive deadline, checked by the front's sweeper (a timer handle per request
        # would cost more than the rest of the request's bookkeeping).
        self.deadline = 0.0
        self.on_deadline: Callable[[], None] | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.read_paused = False
        self.write_paused = False
        self.write_resumed: asyncio.Event | None = None
        self.buffered = 0  # body bytes held for requests not yet taken by a worker
        # framing of the active request's PHP response
        self.resp_mode = NONE
        self.resp_close = False

    # -- connection lifecycle ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self.limits.keepalive_timeout, self._idle_timeout)

    def requests_in_flight(self) -> int:
        return len(self.queue)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connection_closed(self)
        self._cancel_timers()
        # The client left: the active request's worker is let go (mid-response its channel is
        # closed, so PHP sees the abort), the pipelined ones never start.
        for req in self.queue:
            req.abandon()
            req.closed = True
        self.queue.clear()
        if self.write_resumed is not None:
            self.write_resumed.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        channel = self._active_channel()
        if channel is not None:
            channel.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        channel = self._active_channel()
        if channel is not None:
            channel.resume_reading()
        if self.write_resumed is not None:
            self.write_resumed.set()

    def _active_channel(self) -> WorkerChannel | None:
        ex = self.queue[0].exchange if self.queue else None
        return ex.channel if ex is not None else None

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
        if self.queue and self.queue[0].php_deadline:
            self.queue[0].check_timeout(now)

    def _cancel_timers(self) -> None:
        self.deadline = 0.0
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

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
        limits = self.limits
        if req.body_stalled(limits.body_min_rate * limits.body_timeout, held_back=self.read_paused):
            log.info("request body too slow from %s; answering 408", self.peer_text())
            self._fail(408)
            return
        self.body_timer = self.loop.call_later(limits.body_timeout, self._body_window)

    # -- input -------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # lingering after an error: discard what the client still sends
        queue = self.queue
        # httptools is between messages (and not past a "Connection: close"): plain heads may skip it
        if self.parsing is None and (not queue or queue[-1].keep_alive):
            limits = self.limits
            start = 0
            while (head := parse_head(data, start, limits.max_request_line, limits.max_headers,
                                      limits.max_header_size)) is not None:
                start, method, url, version, headers, flat = head
                req = Request(self)
                req.method = method
                req.url = url
                req.version = version
                req.headers = headers
                req.flat_headers = flat
                req.set_target(url)
                self._queue_request(req)
                if self.closing:
                    return
            if start:
                if start == len(data):
                    return
                data = data[start:]
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
            self._pause_reading()
        except httptools.HttpParserError:
            self._fail(400)

    def on_message_begin(self) -> None:
        self.parsing = Request(self)
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
        if not self.parsing.add_header(name.lower(), name, value):  # type: ignore[union-attr]
            raise _Reject(400)

    def on_headers_complete(self) -> None:
        req: Request = self.parsing  # type: ignore[assignment]
        parser = self.parser
        req.method = parser.get_method()
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        if req.version not in _VERSIONS:
            raise _Reject(505)
        target = req.url
        if target[:1] != b"/":
            if req.method == b"OPTIONS" and target == b"*":
                target = b"/"
            else:
                try:
                    parsed = httptools.parse_url(target)  # absolute-form (RFC 9112 3.2.2)
                except httptools.HttpParserInvalidURLError:
                    raise _Reject(400) from None
                target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        req.set_target(target)
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
            status = req.set_content_length(cl[1])
            if status:
                raise _Reject(status)
        expect = headers.get(b"expect")
        if expect is not None:
            if expect[1].lower() != b"100-continue":
                raise _Reject(417)
            req.expect_continue = req.expects_body
        self._queue_request(req)

    def _queue_request(self, req: Request) -> None:
        """A request's head is in and valid: it waits its turn, and its body (if any) is read."""
        if not self.queue:
            self.deadline = 0.0  # the header timeout (or keep-alive wait) is over
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
        if req.body_data(body) or req.response_started:
            return  # with its worker, or answered without it (e.g. static): dropped
        self.buffered += size
        if self.buffered > HIGH_WATER:
            self._pause_reading()  # resumed when a worker takes the request

    def on_message_complete(self) -> None:
        req: Request = self.parsing  # type: ignore[assignment]
        self.parsing = None
        if not req.keep_alive:
            self._pause_reading()  # no more requests will be read on this connection
        if not req.expects_body:
            return
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        req.body_end()

    # -- flow control ------------------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.closing and self.transport is not None:
            self.read_paused = False
            self.transport.resume_reading()

    def body_taken(self, stream: Stream) -> None:
        if self.buffered:
            self.buffered = 0
            self._resume_reading()

    def body_backpressure(self, stream: Stream, paused: bool) -> None:
        if paused:
            self._pause_reading()
        else:
            self._resume_reading()

    # -- answering ---------------------------------------------------------------------------
    def _activate(self, req: Request) -> None:
        """`req` became the first in line: answer it (or start it on a worker)."""
        self.resp_mode = NONE
        if req.reject:
            req.respond(req.reject)
            return
        if req.expect_continue and not req.body_complete:
            self.transport.write(CONTINUE)  # type: ignore[union-attr]
        req.dispatch()

    def _closes_after(self, req: Request) -> bool:
        return not req.keep_alive or self.ctx.draining

    def send_simple(self, stream: Stream, status: int, extra: Fields) -> None:
        req: Request = stream  # type: ignore[assignment]
        # a body left unread would be taken for the next request: close
        close = self._closes_after(req) or not req.body_complete
        req.response_started = True
        req.sent = 0 if req.method == b"HEAD" else len(error_body(status))
        fields = b"".join(b"%s: %s\r\n" % pair for pair in extra)
        self.transport.write(  # type: ignore[union-attr]
            error_response(status, close, fields, head_only=req.method == b"HEAD"))
        self._finish(req, close)

    def send_static(self, stream: Stream, resp: StaticResponse) -> None:
        req: Request = stream  # type: ignore[assignment]
        req.response_started = True
        req.status = resp.status
        req.sent = len(resp.body) if resp.file_path is None else resp.count
        head = [status_line(resp.status), DATE.get(), SERVER_HEADER]
        head.extend(b"%s: %s\r\n" % pair for pair in resp.headers)
        close = self._closes_after(req)
        if close:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if resp.file_path is None:
            head.append(resp.body)
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self._finish(req, close)
        else:
            self.resp_mode = LENGTH
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self.loop.create_task(self._send_file(req, resp.file_path, resp.offset, resp.count, close))

    def send_hot(self, stream: Stream, entry: HotResponse) -> None:
        req: Request = stream  # type: ignore[assignment]
        close = self._closes_after(req)
        req.response_started = True
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


    def _finish(self, req: Request, close: bool) -> None:
        """The active request's response is fully written."""
        req.finished()
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

    def send_php_head(self, stream: Stream, status: int, header_block: bytes, body: list[bytes],
                      complete: bool) -> None:
        req: Request = stream  # type: ignore[assignment]
        if (complete and req.version == "1.1" and not req.head_only and status >= 200
                and status not in NO_BODY_STATUS and not self._closes_after(req)):
            # The usual answer: all of it here, PHP's header lines to pass through as they are.
            data = compose_response(status_line(status), header_block, DATE.get(), SERVER_HEADER, body)
            if data is not None:
                req.response_started = True
                req.status = status
                req.sent = sum(map(len, body))
                self.resp_close = False
                self.transport.write(data)  # type: ignore[union-attr]
                self._finish(req, False)
                return
        if header_block and _BARE_NAME.search(header_block) is not None:
            header_block = _BARE_NAME.sub(rb"\g<0>: ", header_block)  # header("Foo"): as nginx, "Foo: "
        managed = _MANAGED_HEADER.findall(header_block) if header_block else ()
        if managed:
            names = {name.lower() for name in managed}
            if b"" in names:  # a line with an invalid name
                req.refuse_php_head(header_block)
                return
        req.response_started = True
        req.status = status
        has_length = has_date = has_server = False
        close = self._closes_after(req)
        head_only = req.head_only
        if managed:
            has_date = b"date" in names
            has_server = b"server" in names
            if names.isdisjoint(_REWRITTEN):
                managed = ()  # only Date/Server, which go out as PHP set them (Laravel's Date)
        if header_block and not managed:
            # Nothing in PHP's headers for us to rewrite: they pass through whole.
            head = [status_line(status), header_block.replace(b"\n", b"\r\n"), b"\r\n"]
            header_lines: list[bytes] = []
        else:
            head = [status_line(status)]
            header_lines = header_block.split(b"\n") if header_block else []
        for line in header_lines:  # only when PHP set a header we manage
            name = line.partition(b":")[0].lower()  # no blanks: those heads were refused
            if name == b"content-length":
                has_length = True
                if complete and not head_only:
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
            if not no_body and not head_only:
                head.append(b"content-length: %d\r\n" % len(data))
        elif no_body or has_length:
            self.resp_mode = LENGTH
        elif req.version == "1.1":
            self.resp_mode = CHUNKED
            head.append(b"transfer-encoding: chunked\r\n")
        else:
            self.resp_mode = UNTIL_CLOSE
            close = True
        if close:
            head.append(b"connection: close\r\n")
        elif req.version == "1.0":
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")
        self.resp_close = close
        if complete:
            if not head_only and not no_body:
                head.append(data)
                req.sent = len(data)
            self.transport.write(b"".join(head))  # type: ignore[union-attr]
            self._finish(req, close)
            return
        if head_only or no_body:
            self.resp_mode = DISCARD
        self.transport.write(b"".join(head))  # type: ignore[union-attr]
        if body:
            self.send_php_body(req, body, False)

    def send_php_body(self, stream: Stream, body: list[bytes], complete: bool) -> None:
        mode = self.resp_mode
        out: list[bytes] = []
        if mode == CHUNKED:
            for part in body:
                if part:
                    out.append(b"%x\r\n" % len(part))
                    out.append(part)
                    out.append(b"\r\n")
            if complete:
                out.append(b"0\r\n\r\n")
        elif mode != DISCARD:
            out = body
        if mode != DISCARD:
            stream.sent += sum(map(len, body))
        if out:
            self.transport.write(b"".join(out))  # type: ignore[union-attr]
        if complete:
            self._finish(stream, self.resp_close or mode == UNTIL_CLOSE)  # type: ignore[arg-type]

    def send_informational(self, stream: Stream, status: int, links: list[bytes]) -> None:
        """Only an HTTP/1.1 client may get a 1xx."""
        if stream.version == "1.1":
            self.transport.write(  # type: ignore[union-attr]
                status_line(status) + b"".join(b"link: " + link + b"\r\n" for link in links) + b"\r\n")

    def cut(self, stream: Stream) -> None:
        stream.abandon()
        self._abort()

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
            req = req or Request(self)
            req.reject = status
            req.keep_alive = False
            req.body_complete = False  # the rest of it is unread: the connection must close
            self.queue.append(req)
            if len(self.queue) == 1:
                self._activate(req)
            return
        req.keep_alive = False
        if req is not self.queue[0]:
            req.reject = status
            return
        # the failing request is the one being answered
        if not req.response_started:
            req.respond(status)
        else:
            self.cut(req)  # mid-response: the only honest signal left is to cut the connection

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
