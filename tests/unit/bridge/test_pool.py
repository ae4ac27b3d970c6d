"""WorkerPool and WorkerChannel over real socketpairs: the test plays the PHP worker, speaking
the wire protocol of docs/internals.md, so the pool's dispatch, accounting and failure paths run
without PHP, a master or HTTP."""

from __future__ import annotations

import asyncio
import mmap
import socket
import struct
from collections.abc import Awaitable, Callable

from askr.bridge import wire
from askr.bridge.events import WorkerEvent, WorkerGone, WorkerQuota, WorkerReady
from askr.bridge.pool import Exchange, WorkerChannel, WorkerPool
from askr.bridge.scoreboard import SLOT

PID = 4321
WORKER_ID = 1
FRONT_INDEX = 3


class Sink:
    """Records what the pool tells a stream."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.done = asyncio.Event()

    def php_response(self, status: int, header_block: bytes, body: list[bytes], complete: bool) -> None:
        self.calls.append(("response", status, header_block, b"".join(body), complete))
        if complete:
            self.done.set()

    def php_body(self, body: list[bytes], complete: bool) -> None:
        self.calls.append(("body", b"".join(body), complete))
        if complete:
            self.done.set()

    def php_failed(self, crashed: WorkerChannel | None = None) -> None:
        """Recorded with the pid of the worker that crashed holding the request (None: lost)."""
        self.calls.append(("failed", crashed.pid if crashed is not None else None))
        self.done.set()

    def php_backpressure(self, paused: bool) -> None:
        self.calls.append(("backpressure", paused))

    def php_informational(self, status: int, header_block: bytes) -> None:
        self.calls.append(("informational", status, header_block))


class Worker:
    """The PHP worker's ends: its channel to the front, and the shared request queue."""

    def __init__(self, channel: socket.socket, queue: socket.socket) -> None:
        self.channel = channel
        self.queue = queue

    def say(self, *frames: bytes) -> None:
        self.channel.sendall(b"".join(frames))

    def hello(self) -> None:
        self.say(wire.frame(wire.HELLO, struct.pack("!III", WORKER_ID, PID, 7)))

    async def take(self) -> tuple[int, int, bytes]:
        """The next queue message: (request id, flags, frames)."""
        loop = asyncio.get_running_loop()
        message = await asyncio.wait_for(loop.sock_recv(self.queue, wire.MAX_QUEUE_MESSAGE + 64), 10)
        request_id, flags, front = wire.QUEUE_HEADER.unpack_from(message)
        assert front == FRONT_INDEX  # the channel the answer must come back on
        return request_id, flags, message[wire.QUEUE_HEADER.size:]

    def read_channel(self) -> bytes:
        self.channel.setblocking(False)
        try:
            return self.channel.recv(65536)
        except BlockingIOError:
            return b""
        finally:
            self.channel.setblocking(True)


def head(status: int, *lines: bytes) -> bytes:
    return wire.frame(wire.HEAD, struct.pack("!H", status) + b"\n".join(lines))


def taken(request_id: int, flags: int = 0) -> bytes:
    return wire.frame(wire.TAKEN, struct.pack("!QB", request_id, flags))


def end(flags: int = 0) -> bytes:
    return wire.frame(wire.END, bytes([flags]))


