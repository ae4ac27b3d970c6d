"""A front's persistent channels to its PHP workers, and the dispatch of exchanges to idle ones.

Each worker holds one unix-socket channel for its whole life (a connection per request would cost
the front ~25 µs more CPU). The pool hands a request to an idle worker at once, or queues it FIFO
(bounded); past the bound the caller answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from askr.bridge import wire

log = logging.getLogger("askr.front")

_HEADER = wire.HEADER
_HEADER_SIZE = wire.HEADER_SIZE


class ResponseSink(Protocol):
    """Receives one PHP response; implemented by each HTTP version's stream."""

    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        """The head (PHP's header lines joined by \\n), and whatever body arrived with it;
        `complete` when END came too."""

    def php_body(self, body: list[bytes], complete: bool) -> None:
        """More body (possibly none) after php_response; `complete` when END came."""

    def php_failed(self) -> None:
        """The worker vanished before finishing this response."""

    def php_backpressure(self, paused: bool) -> None:
        """The worker is not taking request body as fast as it arrives (paused) or caught up."""


class Exchange:
    """One request on its way to a worker: the frames to send, where the answer goes."""

    __slots__ = ("cancelled", "channel", "frames", "on_started", "sink")

    def __init__(
        self, frames: list[bytes], sink: ResponseSink, on_started: Callable[[Exchange], None] | None
    ):
        # REQUEST, then BODY frames and BODY_END as they arrive while the exchange waits for a worker
        self.frames = frames
        self.sink = sink
        self.on_started = on_started
        self.channel: WorkerChannel | None = None
        self.cancelled = False

    def send(self, frame: bytes) -> None:
        """Forward a frame now, or keep it for when a worker takes the exchange."""
        if self.channel is not None:
            self.channel.send(frame)
        else:
            self.frames.append(frame)

    def cancel(self) -> None:
        """The client is gone: discard the answer, but leave the worker's channel clean."""
        self.cancelled = True
        channel = self.channel
        if channel is not None:
            channel.resume_reading()


class WorkerChannel(asyncio.Protocol):
    """The front's end of one worker's channel: frame parser plus the exchange in flight."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.worker_id = -1
        self.pid = 0
        self.generation = 0
        self.exchange: Exchange | None = None
        self.head_seen = False
        self.exiting = False  # the worker said it exits after the current response
        self.closed = False
        self.requests = 0
        self._pending: list[bytes] = []

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        end = len(buf)
        status = -1
        block = b""
        body = self._pending
        while end - pos >= _HEADER_SIZE:
            kind, length = _HEADER.unpack_from(buf, pos)
            if end - pos - _HEADER_SIZE < length:
                break
            start = pos + _HEADER_SIZE
            pos = start + length
            if kind == wire.RESP_BODY:
                body.append(bytes(buf[start:pos]))
            elif kind == wire.HEAD:
                status = (buf[start] << 8) | buf[start + 1]
                block = bytes(buf[start + 2 : pos])
            elif kind == wire.END:
                if length and buf[start] & wire.END_FLAG_EXITING:
                    self.exiting = True
                self._deliver(status, block, body, True)
                status, block, body = -1, b"", []
                self._pending = body
            elif kind == wire.HELLO:
                self.worker_id, self.pid, self.generation = wire.decode_hello(bytes(buf[start:pos]))
                self.pool.worker_hello(self)
            else:
                log.error("php worker #%s sent an unknown frame type %#x; dropping it", self.worker_id, kind)
                self.close()
                return
        if pos:
            del buf[:pos]
        if status >= 0 or body:
            self._deliver(status, block, body, False)
            self._pending = []

    def _deliver(self, status: int, block: bytes, body: list[bytes], complete: bool) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        head_seen = self.head_seen
        if complete:
            # Hand the worker its next request before answering this one: the worker starts
            # while we write to the client, instead of idling through that write.
            self.exchange = None
            self.head_seen = False
            self.requests += 1
            self.pool.worker_idle(self)
        else:
            self.head_seen = head_seen or status >= 0
        if exchange.cancelled:
            return
        if status >= 0:
            exchange.sink.php_response(status, block, body, complete)
        elif head_seen:
            exchange.sink.php_body(body, complete)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not exchange.cancelled:
            exchange.sink.php_failed()
        self.pool.worker_gone(self)

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None and not ex.cancelled:
            ex.sink.php_backpressure(True)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None and not ex.cancelled:
            ex.sink.php_backpressure(False)

    # -- used by streams --------------------------------------------------------------------
    def start(self, exchange: Exchange) -> None:
        self.exchange = exchange
        exchange.channel = self
        self.transport.write(b"".join(exchange.frames))  # type: ignore[union-attr]
        exchange.frames = []
        if exchange.on_started is not None:
            exchange.on_started(exchange)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()


class WorkerPool:
    """Idle workers and a bounded FIFO of exchanges waiting for one."""

    def __init__(self, max_queue: int, on_event: Callable[[dict], None]):
        self.max_queue = max_queue
        self.on_event = on_event
        self.idle: deque[WorkerChannel] = deque()
        self.waiting: deque[Exchange] = deque()
        self.channels: set[WorkerChannel] = set()

    def protocol_factory(self) -> WorkerChannel:
        return WorkerChannel(self)

    def submit(self, exchange: Exchange) -> bool:
        """Start `exchange` on an idle worker or queue it; False when the queue is full."""
        idle = self.idle
        while idle:
            channel = idle.pop()  # LIFO: the most recently used worker is warmest in cache
            if not channel.closed:
                channel.start(exchange)
                return True
        if len(self.waiting) >= self.max_queue:
            return False
        self.waiting.append(exchange)
        return True

    def worker_hello(self, channel: WorkerChannel) -> None:
        self.channels.add(channel)
        self.on_event({"event": "worker_ready", "worker_id": channel.worker_id, "pid": channel.pid,
                       "generation": channel.generation})
        self.worker_idle(channel)

    def worker_idle(self, channel: WorkerChannel) -> None:
        if channel.exiting:
            channel.close()  # the worker leaves after its quota (max_requests)
            return
        waiting = self.waiting
        while waiting:
            exchange = waiting.popleft()
            if not exchange.cancelled:
                channel.start(exchange)
                return
        self.idle.append(channel)

    def worker_gone(self, channel: WorkerChannel) -> None:
        self.channels.discard(channel)
        with contextlib.suppress(ValueError):
            self.idle.remove(channel)
        if channel.worker_id >= 0:
            self.on_event({"event": "worker_gone", "worker_id": channel.worker_id, "pid": channel.pid})

    def close_all(self) -> None:
        for channel in list(self.channels):
            channel.close()
