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
import os
import signal
import socket

import uvloop

from askr import config as config_mod
from askr import log as log_setup
from askr.bridge.events import WorkerEvent
from askr.bridge.pool import WorkerPool
from askr.config import Config
from askr.front import static, tls
from askr.front.compression import compression_of
from askr.front.context import FrontContext
from askr.front.hotfiles import HotFiles
from askr.front.http1 import Http1Connection
from askr.front.negotiate import AlpnSelector, PriorKnowledgeSniffer, RedirectToHttps
from askr.front.proxy import ProxyTrust
from askr.front.routecache import RouteCache
from askr.front.router import Router
from askr.front.stream import Connection
from askr.front.xsendfile import FileOffload
from askr.log import AccessLog
from askr.metrics import STATS_INTERVAL
from askr.readiness import STOPPING

log = logging.getLogger("askr.front")

SWEEP_INTERVAL = 0.25  # resolution of header/keep-alive timeouts
TLS_SHUTDOWN_TIMEOUT = 5.0  # a TLS close waits this long for the client's close_notify


class Front:
    def __init__(self, config: Config, listen_fds: list[int], channel_fd: int, control_fd: int,
                 queue_fd: int, scoreboard: str, redirect_fd: int | None = None, index: int = 0,
                 ticket_keys: bytes | None = None):
        self.config = config
        self.ticket_keys = ticket_keys  # the master's, so every front resumes every TLS session
        self.listen_fds = listen_fds
        self.redirect_fd = redirect_fd
        self.tls_context = None
        # [compression], one per front: its caches and idle zstd compressors serve the PHP and
        # static responses and every router's hot-file cache (make_router runs on each reload)
        self.compression = compression_of(config)
        # opened now: before a privilege drop, while the file may still be root's
        access = config.log.access
        self.access = AccessLog(access, config.log.access_file) if access != "off" else None
        self.channel_fd = channel_fd
        self.queue = socket.socket(fileno=queue_fd)
        self.index = index  # which front this is: workers answer its requests on its channel
        self.scoreboard_path = scoreboard
        self.control = socket.socket(fileno=control_fd)
        self.servers: list[asyncio.AbstractServer] = []
        self.stopped = asyncio.Event()
        self.aborting = False  # stopping at once (SIGINT/SIGQUIT): cut connections, answer nothing
        self.drain_pending = False  # SIGTERM came and [server] drain_delay runs
        self.tasks: set[asyncio.Task] = set()

    def spawn_task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send_event(self, event: WorkerEvent | dict) -> None:
        """A worker event (askr/bridge/events.py), or the stats counters, to the master."""
        line = event.to_line() if isinstance(event, WorkerEvent) else json.dumps(event).encode() + b"\n"
        with contextlib.suppress(OSError):  # the master is gone; we are about to be stopped anyway
            self.control.sendall(line)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        with open(self.scoreboard_path, "r+b") as f:
            scoreboard = mmap.mmap(f.fileno(), 0)  # writable: the stop word retires a worker
        pool = WorkerPool(self.queue, scoreboard, cfg.limits.max_queue, self.send_event, self.index)
        router = self.make_router()
        static.configure_types(static.build_types(cfg.static.charset, cfg.static.charset_types,
                                                  cfg.static.types))
        ctx = FrontContext(cfg, loop, router, pool, cfg.server.root.encode(),
                           ProxyTrust(cfg.server.trusted_proxies), self.access,
                           health_path=cfg.server.health_path.encode() or None,
                           offload=FileOffload.from_config(cfg.static.sendfile_roots,
                                                           cfg.static.internal_locations),
                           compression=self.compression)
        self.ctx = ctx
        channel_sock = socket.socket(fileno=self.channel_fd)
        self.servers.append(await loop.create_unix_server(pool.protocol_factory, sock=channel_sock))
        if cfg.tls.enabled:
            self.tls_context = tls.server_context(cfg.tls.cert, cfg.tls.key,  # type: ignore[arg-type]
                                                  ticket_keys=self.ticket_keys)
            factory = lambda: AlpnSelector(ctx)  # noqa: E731
        elif cfg.server.h2c:
            factory = lambda: PriorKnowledgeSniffer(ctx)  # noqa: E731
        else:
            factory = lambda: Http1Connection(ctx)  # noqa: E731
        listen_socks = [socket.socket(fileno=fd) for fd in self.listen_fds]
        https_port = listen_socks[0].getsockname()[1]  # where redirect_http sends clients
        for sock in listen_socks:
            self.servers.append(await loop.create_server(
                factory, sock=sock, backlog=1024, ssl=self.tls_context,
                ssl_handshake_timeout=cfg.limits.header_timeout if self.tls_context else None,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT if self.tls_context else None))
        if self.redirect_fd is not None:
            sock = socket.socket(fileno=self.redirect_fd)
            self.servers.append(await loop.create_server(lambda: RedirectToHttps(ctx, https_port), sock=sock,
                                                         backlog=1024))
        # The master decides what a signal means for the whole tree; these are for when one is
        # sent to every askr process at once (systemd's KillMode=control-group, kill -PGID, a
        # terminal's Ctrl-C): the same drain or stop it would order, and a reload is its business.
        loop.add_signal_handler(signal.SIGTERM, self.sigterm)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        loop.add_signal_handler(signal.SIGINT, self.stop_now)
        loop.add_signal_handler(signal.SIGQUIT, self.stop_now)
        self.spawn_task(self.read_control())
        self.spawn_task(self.sweep_deadlines())
        self.spawn_task(self.report_stats())
        gc.freeze()  # everything allocated so far lives for the whole process
        # Requests allocate a few short-lived containers each; collecting the young generation
        # every 700 allocations costs more than it frees here (no per-request cycles).
        gc.set_threshold(50_000, 20, 20)
        await self.stopped.wait()
        if self.aborting:  # cut the clients off before the workers' channels close: no 502s
            for conn in list(ctx.connections):
                if conn.transport is not None:
                    conn.transport.abort()
        if self.access is not None:
            self.access.flush()
        for server in self.servers:
            server.close()
        pool.close_all()

    def sigterm(self) -> None:
        """SIGTERM sent to every askr process at once: with [server] drain_delay the front serves
        on for the delay, as the master does (a second SIGTERM drains now). The master's own
        order to drain comes as a `drain` command, which never waits."""
        delay = self.config.server.drain_delay
        if delay and not self.drain_pending:
            self.drain_pending = True
            self.ctx.readiness = STOPPING
            asyncio.get_running_loop().call_later(delay, lambda: self.spawn_task(self.drain()))
        else:
            self.spawn_task(self.drain())

    def stop_now(self) -> None:
        """SIGINT/SIGQUIT: no drain; connections are cut, not answered."""
        self.aborting = True
        self.stopped.set()

    def make_router(self) -> RouteCache:
        """Resolves the document root now: after a symlink swap, a new router serves the new tree."""
        cfg = self.config
        router = Router(cfg.server.root, worker_mode=cfg.worker.script is not None)
        hot = HotFiles(router, cfg.static.cache_size, compression=self.compression) \
            if cfg.static.cache_size else None
        return RouteCache(router, hot=hot)

    async def sweep_deadlines(self) -> None:
        loop = asyncio.get_running_loop()
        connections = self.ctx.connections
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            for conn in list(connections):
                conn.check_deadline(now)
            if self.ctx.pool.sent:
                self.ctx.pool.check_lost()
            if self.access is not None:
                self.access.flush()

    async def report_stats(self) -> None:
        """Counters for the master's /metrics, cumulative, every STATS_INTERVAL seconds, and the
        traffic now: requests in flight, seconds since the latest one (askr drain --wait)."""
        ctx = self.ctx
        pool, stats = ctx.pool, ctx.stats
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            in_flight = sum(c.requests_in_flight() for c in ctx.connections if isinstance(c, Connection))
            idle = ctx.loop.time() - stats.last_request if stats.last_request else None
            self.send_event({"event": "stats", **stats.snapshot(), "waiting": pool.probe_waiting(),
                             "peak_waiting": pool.peak_waiting, "saturations": pool.saturations,
                             "in_flight": in_flight, "idle_seconds": idle})

    async def read_control(self) -> None:
        """Commands from the master, one JSON object per line; EOF means it is gone."""
        reader, _ = await asyncio.open_connection(sock=self.control)
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("cmd") == "retire":
                self.ctx.pool.retire(command["worker_id"], command["pid"])
            elif command.get("cmd") == "drain":  # the master's stop (after its drain_delay)
                self.spawn_task(self.drain())
            elif command.get("cmd") == "readiness":  # the master's verdict changed ([server] health_path)
                self.ctx.readiness = command["state"]
            elif command.get("cmd") == "reload":
                try:
                    self.ctx.router = self.make_router()
                except (OSError, ValueError) as e:  # the root vanished mid-deploy: keep the old view
                    log.error("reload: cannot resolve the document root: %s; keeping the previous one", e)
                self.reload_certificate()
                if self.access is not None:
                    self.access.reopen()
            else:
                log.error("unknown command from the master: %r", command)
        self.stopped.set()

    def reload_certificate(self) -> None:
        """A renewed certificate: new handshakes use it; open connections are not touched."""
        cfg = self.config.tls
        if self.tls_context is None or cfg.cert is None or cfg.key is None:
            return
        try:
            tls.reload_pair(self.tls_context, cfg.cert, cfg.key)
        except (tls.TlsError, OSError, ValueError) as e:
            log.error("reload: keeping the current TLS certificate: [tls] %s", e)
            return
        log.info("reload: TLS certificate re-read from %s", cfg.cert)

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


