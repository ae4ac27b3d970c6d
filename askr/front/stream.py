"""One request's life, whichever HTTP version carries it: routing, the hot-file and static answers,
the PHP exchange (503 when the queue is full, 504 past request_timeout, 502 when the worker dies,
or one retry on another worker: [server] retry_crashed; 502 for a head with an invalid header
name, as nginx), the front's own answers, stats and the access log.

The protocol modules are codecs around this: `http1.Http1Connection` and `http2.Http2Connection`
parse bytes into `Stream`s and frame what a stream answers. A stream drives its connection
through the few methods of `Connection` below (plain calls, no per-chunk event objects: this is
the per-request hot path), and is itself the ResponseSink of its PHP exchange.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from askr.bridge import wire
from askr.bridge.pool import Exchange, WorkerChannel
from askr.front import cgi, health
from askr.front.compression import Encoder
from askr.front.responses import INVALID_FIELD_LINE
from askr.front.router import PhpScript, Redirect, StaticFile
from askr.front.static import StaticResponse

if TYPE_CHECKING:
    from askr.front.context import FrontContext
    from askr.front.hotfiles import HotResponse
    from askr.front.xsendfile import FileOffload

log = logging.getLogger("askr.front")

Fields = Sequence[tuple[bytes, bytes]]  # extra response header fields, lower-case names
RETRY_AFTER: Fields = ((b"retry-after", b"1"),)
_SINGLETONS = frozenset((b"host", b"content-length"))
_ACCESS_PROTOCOL = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "2": "HTTP/2.0"}
# The methods a request may be retried with when its PHP worker crashed before answering: the safe
# ones (RFC 9110 9.2.1), which an app must be able to run twice. PUT and DELETE are idempotent by
# the RFC too, but change state, and an app's handler may not honour that: they get the 502.
_RETRYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS"))


class Connection(asyncio.Protocol):
    """What a client connection is to its streams, whichever the protocol: who is at each end,
    and the codec methods a Stream calls to answer."""

    HIGH_WATER = 256 * 1024  # bytes buffered towards the client before the transport pushes back

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.limits = ctx.config.limits
        self.loop = ctx.loop
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.conn_params = b""  # this connection's fixed CGI params, already encoded
        self.server_addr = b""
        self.origin = (b"http", b"")  # (REQUEST_SCHEME, SERVER_PORT) of this connection
        self.trusted_peer: bool | None = None  # [server] trusted_proxies: None off, else is the peer one?
        self.peer_ip = "-"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.ctx.connections.add(self)
        self.conn_params, self.server_addr, self.origin = cgi.connection_params(self.ctx, transport)
        self.peer_ip = str((transport.get_extra_info("peername") or ("-",))[0])
        proxies = self.ctx.proxies
        self.trusted_peer = proxies.trusts(self.peer_ip) if proxies.enabled else None
        self.ctx.stats.accepted += 1
        transport.set_write_buffer_limits(high=self.HIGH_WATER)  # type: ignore[attr-defined]

    def requests_in_flight(self) -> int:
        """Requests received and not yet answered in full (askr drain --wait)."""
        return 0

    def peer_text(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # -- the codec: how a stream's answer goes out -------------------------------------------
    def send_php_head(self, stream: Stream, status: int, header_block: bytes, body: list[bytes],
                      complete: bool) -> None:
        """PHP's response head (its header lines, '\\n'-separated), and the body so far."""
        raise NotImplementedError

    def send_php_body(self, stream: Stream, body: list[bytes], complete: bool) -> None:
        raise NotImplementedError

    def send_simple(self, stream: Stream, status: int, extra: Fields) -> None:
        """A small text answer of the front's own (an error, a redirect)."""
        raise NotImplementedError

    def send_static(self, stream: Stream, resp: StaticResponse) -> None:
        raise NotImplementedError

    def send_hot(self, stream: Stream, entry: HotResponse) -> None:
        """A GET answered from the hot-file cache (validators checked against the request)."""
        raise NotImplementedError

    def send_informational(self, stream: Stream, status: int, links: list[bytes]) -> None:
        """103 Early Hints carrying these Link values, where the protocol allows it."""
        raise NotImplementedError

    def cut(self, stream: Stream) -> None:
        """The response broke off after its head went out: the only honest signal left is to
        end the stream abruptly (HTTP/1.1: close the connection; HTTP/2: RST_STREAM)."""
        raise NotImplementedError

    def body_taken(self, stream: Stream) -> None:
        """A worker took the stream's request: the body held for it is on its way."""
        raise NotImplementedError

    def body_backpressure(self, stream: Stream, paused: bool) -> None:
        """The worker is slow to take the stream's body: hold the client back (or stop doing so)."""
        raise NotImplementedError


