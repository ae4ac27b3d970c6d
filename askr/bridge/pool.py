"""A front's PHP workers: their persistent channels, and the queue that hands them requests.

Requests go into the request queue, a SOCK_SEQPACKET socket that every front writes and every
PHP worker reads: the kernel gives each message to exactly one worker, so a worker that finishes
takes the next request at once, first come first served, whichever front queued it and without
a round trip through any front (as php-fpm children share one accept queue). Every worker keeps
a persistent channel to every front; it answers on the channel of the front that queued the
request (its index is in the message), starting with TAKEN <id>, so that front knows which
request the response belongs to.

At most `ready + min(QUEUED_PER_WORKER * ready, max_queue)` requests are in the queue or running;
the rest wait here in FIFO order (bounded by what is left of max_queue; past it, 503).
A worker that dies while holding a request is found through the scoreboard (a shared-memory
slot per worker: the id it holds, and its pid), so that request fails (502) instead of hanging,
or, when it is safe to, its stream queues it once more (`resubmit`, [server] retry_crashed).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import socket
import struct
import termios
from collections import deque
from collections.abc import Callable
from typing import Protocol

from askr._hotpath import read_frames
from askr.bridge import events, wire
from askr.bridge.scoreboard import Scoreboard

log = logging.getLogger("askr.front")

# Requests kept waiting in the kernel queue per ready worker, so a worker that finishes never
# waits for the front to refill it (measured: 1 -> 2 -> 4 gave +13%, then +8% req/s). The queue
# is shared and FIFO, so depth does not change who is served first; a request in it can no
# longer be withdrawn, only its answer discarded if its client leaves.
QUEUED_PER_WORKER = 4
_RESP_BODY, _HEAD, _TAKEN, _END = wire.RESP_BODY, wire.HEAD, wire.TAKEN, wire.END  # per frame: no lookups
# probe_waiting() on submit at most this often (seconds): a probe reads every worker's slot
PROBE_SPACING = 0.001


class ResponseSink(Protocol):
    """Receives one PHP response; implemented by each HTTP version's stream."""

    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        """The head (PHP's header lines joined by \\\\n), and whatever body arrived with it;
        `complete` when END came too."""

    def php_body(self, body: list[bytes], complete: bool) -> None:
        """More body (possibly none) after php_response; `complete` when END came."""

    def php_failed(self, crashed: WorkerChannel | None = None) -> None:
        """The worker vanished before finishing this response. `crashed` is its channel when it
        died holding the request before any of the response (HEAD) came: the stream may queue
        the request again (`WorkerPool.resubmit`). None when the request was lost otherwise."""

    def php_backpressure(self, paused: bool) -> None:
        """The worker is not taking request body as fast as it arrives (paused) or caught up."""

    def php_informational(self, status: int, header_block: bytes) -> None:
        """A 1xx response (103 Early Hints) to send before the final one."""


class Exchange:
    """One request on its way to a worker: the frames to send, where the answer goes."""

    __slots__ = ("cancelled", "channel", "frames", "on_started", "request_id", "sink")

    def __init__(
        self, frames: list[bytes], sink: ResponseSink, on_started: Callable[[Exchange], None] | None
    ):
        # REQUEST, then BODY frames and BODY_END as they arrive before a worker takes it
        self.frames = frames
        self.sink = sink
        self.on_started = on_started
        self.channel: WorkerChannel | None = None
        self.request_id = 0  # set when it enters the queue
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


class _Discard:
    """Stands in for a request the front no longer knows (sent by a previous front process)."""

    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        pass

    def php_body(self, body: list[bytes], complete: bool) -> None:
        pass

    def php_failed(self, crashed: WorkerChannel | None = None) -> None:
        pass

    def php_backpressure(self, paused: bool) -> None:
        pass

    def php_informational(self, status: int, header_block: bytes) -> None:
        pass


