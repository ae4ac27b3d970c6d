"""The front process: accepts HTTP on the master's listen sockets and PHP-worker channels on its
channel socket, reports worker readiness to the master, and drains on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import mmap
import signal
import socket
from dataclasses import dataclass, field

import uvloop

from askr import config as config_mod
from askr import log as log_setup
from askr.bridge.pool import WorkerPool
from askr.config import Config
from askr.front.http1 import Http1Connection
from askr.front.router import RouteCache, Router

log = logging.getLogger("askr.front")

SWEEP_INTERVAL = 0.25  # resolution of header/keep-alive timeouts


@dataclass
class FrontContext:
    config: Config
    loop: asyncio.AbstractEventLoop
    router: RouteCache
    pool: WorkerPool
    root_bytes: bytes
    connections: set = field(default_factory=set)
    draining: bool = False
    all_closed: asyncio.Event = field(default_factory=asyncio.Event)

    def connection_closed(self, conn: object) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.all_closed.set()


class Front:
    def __init__(self, config: Config, listen_fds: list[int], channel_fd: int, control_fd: int,
                 queue_fd: int, scoreboard: str):
        self.config = config
        self.listen_fds = listen_fds
        self.channel_fd = channel_fd
        self.queue = socket.socket(fileno=queue_fd)
        self.scoreboard_path = scoreboard
        self.control = socket.socket(fileno=control_fd)
        self.servers: list[asyncio.AbstractServer] = []
        self.stopped = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    def spawn_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_event(self, event: dict) -> None:
        with contextlib.suppress(OSError):  # the master is gone; we are about to be stopped anyway
            self.control.sendall(json.dumps(event).encode() + b"\n")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        with open(self.scoreboard_path, "r+b") as f:
            scoreboard = mmap.mmap(f.fileno(), 0)  # writable: the stop word retires a worker
        pool = WorkerPool(self.queue, scoreboard, cfg.limits.max_queue, self.send_event)
        router = self.make_router()
        ctx = FrontContext(cfg, loop, router, pool, cfg.server.root.encode())
        self.ctx = ctx
        channel_sock = socket.socket(fileno=self.channel_fd)
        self.servers.append(await loop.create_unix_server(pool.protocol_factory, sock=channel_sock))
        for fd in self.listen_fds:
            sock = socket.socket(fileno=fd)
            self.servers.append(
                await loop.create_server(lambda: Http1Connection(ctx), sock=sock, backlog=1024)
            )
        loop.add_signal_handler(signal.SIGTERM, lambda: self.spawn_task(self.drain()))
        loop.add_signal_handler(signal.SIGINT, self.stopped.set)
        loop.add_signal_handler(signal.SIGQUIT, self.stopped.set)
        self.spawn_task(self.read_control())
        self.spawn_task(self.sweep_deadlines())
        gc.freeze()  # everything allocated so far lives for the whole process
        # Requests allocate a few short-lived containers each; collecting the young generation
        # every 700 allocations costs more than it frees here (no per-request cycles).
        gc.set_threshold(50_000, 20, 20)
        await self.stopped.wait()
        for server in self.servers:
            server.close()
        pool.close_all()

    def make_router(self) -> RouteCache:
        """Resolves the document root now: after a symlink swap, a new router serves the new tree."""
        cfg = self.config
        return RouteCache(Router(cfg.server.root, worker_mode=cfg.worker.script is not None))

    async def sweep_deadlines(self) -> None:
        loop = asyncio.get_running_loop()
        connections = self.ctx.connections
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            for conn in list(connections):
                conn.check_deadline(now)

    async def read_control(self) -> None:
        """Commands from the master, one JSON object per line; EOF means it is gone."""
        reader, _ = await asyncio.open_connection(sock=self.control)
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("cmd") == "retire":
                self.ctx.pool.retire(command["worker_id"], command["pid"])
            elif command.get("cmd") == "reload":
                try:
                    self.ctx.router = self.make_router()
                except (OSError, ValueError) as e:  # the root vanished mid-deploy: keep the old view
                    log.error("reload: cannot resolve the document root: %s; keeping the previous one", e)
            else:
                log.error("unknown command from the master: %r", command)
        self.stopped.set()

    async def drain(self) -> None:
        """Stop accepting; finish in-flight requests; close idle keep-alives; then stop."""
        ctx = self.ctx
        if ctx.draining:
            return
        ctx.draining = True
        log.info("draining: %d open connections", len(ctx.connections))
        for server in self.servers[1:]:
            server.close()
        for conn in list(ctx.connections):
            conn.shutdown()
        if ctx.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.all_closed.wait(), ctx.config.server.graceful_timeout)
        if ctx.connections:
            log.warning("graceful timeout: closing %d connections still open", len(ctx.connections))
        self.stopped.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="askr-front")
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--listen-fds", required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--queue-fd", type=int, required=True)
    parser.add_argument("--scoreboard", required=True)
    args = parser.parse_args(argv)
    log_setup.setup()
    with open(args.config_json) as f:
        cfg = config_mod.restore(f.read())
    front = Front(cfg, [int(x) for x in args.listen_fds.split(",")], args.channel_fd, args.control_fd,
                  args.queue_fd, args.scoreboard)
    uvloop.run(front.run())


if __name__ == "__main__":
    main()