def run(board: mmap.mmap, scenario: Callable[..., Awaitable[None]]) -> None:
    """Run `scenario(pool, worker, events)` on a fresh loop: a pool with one connected worker
    channel (HELLO not yet sent), the worker's ends, and the events the pool reports."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        queue_front, queue_worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        queue_front.setblocking(False)
        queue_worker.setblocking(False)
        events: list[WorkerEvent] = []
        pool = WorkerPool(queue_front, board, max_queue=3, on_event=events.append, front_index=FRONT_INDEX)
        front_end, worker_end = socket.socketpair()
        await loop.connect_accepted_socket(pool.protocol_factory, sock=front_end)
        try:
            await scenario(pool, Worker(worker_end, queue_worker), events)
        finally:
            pool.close_all()
            worker_end.close()
            queue_worker.close()

    asyncio.run(main())


async def until(predicate, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def request(sink: Sink, started: list | None = None) -> Exchange:
    frames = [wire.encode_request([b"REQUEST_METHOD", b"GET"], [b"Host", b"x"]), wire.BODY_END_FRAME]
    return Exchange(frames, sink, started.append if started is not None else None)


async def ready(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
    worker.hello()
    await until(lambda: pool.ready == 1, "HELLO")
    assert events[-1] == WorkerReady(WORKER_ID, PID, 7)


def test_a_request_goes_through_the_queue_and_its_answer_to_the_sink(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink, started = Sink(), []
        exchange = request(sink, started)
        assert pool.submit(exchange)
        request_id, flags, frames = await worker.take()
        assert flags == 0 and frames.endswith(wire.BODY_END_FRAME)  # the whole request in one message
        assert frames.startswith(wire.encode_request([b"REQUEST_METHOD", b"GET"], [b"Host", b"x"]))
        worker.say(taken(request_id), head(200, b"Content-Type: text/plain"),
                   wire.frame(wire.RESP_BODY, b"hello"), end())
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls == [("response", 200, b"Content-Type: text/plain", b"hello", True)]
        assert started == [exchange] and exchange.channel is not None and exchange.channel.pid == PID
        assert (pool.running, pool.sent) == (0, {})

    run(board, scenario)


def test_a_streamed_answer_arrives_in_pieces_in_order(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        worker.say(taken(request_id), head(200, b"X-A: 1"), wire.frame(wire.RESP_BODY, b"one"))
        await until(lambda: sink.calls, "the head")
        worker.say(wire.frame(wire.RESP_BODY, b"two"), end())
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls[0] == ("response", 200, b"X-A: 1", b"one", False)
        assert sink.calls[-1] == ("body", b"two", True)

    run(board, scenario)


def test_early_hints_come_before_the_response(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        hints = wire.frame(wire.EARLY_HINTS, struct.pack("!H", 103) + b"Link: </a.css>")
        worker.say(taken(request_id), hints, head(200), end())
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls == [("informational", 103, b"Link: </a.css>"), ("response", 200, b"", b"", True)]

    run(board, scenario)


def test_a_worker_that_dies_mid_request_fails_it_and_is_reported(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        worker.say(taken(request_id))
        await until(lambda: pool.running == 1, "TAKEN")
        worker.channel.close()
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls == [("failed", PID)]  # a crash before any response: the stream may retry
        assert events[-1] == WorkerGone(WORKER_ID, PID)
        assert (pool.ready, pool.running) == (0, 0)

    run(board, scenario)


def test_a_worker_that_dies_before_its_taken_arrives_is_found_through_the_scoreboard(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        # what the C worker stores when it takes a request
        SLOT.pack_into(board, WORKER_ID * SLOT.size, request_id, PID, 0, 0, 0, 0, b"/", 0, 0, 0, 0, 0)
        worker.channel.close()  # crashed before its TAKEN reached the front
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls == [("failed", PID)]
        assert pool.sent == {}

    run(board, scenario)


def test_a_worker_that_dies_after_its_head_is_not_reported_as_a_retryable_crash(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        worker.say(taken(request_id), head(200), wire.frame(wire.RESP_BODY, b"part"))
        await until(lambda: sink.calls, "the head")
        worker.channel.close()
        await until(lambda: len(sink.calls) == 2, "the failure")
        assert sink.calls == [("response", 200, b"", b"part", False), ("failed", None)]

    run(board, scenario)


def test_a_resubmitted_request_gets_a_fresh_id_and_goes_ahead_of_those_waiting(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        # no worker ready: everything waits, up to max_queue (3)
        waiting = [request(Sink()) for _ in range(3)]
        assert all(pool.submit(exchange) for exchange in waiting)
        assert not pool.submit(request(Sink()))  # full: 503 for a new request ...
        retry = request(Sink())
        pool.resubmit(retry)  # ... never for one already admitted, which goes first
        assert list(pool.waiting) == [retry, *waiting]
        await ready(pool, worker, events)
        first_id = (await worker.take())[0]
        assert first_id == retry.request_id and retry in pool.sent.values()
        ids = {first_id, *[(await worker.take())[0] for _ in range(3)]}
        assert len(ids) == 4  # every queueing has its own id: a dead worker's cannot match

    run(board, scenario)


def test_requests_wait_when_workers_are_busy_and_503_past_max_queue(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        # no HELLO yet: no worker is ready
        sinks = [Sink() for _ in range(4)]
        assert [pool.submit(request(s)) for s in sinks] == [True, True, True, False]  # max_queue = 3
        assert len(pool.waiting) == 3
        await ready(pool, worker, events)  # a ready worker lets the waiting ones into the queue
        ids = [(await worker.take())[0] for _ in range(3)]
        assert len(set(ids)) == 3 and not pool.waiting
        for request_id in ids:
            worker.say(taken(request_id), head(204), end())
        await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in sinks[:3])), 10)
        assert [s.calls for s in sinks[:3]] == [[("response", 204, b"", b"", True)]] * 3

    run(board, scenario)


def test_quota_and_exit_flags(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        worker.say(taken(request_id), head(200), end(wire.END_FLAG_QUOTA | wire.END_FLAG_EXITING))
        await asyncio.wait_for(sink.done.wait(), 10)
        await until(lambda: WorkerQuota(WORKER_ID, PID) in events, "the quota event")
        await until(lambda: worker.channel.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"", "the close")

    run(board, scenario)


def test_a_recycle_frame_after_the_response_reports_max_memory(board) -> None:
    """RECYCLE comes after END (the client has its answer); the worker stays in service."""
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        sink = Sink()
        pool.submit(request(sink))
        request_id, _, _ = await worker.take()
        recycle = wire.frame(wire.RECYCLE, bytes([1]) + (300 * 2**20).to_bytes(8, "big"))
        worker.say(taken(request_id), head(200), end(), recycle)
        await asyncio.wait_for(sink.done.wait(), 10)
        await until(lambda: WorkerQuota(WORKER_ID, PID, "max_memory", 300 * 2**20) in events, "the event")
        assert pool.ready == 1  # serves on until its replacement is ready

    run(board, scenario)


def test_retire_sets_the_stop_word_and_sends_stop(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        SLOT.pack_into(board, WORKER_ID * SLOT.size, 0, PID, 0, 0, 0, 0, b"", 0, 0, 0, 0, 0)
        pool.retire(WORKER_ID, PID)
        assert SLOT.unpack_from(board, WORKER_ID * SLOT.size)[2] == 1
        await until(lambda: worker.read_channel() == wire.STOP_FRAME, "STOP")

    run(board, scenario)


def test_an_answer_to_a_request_this_front_never_sent_is_discarded(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        """A previous front's request, answered after this front took over the worker."""
        await ready(pool, worker, events)
        worker.say(taken(12345), head(200), wire.frame(wire.RESP_BODY, b"stale"), end())
        await until(lambda: pool.running == 0 and not pool.sent, "the stale answer")
        sink = Sink()
        pool.submit(request(sink))  # the channel is still in step for the next one
        request_id, _, _ = await worker.take()
        worker.say(taken(request_id), head(200), end())
        await asyncio.wait_for(sink.done.wait(), 10)
        assert sink.calls == [("response", 200, b"", b"", True)]

    run(board, scenario)


