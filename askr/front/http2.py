"""HTTP/2 on one client connection: libnghttp2's state machine (askr.front.nghttp2), our I/O and flow
control; the codec around askr.front.stream, as http1 is for HTTP/1.x.

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

from askr.front import nghttp2 as ng
from askr.front.nghttp2 import ErrorCodes
from askr.front.responses import DATE, INVALID_FIELD_LINE, SERVER_HEADER, error_body
from askr.front.stream import Connection, Fields, Stream

if TYPE_CHECKING:
    from askr.front.context import FrontContext
    from askr.front.hotfiles import HotResponse
    from askr.front.static import StaticResponse

log = logging.getLogger("askr.front")

STREAM_WINDOW = 256 * 1024  # request body we accept per stream before a worker takes it
HIGH_WATER = Connection.HIGH_WATER  # response bytes buffered per stream before its worker is paused
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




class Http2Stream(Stream):
    """A Stream as HTTP/2 carries it, with its share of the connection's flow control."""

    __slots__ = ("end_after", "file", "out", "out_size", "paused_worker", "stream_id", "unacked")

    def __init__(self, conn: Http2Connection, stream_id: int):
        super().__init__(conn, "2")
        self.stream_id = stream_id
        self.unacked = 0  # body bytes received but whose window was not yet re-opened
        self.out: collections.deque[bytes] = collections.deque()  # response bytes not yet in nghttp2
        self.out_size = 0
        self.end_after = False  # end the stream once `out` is sent
        self.file: tuple[int, int, int] | None = None  # (fd, offset, remaining) of a static file
        self.paused_worker = False