class WorkerChannel(asyncio.Protocol):
    """The front's end of one worker's channel: frame parser plus the exchange in flight."""

    def __init__(self, pool: WorkerPool):
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # the start of a frame not yet complete
        self.need = 0  # bytes buf must hold before that frame is
        self.worker_id = -1
        self.pid = 0
        self.generation = 0
        self.exchange: Exchange | None = None
        self.head_seen = False
        self.exiting = False  # the worker said it exits after the current response
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=256 * 1024)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        # Usually a read holds whole frames (a small response is TAKEN, HEAD, BODY and END in one
        # write): read_frames (C) takes that shape in one call. Other reads go through the loop
        # below, which slices frames from `data` itself; only a frame split across reads is
        # gathered in `buf`, without a copy or a parse until it is complete.
        buf = self.buf
        if not buf:
            response = read_frames(data)
            if response is not None:
                taken, taken_flags, status, block, body, end = response
                if taken >= 0:
                    self.pool.taken(self, taken, taken_flags)
                if end >= 0:
                    self._ended(status, block, body, end)
                elif status >= 0 or body:
                    self._deliver(status, block, body, False)
                return
        else:
            buf += data
            if len(buf) < self.need:
                return
            data = bytes(buf)
            buf.clear()
        frames, consumed = wire.split_frames(data)
        if consumed < len(data):
            buf += data[consumed:]
            self.need = wire.frame_size(buf)
        status = -1
        block = b""
        body: list[bytes] = []
        for kind, start, pos in frames:
            if kind == _RESP_BODY:
                body.append(data[start:pos])
            elif kind == _HEAD:
                status = (data[start] << 8) | data[start + 1]
                block = data[start + 2 : pos]
            elif kind == _TAKEN:
                self.pool.taken(self, *wire.decode_taken(data[start:pos]))
            elif kind == _END:
                self._ended(status, block, body, data[start] if pos > start else 0)
                status, block, body = -1, b"", []
            elif kind == wire.EARLY_HINTS:
                exchange = self.exchange
                if exchange is not None and not exchange.cancelled:
                    if status >= 0 or body:  # keep the order: what came before goes first
                        self._deliver(status, block, body, False)
                        status, block, body = -1, b"", []
                    hint = wire.decode_status(data, start)
                    exchange.sink.php_informational(hint, data[start + 2 : pos])
            elif kind == wire.RECYCLE:  # after a response: over max_memory
                reason, value = wire.decode_recycle(data[start:pos])
                self.pool.worker_quota(self, reason, value)
            elif kind == wire.BOOT_FAILED:
                worker_id, pid, reason = wire.decode_boot_failed(data[start:pos])
                self.pool.on_event(events.WorkerBootFailed(worker_id, pid, reason))
            elif kind == wire.HELLO:
                self.worker_id, self.pid, self.generation = wire.decode_hello(data[start:pos])
                self.pool.worker_hello(self)
            else:
                log.error("php worker #%s sent an unknown frame type %#x; dropping it", self.worker_id, kind)
                self.close()
                return
        if status >= 0 or body:
            self._deliver(status, block, body, False)

    def _ended(self, status: int, block: bytes, body: list[bytes], flags: int) -> None:
        """An END frame: the response's last part, and what the worker says of itself."""
        if flags & wire.END_FLAG_EXITING:
            self.exiting = True
        self._deliver(status, block, body, True)
        if flags & wire.END_FLAG_QUOTA:
            self.pool.worker_quota(self)

    def _deliver(self, status: int, block: bytes, body: list[bytes], complete: bool) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        head_seen = self.head_seen
        if complete:
            self.exchange = None
            self.head_seen = False
            self.pool.finished(self)
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
        self.pool.worker_gone(self, exchange)

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None and not ex.cancelled:
            ex.sink.php_backpressure(True)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None and not ex.cancelled:
            ex.sink.php_backpressure(False)

    # -- used by streams --------------------------------------------------------------------
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
    """The queue into this front's workers, and what is waiting for room in it."""

    def __init__(self, queue: socket.socket, scoreboard: mmap.mmap | None, max_queue: int,
                 on_event: Callable[[events.WorkerEvent], None], front_index: int = 0):
        self.queue = queue
        self.front_index = front_index  # in each queue message: the channel the answer comes on
        self.scoreboard = Scoreboard(scoreboard)
        self.max_queue = max_queue
        self.on_event = on_event
        self.channels: set[WorkerChannel] = set()
        self.ready = 0  # workers that said HELLO and are still connected
        self.running = 0  # requests a worker has taken and not finished
        self.sent: dict[int, Exchange] = {}  # in the queue, not yet taken
        self.waiting: deque[Exchange] = deque()  # not yet in the queue
        self.unaccounted: set[int] = set()  # sent ids neither queued nor held at the last check
        # php-fpm's "listen queue" / "max listen queue" / "max children reached", for this
        # front's requests (probe_waiting)
        self.waiting_now = 0
        self.peak_waiting = 0
        self.saturations = 0
        self._saturated = False
        self._next_probe = 0.0
        # ids carry this front's pid, so answers to a previous front's requests are told apart
        self.next_id = (os.getpid() & 0xFFFFFFFF) << 32

    def protocol_factory(self) -> WorkerChannel:
        return WorkerChannel(self)

    # -- dispatch ----------------------------------------------------------------------------
    def submit(self, exchange: Exchange, now: float = 0.0) -> bool:
        """Queue `exchange` for the next free worker; False when the wait is full (503)."""
        if now >= self._next_probe:  # at most once a PROBE_SPACING: it reads every worker's slot
            self._next_probe = now + PROBE_SPACING
            self.probe_waiting(arriving=1)
        if not self.waiting and self._send(exchange):
            return True
        if len(self.waiting) >= self.max_queue - self._kernel_waiting_cap():
            return False
        self.waiting.append(exchange)
        return True

    def probe_waiting(self, arriving: int = 0) -> int:
        """How many of this front's requests wait for a worker now (plus `arriving`, about to be
        submitted): those no worker has taken (the scoreboard says which ids workers hold; an
        answer's TAKEN comes only with its response) while every worker is busy. With a worker
        idle nothing waits: it takes the next request within microseconds. Records the peak and
        counts each time every worker became busy with requests waiting (php-fpm's "max children
        reached")."""
        held = [self._holding(channel) for channel in self.channels]
        busy = sum(1 for request_id in held if request_id)
        if not self.ready or busy < self.ready:
            waiting = 0
        else:
            taken = set(held)
            waiting = len(self.waiting) + arriving + sum(1 for rid in self.sent if rid not in taken)
        self.waiting_now = waiting
        if waiting > self.peak_waiting:
            self.peak_waiting = waiting
        if waiting and not self._saturated:
            self.saturations += 1
        self._saturated = waiting > 0
        return waiting

    def resubmit(self, exchange: Exchange) -> None:
        """Queue a request again after the worker that took it died (a retry, with a fresh id,
        so nothing of the dead worker's can be taken for the answer): ahead of the requests
        waiting, which came after it, and never refused for a full wait (it was admitted)."""
        if self.waiting or not self._send(exchange):
            self.waiting.appendleft(exchange)

    def _kernel_waiting_cap(self) -> int:
        """Requests that may wait in the kernel queue (not yet taken), counted in max_queue."""
        return min(QUEUED_PER_WORKER * self.ready, self.max_queue)

    def _send(self, exchange: Exchange) -> bool:
        if len(self.sent) + self.running >= self.ready + self._kernel_waiting_cap():
            return False
        frames = exchange.frames
        data = b"".join(frames)
        if frames[-1] is wire.BODY_END_FRAME and len(data) <= wire.MAX_QUEUE_MESSAGE:
            flags, rest = 0, []
        else:
            # a body still arriving, or too big for one message: it goes on the worker's channel
            data, flags, rest = frames[0], wire.QUEUE_FLAG_BODY_ON_CHANNEL, frames[1:]
            if len(data) > wire.MAX_QUEUE_MESSAGE:  # config bounds the head; never hang on it
                log.error("request head of %d bytes does not fit the worker queue; answering 502", len(data))
                exchange.sink.php_failed()
                return True
        request_id = self.next_id
        try:
            self.queue.send(wire.QUEUE_HEADER.pack(request_id, flags, self.front_index) + data,
                            socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False  # the queue's buffer is full: wait here instead
        self.next_id += 1
        exchange.request_id = request_id
        exchange.frames = rest
        self.sent[request_id] = exchange
        return True

    def _refill(self) -> None:
        waiting = self.waiting
        while waiting:
            exchange = waiting[0]
            if exchange.cancelled or self._send(exchange):
                waiting.popleft()
            else:
                return

    def taken(self, channel: WorkerChannel, request_id: int, flags: int = 0) -> None:
        """The worker on `channel` took request `request_id` from the queue."""
        exchange = self.sent.pop(request_id, None)
        self.running += 1
        if exchange is None:  # queued by this front's previous process: nobody waits for it
            exchange = Exchange([], _Discard(), None)
            exchange.cancelled = True
            if flags & wire.QUEUE_FLAG_BODY_ON_CHANNEL:
                # the worker waits for a body that died with that process: end it there
                log.warning("php worker pid %d took a request of a previous front process that "
                            "still needed its body; closing its channel", channel.pid)
                channel.close()
        channel.exchange = exchange
        channel.head_seen = False
        exchange.channel = channel
        if exchange.frames:
            channel.send(b"".join(exchange.frames))  # the body that waited for a worker
            exchange.frames = []
        if exchange.on_started is not None:
            exchange.on_started(exchange)

    def finished(self, channel: WorkerChannel) -> None:
        self.running -= 1
        if channel.exiting:
            channel.close()  # the worker leaves after its quota (max_requests)
        self._refill()

    # -- workers coming and going ------------------------------------------------------------
    def worker_hello(self, channel: WorkerChannel) -> None:
        self.channels.add(channel)
        self.ready += 1
        self.on_event(events.WorkerReady(channel.worker_id, channel.pid, channel.generation))
        self._refill()

    def worker_quota(self, channel: WorkerChannel, reason: str = "max_requests", value: int = 0) -> None:
        """The worker reached max_requests (or max_memory): the master starts its replacement,
        then retires it."""
        self.on_event(events.WorkerQuota(channel.worker_id, channel.pid, reason, value))

    def retire(self, worker_id: int, pid: int) -> None:
        """Stop `worker_id` taking requests: it finishes the one it holds, then exits.

        The scoreboard's stop word reaches it when busy (it checks between requests, no syscall);
        STOP on its channel wakes it when idle (it waits on both the queue and the channel).
        """
        self.scoreboard.stop(worker_id, pid)
        for channel in self.channels:
            if channel.worker_id == worker_id and channel.pid == pid:
                channel.send(wire.STOP_FRAME)

    def check_lost(self) -> None:
        """Called by the front's sweeper. A request can vanish between the queue and the front:
        a worker takes it and answers, but the front has just closed that worker's channel (its
        client left mid-response), so the answer is never read. Such a request is in `sent`
        forever and holds a place in the queue's budget. When the queue is empty (nothing waits
        in it: SIOCOUTQ of our end is 0) and no worker's scoreboard slot holds an id from
        `sent`, at two checks in a row, that request is lost: fail it (502) and free its place."""
        if not self.sent:
            self.unaccounted.clear()
            return
        try:
            queued = struct.unpack("i", fcntl.ioctl(self.queue.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        except OSError:
            return
        if queued:
            self.unaccounted.clear()
            return
        held = {self._holding(channel) for channel in self.channels}
        suspects = {request_id for request_id in self.sent if request_id not in held}
        lost = suspects & self.unaccounted
        self.unaccounted = suspects - lost
        for request_id in lost:
            exchange = self.sent.pop(request_id)
            log.error("a request taken by a PHP worker was never answered (its channel had closed); "
                      "failing it")
            if not exchange.cancelled:
                exchange.sink.php_failed()
        if lost:
            self._refill()

    def timed_out(self, exchange: Exchange, method: bytes, url: bytes, seconds: float) -> None:
        """A request ran past request_timeout: log it, and have the master kill its worker (PHP
        cannot be interrupted otherwise). Its client gets 504 from the caller."""
        channel = self.holder(exchange)
        where = "waiting for a PHP worker" if channel is None else f"on php worker pid {channel.pid}"
        log.error("request timeout: %s %s ran longer than %g s (%s); answering 504",
                  method.decode(), url.decode("latin-1"), seconds, where)
        if channel is not None:
            self.on_event(events.RequestTimeout(channel.worker_id, channel.pid, url.decode("latin-1")))

    def holder(self, exchange: Exchange) -> WorkerChannel | None:
        """The worker running `exchange`. Its TAKEN comes with the response, so until then the
        scoreboard is where a worker says which request it holds."""
        if exchange.channel is not None:
            return exchange.channel
        if not exchange.request_id:
            return None
        return next((c for c in self.channels if self._holding(c) == exchange.request_id), None)

    def _holding(self, channel: WorkerChannel) -> int:
        """The request id the worker on `channel` holds, per its scoreboard slot (0: none)."""
        return self.scoreboard.holding(channel.worker_id, channel.pid)

    def worker_gone(self, channel: WorkerChannel, exchange: Exchange | None) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        self.ready -= 1
        if exchange is None:
            exchange = self._held_by_dead_worker(channel)
        else:
            self.running -= 1
        if exchange is not None and not exchange.cancelled:
            # What the front gave up on (504 and the master's kill, a client gone) was cancelled
            # first: what is left here is a crash.
            exchange.sink.php_failed(None if channel.head_seen else channel)
        self.on_event(events.WorkerGone(channel.worker_id, channel.pid))

    def _held_by_dead_worker(self, channel: WorkerChannel) -> Exchange | None:
        """A request the worker took but had not yet answered (its TAKEN never arrived)."""
        request_id = self._holding(channel)
        return self.sent.pop(request_id, None) if request_id else None  # TAKEN never counted it

    def close_all(self) -> None:
        for channel in list(self.channels):
            channel.close()
        with contextlib.suppress(OSError):
            self.queue.close()