def test_a_previous_fronts_request_still_waiting_for_its_body_closes_the_channel(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        """The worker waits for a body the dead front process would have streamed: nobody
        will, so the channel closes (the worker sees the abort) instead of hanging."""
        await ready(pool, worker, events)
        worker.say(taken(12345, wire.QUEUE_FLAG_BODY_ON_CHANNEL))
        await until(lambda: pool.ready == 0, "the channel to close")
        assert events[-1] == WorkerGone(WORKER_ID, PID)
        assert (pool.running, pool.sent) == (0, {})

    run(board, scenario)


def test_an_unknown_frame_type_closes_the_channel(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        worker.say(wire.frame(0x7F, b"?"))
        await until(lambda: pool.ready == 0, "the channel to close")
        assert events[-1] == WorkerGone(WORKER_ID, PID)

    run(board, scenario)


def test_probe_counts_requests_waiting_only_while_every_worker_is_busy(board) -> None:
    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        SLOT.pack_into(board, WORKER_ID * SLOT.size, 0, PID, 0, 0, 0, 0, b"", 0, 0, 0, 0, 0)
        first = Sink()
        pool.submit(request(first))
        assert pool.probe_waiting() == 0  # the worker is idle: it takes it in a moment
        request_id, _, _ = await worker.take()
        SLOT.pack_into(board, WORKER_ID * SLOT.size, request_id, PID, 0, 0, 0, 0, b"/", 0, 0, 0, 0, 0)
        assert pool.probe_waiting() == 0  # held (its TAKEN comes with the answer): not waiting
        for _ in range(2):
            pool.submit(request(Sink()))
        assert pool.probe_waiting() == 2  # the only worker is busy: both wait
        assert pool.probe_waiting(arriving=1) == 3  # and one being submitted would too
        assert (pool.peak_waiting, pool.saturations) == (3, 1)  # one episode, however many probes
        SLOT.pack_into(board, WORKER_ID * SLOT.size, 0, PID, 0, 0, 0, 0, b"", 0, 0, 0, 0, 0)
        assert pool.probe_waiting() == 0  # the worker is free again: the episode is over
        SLOT.pack_into(board, WORKER_ID * SLOT.size, request_id, PID, 0, 0, 0, 0, b"/", 0, 0, 0, 0, 0)
        assert pool.probe_waiting() == 2
        assert (pool.peak_waiting, pool.saturations, pool.waiting_now) == (3, 2, 2)

    run(board, scenario)


def test_frames_cut_anywhere_across_reads_arrive_whole(board) -> None:
    """The channel slices whole frames out of each read; a frame cut in its header or payload
    waits for the rest, and a big one is gathered over many reads."""

    async def scenario(pool: WorkerPool, worker: Worker, events: list[WorkerEvent]) -> None:
        await ready(pool, worker, events)
        (channel,) = pool.channels

        async def answer(pieces: Callable[[bytes], list[bytes]], body: bytes) -> None:
            sink = Sink()
            pool.submit(request(sink))
            request_id, _, _ = await worker.take()
            data = (taken(request_id) + head(200, b"A: 1", b"Date: x") + wire.frame(wire.RESP_BODY, body)
                    + end())
            for piece in pieces(data):
                channel.data_received(piece)
            assert sink.calls[0][:3] == ("response", 200, b"A: 1\nDate: x")
            got = sink.calls[0][3] + b"".join(call[1] for call in sink.calls[1:])
            assert got == body and sink.calls[-1][-1] is True and sink.done.is_set()
            assert not channel.buf and (pool.running, pool.sent) == (0, {})

        small = len(taken(0) + head(200, b"A: 1", b"Date: x") + wire.frame(wire.RESP_BODY, b"hello") + end())
        for cut in range(1, small):
            await answer(lambda data, cut=cut: [data[:cut], data[cut:]], b"hello")
        await answer(lambda data: [data[i:i + 1] for i in range(len(data))], b"hello")  # byte by byte
        big = bytes(range(256)) * 1024  # one 256 KiB BODY frame, as PHP's direct write of a big echo
        await answer(lambda data: [data[i:i + 1000] for i in range(0, len(data), 1000)], big)

    run(board, scenario)