class Http2Connection(Connection):
    """One HTTP/2 connection (TLS with ALPN h2, or h2c prior knowledge)."""

    def __init__(self, ctx: FrontContext):
        super().__init__(ctx)
        # nghttp2 validates inbound headers (and _parse_headers applies askr's limits); outbound
        # headers are built here from PHP's lines (lower-cased, connection-specific ones dropped,
        # no CR/LF), which nghttp2 does not check.
        self.h2: ng.Session | None = None  # made in connection_made, from [limits]
        self.streams: dict[int, Http2Stream] = {}
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
        super().connection_made(transport)
        limits = self.limits
        # The connection window covers every stream's window, so streams never starve each other.
        # nghttp2's own reset-flood bucket is a backstop behind askr's rule (_on_reset).
        self.h2 = ng.Session(max_concurrent_streams=limits.max_streams, initial_window_size=STREAM_WINDOW,
                             max_header_list_size=limits.max_header_size,
                             connection_window=max(65535, limits.max_streams * STREAM_WINDOW),
                             reset_burst=1000 + 8 * limits.max_streams, reset_rate=limits.max_streams)
        self.idle_since = None
        self._write()

    def requests_in_flight(self) -> int:
        return len(self.streams)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.ctx.connection_closed(self)
        for stream in list(self.streams.values()):
            self._drop(stream)
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
            log.info("HTTP/2 protocol error from %s: %s; closing", self.peer_text(), e)
            self._close()  # after nghttp2's GOAWAY
            return
        self._handle(events)
        if self.closing:
            return
        new, self.new_streams = self.new_streams, []
        for stream in new:
            if not stream.closed:  # reset in the same read: never reaches a worker
                stream.dispatch()
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
            stream.respond(status)
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
            if not stream.add_header(name, name, value):
                return MALFORMED
        if size > limits.max_header_size:
            return 431
        if authority is not None and b"host" not in stream.headers:
            stream.add_header(b"host", b"host", authority)
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
        stream.set_target(url)
        length = stream.header(b"content-length")
        return stream.set_content_length(length) if length is not None else 0

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
                stream.respond(413)
            return
        if stream.responded or stream.response_started:
            self.ack_body(stream)  # answered already (an error): read and drop the rest
            return
        if stream.body_data(data) or (stream.exchange is None and stream.content_length is None):
            self.ack_body(stream)  # with its worker, or collected whole (bounded by max_body_size)

    def _on_body_end(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed:
            return
        stream.body_end()
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
        self._drop(stream)
        self._forget(stream)
        if len(resets) > 2 * self.limits.max_streams:
            log.warning("HTTP/2 client %s reset %d streams within %g s (rapid reset); closing the "
                        "connection", self.peer_text(), len(resets), RESET_WINDOW)
            self.h2.terminate(ErrorCodes.ENHANCE_YOUR_CALM, self.last_stream_id)  # type: ignore[union-attr]
            self._close()

    # -- answering --------------------------------------------------------------------------
    def body_taken(self, stream: Stream) -> None:
        self.ack_body(stream)  # type: ignore[arg-type]
        self._write()

    def body_backpressure(self, stream: Stream, paused: bool) -> None:
        if not paused:
            self.ack_body(stream)  # type: ignore[arg-type]

    def ack_body(self, stream: Http2Stream) -> None:
        """Re-open the stream's window by what its body moved on."""
        n, stream.unacked = stream.unacked, 0
        if n and not stream.closed and not stream.body_complete:
            self.h2.consume(stream.stream_id, n)  # type: ignore[union-attr]
            self._write()

    def send_php_head(self, stream: Stream, status: int, header_block: bytes, body: list[bytes],
                      complete: bool) -> None:
        if header_block and INVALID_FIELD_LINE.search(header_block) is not None:
            stream.refuse_php_head(header_block)  # as nginx: 502, not the name trimmed or dropped
            return
        headers = [(b":status", b"%d" % status)]
        has_date = has_server = False
        head_only = stream.head_only
        for line in header_block.split(b"\n") if header_block else ():
            name, _, value = line.partition(b":")
            name = name.lower()  # no blanks: those heads were refused above
            if not name or name in _NOT_FORWARDED or (name == b"content-length" and complete
                                                            and not head_only):
                continue
            has_date = has_date or name == b"date"
            has_server = has_server or name == b"server"
            headers.append((name, value.strip()))
        if not has_date:
            headers.append((b"date", DATE.field()))
        if not has_server:
            headers.append((b"server", _SERVER_VALUE))
        no_body = head_only or status in NO_BODY_STATUS
        data = b"".join(body)
        if complete and not no_body:
            headers.append((b"content-length", b"%d" % len(data)))
        self.send_response_head(stream, headers, end=complete and (no_body or not data))  # type: ignore[arg-type]
        if no_body:
            body = []
        elif complete:
            body = [data]
        self.send_php_body(stream, body, complete)

    def send_php_body(self, stream: Stream, body: list[bytes], complete: bool) -> None:
        h2s: Http2Stream = stream  # type: ignore[assignment]
        if h2s.closed:
            return
        if not h2s.head_only:
            for part in body:
                if part:
                    h2s.out.append(part)
                    h2s.out_size += len(part)
        if complete:
            h2s.php_deadline = 0.0
            if not h2s.responded:
                h2s.end_after = True
        self.flush_stream(h2s)

    def send_static(self, stream: Stream, resp: StaticResponse) -> None:
        h2s: Http2Stream = stream  # type: ignore[assignment]
        head = _front_headers(resp.status) + [(name.lower(), value) for name, value in resp.headers]
        no_body = h2s.head_only or (resp.file_path is None and not resp.body)
        self.send_response_head(h2s, head, end=no_body)
        if no_body:
            return
        if resp.file_path is not None:
            try:
                fd = os.open(resp.file_path, os.O_RDONLY)
            except OSError:
                self.reset(h2s, ErrorCodes.INTERNAL_ERROR)
                return
            h2s.file = (fd, resp.offset, resp.count)
        else:
            h2s.out.append(resp.body)
            h2s.out_size = len(resp.body)
        h2s.end_after = True
        self.flush_stream(h2s)

    def send_hot(self, stream: Stream, entry: HotResponse) -> None:
        """The header list is built but for :status and date."""
        headers, body = entry.http2(stream.header(b"if-none-match"), stream.header(b"if-modified-since"))
        self._send_whole(stream, headers, body)  # type: ignore[arg-type]

    def send_simple(self, stream: Stream, status: int, extra: Fields) -> None:
        full = error_body(status)
        headers = [*_front_headers(status), (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", b"%d" % len(full)), *extra]
        self._send_whole(stream, headers, b"" if stream.head_only else full)  # type: ignore[arg-type]

    def _send_whole(self, stream: Http2Stream, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.send_response_head(stream, headers, end=not body)
        if body:
            stream.out.append(body)
            stream.out_size = len(body)
            stream.end_after = True
            self.flush_stream(stream)

    def cut(self, stream: Stream) -> None:
        self.reset(stream, ErrorCodes.INTERNAL_ERROR)  # type: ignore[arg-type]

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
            self._drop(stream)
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
            self._drop(stream)
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
        stream.finished()
        if not stream.body_complete:
            # answered before the body was read (an error): stop the upload (RFC 9113 8.1)
            self._drop(stream)
            self._flush_output()  # the response first: nghttp2 would send the RST_STREAM before it
            with contextlib.suppress(ng.StreamClosedError, ng.ProtocolError):
                self.h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)  # type: ignore[union-attr]
        self._forget(stream)

    def reset(self, stream: Http2Stream, code: int) -> None:
        self._drop(stream)
        with contextlib.suppress(ng.StreamClosedError, ng.ProtocolError):
            self.h2.reset_stream(stream.stream_id, code)  # type: ignore[union-attr]
        self._forget(stream)
        self._write()

    def _drop(self, stream: Http2Stream) -> None:
        """The stream ends here: its worker let go, its file closed, nothing more sent."""
        stream.abandon()
        self._close_file(stream)
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
            log.info("HTTP/2 error towards %s: %s; closing", self.peer_text(), e)
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
            if stream.php_deadline:
                stream.check_timeout(now)
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
            if stream.body_stalled(need, held_back=STREAM_WINDOW - stream.unacked < need):
                log.info("HTTP/2 request body too slow from %s; answering 408", self.peer_text())
                if stream.response_started:
                    self.reset(stream, ErrorCodes.CANCEL)
                else:
                    stream.respond(408)

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