class Stream:
    """One request and its response. The request head is filled by the codec; `dispatch()` then
    decides who answers."""

    __slots__ = (
        "body", "body_complete", "body_size", "chunked", "closed", "conn", "content_length", "encoder",
        "exchange", "flat_headers", "head_only", "headers", "method", "path", "php_deadline", "php_request",
        "query", "responded", "response_started", "retried", "sent", "started", "status", "url", "version",
        "waiting_route", "window_bytes", "worker",
    )

    def __init__(self, conn: Connection, version: str) -> None:
        self.conn = conn
        self.version = version  # "1.0", "1.1" or "2"
        self.method = b""
        self.url = b""  # the request target as sent (REQUEST_URI)
        self.path = b""
        self.query = b""
        self.headers: dict[bytes, list] = {}  # lower name -> [name as sent, value, index in flat]
        self.flat_headers: list[bytes] = []  # [name, value, ...] as PHP gets them (names unique)
        self.content_length: int | None = None
        self.chunked = False  # a body of unknown length: collected whole before PHP runs
        self.body: list[bytes] = []  # body pieces held until a worker takes the request
        self.body_size = 0
        self.body_complete = False
        self.window_bytes = 0  # body bytes in the current body_timeout window
        self.waiting_route: PhpScript | None = None  # PHP runs once the collected body is complete
        self.exchange: Exchange | None = None
        self.php_request = b""  # the REQUEST frame, kept for a retry; b"" once it may not be retried
        self.retried = False  # a crashed worker's request went to another worker once already
        self.head_only = False
        self.php_deadline = 0.0  # [server] request_timeout (negative: not yet anchored to the clock)
        self.response_started = False
        self.responded = False  # the response is complete
        self.closed = False  # nothing more can be sent (the client left, or the stream was reset)
        self.started = 0.0  # loop time the request head was complete (for the duration metric)
        self.status = 0
        self.sent = 0  # response body bytes (access log)
        self.worker = 0  # pid of the PHP worker that answered (access log)
        self.encoder: Encoder | None = None  # [compression] of a PHP response that streams

    def header(self, lower_name: bytes) -> bytes | None:
        entry = self.headers.get(lower_name)
        return entry[1] if entry else None

    def field_values(self) -> dict[bytes, bytes]:
        """Every header, lower-case name -> value (a repeated one as add_header joined it)."""
        return {name: entry[1] for name, entry in self.headers.items()}

    # -- the request head, as the codecs fill it ---------------------------------------------
    def add_header(self, lower: bytes, name: bytes, value: bytes) -> bool:
        """Record one field; a repeated one joins the first (cookies with '; ', RFC 9113 8.2.3).
        False for a second Host or Content-Length, which is an attack (RFC 9112 3.2, 6.3)."""
        headers = self.headers
        entry = headers.get(lower)
        flat = self.flat_headers
        if entry is None:
            headers[lower] = [name, value, len(flat)]
            flat.append(name)
            flat.append(value)
            return True
        if lower in _SINGLETONS:
            return False
        entry[1] += (b"; " if lower == b"cookie" else b", ") + value
        flat[entry[2] + 1] = entry[1]
        return True

    def set_target(self, target: bytes) -> None:
        """PATH and QUERY_STRING from an origin-form target (REQUEST_URI stays `url`)."""
        path, _, self.query = target.partition(b"?")
        self.path = path.partition(b"#")[0]

    def set_content_length(self, value: bytes) -> int:
        """The body's announced length; a status to answer if it is no number or over the limit."""
        value = value.strip()
        if not value.isdigit():
            return 400
        self.content_length = int(value)
        return 413 if self.content_length > self.conn.limits.max_body_size else 0

    # -- who answers -------------------------------------------------------------------------
    def dispatch(self) -> None:
        conn = self.conn
        ctx = conn.ctx
        health_path = ctx.health_path
        if health_path is not None and self.path == health_path:
            self.answer_health()
            return
        ctx.stats.last_request = self.started  # askr drain --wait: has the balancer gone quiet?
        router = ctx.router
        hot = router.hot
        # A small file asked for with a plain GET comes from memory, without routing (the entry
        # replays this path's route, checked again every second); anything else goes the long way.
        if hot is not None and self.method == b"GET" and b"range" not in self.headers:
            entry = hot.get(self.path)
            if entry is not None:
                conn.send_hot(self, hot.respond(self.path, entry, self.header(b"accept-encoding")))
                return
        else:
            hot = None
        route = router.resolve(self.path, self.query)
        kind = type(route)
        if kind is PhpScript:
            if self.content_length is None and not self.body_complete:
                self.chunked = True  # no length: collect the body, then run PHP with one (as nginx)
                self.waiting_route = route  # type: ignore[assignment]
                return
            self.start_php(route)  # type: ignore[arg-type]
        elif kind is StaticFile:
            entry = hot.load(self.path, route) if hot is not None else None  # type: ignore[arg-type]
            if entry is not None:
                conn.send_hot(self, hot.respond(self.path, entry, self.header(b"accept-encoding")))  # type: ignore[union-attr]
            else:
                conn.send_static(self, ctx.serve_file(self.method, self.field_values(), route))  # type: ignore[arg-type]
        elif kind is Redirect:
            self.respond(301, ((b"location", cgi.absolute_url(conn, self, route.location)),))  # type: ignore[union-attr]
        else:
            self.respond(route.status)  # type: ignore[union-attr]

    def answer_health(self) -> None:
        """[server] health_path: the host's readiness, from the front alone (askr/front/health.py)."""
        ctx = self.conn.ctx
        self.conn.send_static(self, health.answer(ctx.readiness, ctx.pool.ready, ctx.draining,
                                                  self.method == b"HEAD"))

    def start_php(self, route: PhpScript) -> None:
        conn = self.conn
        params = cgi.request_params(conn, self, route)
        request = wire.encode_request(params, cgi.php_headers(conn, self), conn.conn_params)
        self.php_request = request
        frames = [request]
        if self.body:
            frames.extend(wire.encode_body(b) for b in self.body)
            self.body = []
        if self.body_complete:
            frames.append(wire.BODY_END_FRAME)
        self.head_only = self.method == b"HEAD"
        self.php_deadline = -conn.ctx.config.server.request_timeout
        exchange = Exchange(frames, self, self._php_started)
        self.exchange = exchange
        if not conn.ctx.pool.submit(exchange, conn.loop.time()):
            self.exchange = None
            exchange.cancelled = True
            log.warning("all PHP workers busy and %d requests queued; answering 503", conn.limits.max_queue)
            self.respond(503, RETRY_AFTER)

    def _php_started(self, exchange: Exchange) -> None:
        if self.exchange is exchange and exchange.channel is not None:
            self.worker = exchange.channel.pid
        if not self.closed:
            self.conn.body_taken(self)

    # -- the request body, as the codecs receive it ------------------------------------------
    def body_data(self, data: bytes) -> bool:
        """A piece of the body: on to the worker, or held. True if a worker already has it."""
        ex = self.exchange
        if ex is not None:
            ex.send(wire.encode_body(data))
            return ex.channel is not None
        if not self.responded and not self.response_started:
            self.body.append(data)  # for the exchange it goes to (or answered: dropped)
        return False

    def body_end(self) -> None:
        self.body_complete = True
        if self.exchange is not None:
            self.exchange.send(wire.BODY_END_FRAME)
        elif self.waiting_route is not None and not self.response_started and not self.closed:
            route, self.waiting_route = self.waiting_route, None
            self.start_php(route)  # the collected body is complete: PHP gets its length

    def body_stalled(self, need: int, held_back: bool) -> bool:
        """Ends a body_timeout window: True if the body moved fewer than `need` bytes in it and
        we were not the ones holding it back (slow-body protection, both versions alike)."""
        slow = not held_back and not self.body_complete and self.window_bytes < need
        self.window_bytes = 0
        return slow

    # -- the front's own answers, and the end ------------------------------------------------
    def respond(self, status: int, extra: Fields = ()) -> None:
        """Answer `status` ourselves (an error, a redirect); the PHP exchange, if any, is let go."""
        if self.response_started or self.closed:
            return
        self.abandon()
        self.status = status
        self.conn.send_simple(self, status, extra)

    def abandon(self) -> None:
        """The stream ends without (the rest of) its PHP answer: let the worker go. Mid-response
        the worker's channel is closed, as nginx closes its upstream, so PHP sees the abort on
        its next write (an endless stream would otherwise run on for nobody)."""
        ex = self.exchange
        if ex is None:
            return
        self.exchange = None
        if ex.cancelled:
            return
        channel = ex.channel
        if self.response_started and channel is not None and channel.exchange is ex:
            channel.close()
        ex.cancel()
        if not self.body_complete:
            ex.send(wire.BODY_END_FRAME)  # unblock the worker; its answer is discarded

    def finished(self) -> None:
        """The response is complete: count it and log it."""
        self.responded = True
        self.php_deadline = 0.0
        conn = self.conn
        ctx = conn.ctx
        seconds = conn.loop.time() - self.started if self.started else 0.0
        ctx.stats.record(self.status, seconds)
        if self.worker and seconds >= ctx.config.log.slow_request:
            ctx.stats.slow += 1  # a PHP request slower than [log] slow_request
        if ctx.access is not None:
            client = conn.peer_ip
            if conn.trusted_peer:  # the client the trusted proxy names, as PHP's REMOTE_ADDR
                client = ctx.proxies.client(self.header) or client
            ctx.access.write(client, self.method, self.url, _ACCESS_PROTOCOL[self.version], self.status,
                             self.sent, self.header(b"referer"), self.header(b"user-agent"), seconds,
                             self.worker)

    def check_timeout(self, now: float) -> None:
        """[server] request_timeout, checked by the front's sweeper (a timer per request would
        cost more than the rest of its bookkeeping); a negative deadline is anchored here."""
        deadline = self.php_deadline
        if deadline < 0:
            self.php_deadline = now - deadline
        elif deadline and now >= deadline:
            self.php_deadline = 0.0
            self.php_timeout()

    def php_timeout(self) -> None:
        """PHP ran past request_timeout: 504 (mid-response, a cut), and the master kills the
        worker, which cannot be interrupted otherwise."""
        ex = self.exchange
        if ex is None or self.responded or self.closed:
            return
        conn = self.conn
        conn.ctx.pool.timed_out(ex, self.method, self.url, conn.ctx.config.server.request_timeout)
        if self.response_started:
            conn.cut(self)
        else:
            self.respond(504)

    # -- ResponseSink (called by the worker channel) ----------------------------------------
    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        if complete:
            self.exchange = None  # the worker is done with it, whatever happens to the stream
        if self.closed:
            return
        offload = self.conn.ctx.offload
        if offload is not None and offload.wanted(header_block):
            if INVALID_FIELD_LINE.search(header_block) is not None:
                self.refuse_php_head(header_block)  # nginx reads the whole head before the file
                return
            self.send_offloaded(offload, status, header_block)
            return
        compression = self.conn.ctx.compression
        if compression is not None and compression.enabled:
            # Decided once the head is known: whole if PHP is done, else piece by piece.
            known_size = sum(map(len, body)) if complete and not self.head_only else None
            encoded = compression.php_head(self.header(b"accept-encoding"), status, header_block, known_size)
            if encoded is not None:
                header_block, coding = encoded
                if coding is not None and not self.head_only:
                    if complete:
                        body = [compression.whole(coding, b"".join(body))]
                    else:
                        self.encoder = compression.encoder(coding)
                        data = b"".join(body)
                        body = [self.encoder.chunk(data)] if data else []
        self.conn.send_php_head(self, status, header_block, body, complete)

    def refuse_php_head(self, header_block: bytes) -> None:
        """PHP's head has a line no HTTP message may carry (responses.INVALID_FIELD_NAME, e.g.
        header("X-A : b")): 502, as nginx answers php-fpm's ("upstream sent invalid header"),
        whichever the HTTP version. A worker still sending is let go the way nginx closes its
        upstream: its channel is closed, so PHP sees the abort on its next write."""
        found = INVALID_FIELD_LINE.search(header_block)
        start = found.start() if found is not None else 0
        line = header_block[start:].partition(b"\n")[0]
        log.error("PHP sent a header line with an invalid name, %r, for %s %s (HTTP/%s); answering 502",
                  line[:100], self.method.decode("latin-1"), self.url.decode("latin-1"), self.version)
        ex = self.exchange
        channel = ex.channel if ex is not None else None
        self.respond(502)
        if channel is not None and channel.exchange is ex:
            channel.close()

    def send_offloaded(self, offload: FileOffload, status: int, header_block: bytes) -> None:
        """PHP named a file (X-Sendfile, X-Accel-Redirect): its body is discarded and its worker
        let go now, before the file is sent; the front answers with the file, compressed as a
        static file would be."""
        answer = offload.answer(self.method, self.field_values(), status, header_block, self.url,
                                self.conn.ctx.serve_file)
        if isinstance(answer, int):
            self.respond(answer)  # lets the worker go too
            return
        self.abandon()
        self.conn.send_static(self, answer)

    def php_body(self, body: list[bytes], complete: bool) -> None:
        if complete:
            self.exchange = None
        if self.closed:
            return
        encoder = self.encoder
        if encoder is not None:  # compress what PHP flushed, and flush it on (streams stay live)
            data = b"".join(body)
            if complete:
                self.encoder = None
                body = [encoder.finish(data)]
            else:
                body = [encoder.chunk(data)] if data else []
        self.conn.send_php_body(self, body, complete)

    def php_failed(self, crashed: WorkerChannel | None = None) -> None:
        if self.responded or self.closed:
            return
        self.exchange = None
        if self.response_started:
            log.error("PHP worker died while streaming %s (HTTP/%s); cutting the response",
                      self.url.decode("latin-1"), self.version)
            self.conn.cut(self)
            return
        what = f"{self.method.decode()} {self.url.decode('latin-1')} (HTTP/{self.version})"
        if crashed is None:
            log.error("PHP worker died while handling %s; answering 502", what)
        elif self.retried:
            self.conn.ctx.stats.retry_failed += 1
            log.error("PHP worker pid %d (worker id %d) died on %s too: the retry also failed; "
                      "answering 502", crashed.pid, crashed.worker_id, what)
        elif self.php_request and self._may_retry():
            self.retried = True
            self.conn.ctx.stats.retried += 1
            log.warning("PHP worker pid %d (worker id %d) died before answering %s; retrying it once on "
                        "another worker", crashed.pid, crashed.worker_id, what)
            exchange = Exchange([self.php_request, wire.BODY_END_FRAME], self, self._php_started)
            self.php_request = b""
            self.exchange = exchange
            self.conn.ctx.pool.resubmit(exchange)  # the request_timeout deadline stays as it was
            return
        else:
            log.error("PHP worker pid %d (worker id %d) died while handling %s; answering 502",
                      crashed.pid, crashed.worker_id, what)
        self.respond(502)

    def _may_retry(self) -> bool:
        """[server] retry_crashed = "idempotent": a request PHP may run twice without harm, with no
        body (a body may be half-read by the dead worker and is not kept to send again)."""
        return (self.conn.ctx.config.server.retry_crashed == "idempotent"
                and self.method in _RETRYABLE_METHODS
                and not self.chunked and not self.content_length and not self.body_size)

    def php_informational(self, status: int, header_block: bytes) -> None:
        """103 Early Hints from headers_send(103): only its Link headers go out (cookies and the
        like belong to the final response)."""
        self.php_request = b""  # the response has begun: a crash from here on is not retried
        if self.closed or self.response_started or status == 101:
            return
        links = [line.partition(b":")[2].strip() for line in header_block.split(b"\n")
                 if line[:5].lower() == b"link:"]
        if links:
            self.conn.send_informational(self, status, links)

    def php_backpressure(self, paused: bool) -> None:
        self.conn.body_backpressure(self, paused)