def schedule(cfg: Config) -> None:
    """[server] front_scheduling and front_priority, set while the front may still be root (a
    negative nice needs it). The numbers behind both defaults are in docs/deployment.md."""
    server = cfg.server
    if server.front_scheduling == "batch":
        # woken, it waits for the running process's turn to end rather than preempting it, then
        # takes every event that came meanwhile: fewer wake-ups per request
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    if server.front_priority != os.getpriority(os.PRIO_PROCESS, 0):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, server.front_priority)
        except PermissionError:
            log.info("front runs at nice %d: [server] front_priority = %d needs root or CAP_SYS_NICE",
                     os.getpriority(os.PRIO_PROCESS, 0), server.front_priority)


def drop_privileges(uid: int, gid: int) -> None:
    """[server] user: the front starts as root (the interpreter may live where only root can
    read) and switches once everything it needs is imported and its sockets are inherited."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="askr-front")
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--listen-fds", required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--queue-fd", type=int, required=True)
    parser.add_argument("--front-index", type=int, default=0)
    parser.add_argument("--scoreboard", required=True)
    parser.add_argument("--redirect-fd", type=int)
    parser.add_argument("--ticket-keys-fd", type=int, help="a pipe with the TLS session ticket keys")
    parser.add_argument("--run-as", metavar="UID:GID", help="drop root to this user once started")
    args = parser.parse_args(argv)
    with open(args.config_json) as f:
        cfg = config_mod.restore(f.read())
    log_setup.setup(cfg.log.level, cfg.log.format)
    ticket_keys = None
    if args.ticket_keys_fd is not None:
        with open(args.ticket_keys_fd, "rb") as pipe:
            ticket_keys = pipe.read()
    front = Front(cfg, [int(x) for x in args.listen_fds.split(",")], args.channel_fd, args.control_fd,
                  args.queue_fd, args.scoreboard, args.redirect_fd, args.front_index, ticket_keys)
    schedule(cfg)
    if args.run_as:
        drop_privileges(*(int(x) for x in args.run_as.split(":")))
    uvloop.run(front.run())


if __name__ == "__main__":
    main()
