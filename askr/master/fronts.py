"""The front processes, as the master runs them: their sockets, start, restart and control lines.

The master binds every socket a front uses (the listen sockets, the channel PHP workers connect
to, the request queue all fronts share), so a front that dies is replaced on the same sockets and
no port is ever closed; the workers reconnect to its channel, and its death costs only its own
connections. Each front reports on a control socket, one JSON object per line; worker
events go onto the master's queue, stats lines straight to the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from askr import config as config_mod
from askr import readiness
from askr.bridge import events
from askr.certificates import TICKET_KEYS_SIZE
from askr.config import Config
from askr.master import sockets
from askr.master.events import Event, FrontEvent
from askr.master.history import History
from askr.metrics import MasterMetrics

log = logging.getLogger("askr.master")


@dataclass
class FrontHandle:
    """One front process and the channel socket every PHP worker connects to (kept across restarts)."""

    index: int  # in each queue message it sends: the channel a worker answers on
    channel_sock: socket.socket
    channel_path: str
    proc: subprocess.Popen | None = None
    control: asyncio.StreamWriter | None = None  # commands to the front, one JSON per line

    def command(self, cmd: dict) -> None:
        if self.control is not None and not self.control.is_closing():
            self.control.write(json.dumps(cmd).encode() + b"\n")


class Fronts:
    def __init__(self, config: Config, run_as: tuple[int, int] | None, post: Callable[[Event], None],
                 metrics: MasterMetrics, track: Callable[[Coroutine[Any, Any, None]], None]):
        self.config = config
        self.run_as = run_as
        self.post = post
        self.metrics = metrics
        self.track = track  # runs a coroutine as a task the arbiter cancels on shutdown
        self.history: History | None = None  # the dashboard's traffic history, fed each stats report
        self.handles: list[FrontHandle] = []
        self.listen_shards: list[list[socket.socket]] = []  # per front: its socket per address
        self.redirect_sock: socket.socket | None = None
        self.runtime_dir = ""
        self.scoreboard_path = ""
        self.readiness = readiness.BOOTING  # the verdict every front has (or gets on connecting)
        # One request queue: every front sends into it, every PHP worker takes from it.
        self.queue_front, self.queue_workers = sockets.request_queue()
        # TLS session tickets: one key for all fronts and their replacements, for the master's
        # life (a restart makes new ones, as nginx does without ssl_session_ticket_key).
        self.ticket_keys = os.urandom(TICKET_KEYS_SIZE) if config.tls.enabled else None

    def bind(self, runtime_dir: str, scoreboard_path: str, workers: int) -> None:
        """The listen sockets (each front its own, askr/master/sockets.py says why), then one
        channel socket per front."""
        server = self.config.server
        by_address = [sockets.bind_shards(address, server.fronts) for address in server.listen]
        self.listen_shards = [list(front_socks) for front_socks in zip(*by_address, strict=True)]
        redirect = server.redirect_http
        self.redirect_sock = sockets.bind_tcp(redirect, key="[server] redirect_http") if redirect else None
        self.runtime_dir, self.scoreboard_path = runtime_dir, scoreboard_path
        for index in range(server.fronts):
            path = os.path.join(runtime_dir, f"front-{index}.sock")
            sock = sockets.bind_unix(path, backlog=max(128, 4 * workers))
            self.handles.append(FrontHandle(index, sock, path))

    @property
    def listen_socks(self) -> list[socket.socket]:
        """One socket per listen address (the first front's): what the addresses are."""
        return self.listen_shards[0] if self.listen_shards else []

    def socket_names(self) -> list[str]:
        """The runtime dir's entries the fronts' user must be able to open."""
        return [f"front-{i}.sock" for i in range(len(self.handles))]

    def channel_paths(self) -> str:
        """What a worker connects to: every front's channel socket, in front order."""
        return ",".join(f.channel_path for f in self.handles)

    def running(self) -> bool:
        return any(f.proc is not None for f in self.handles)

    def connected(self) -> int:
        """Fronts running with their control line up: taking connections (/api/health/live)."""
        return sum(f.proc is not None and f.control is not None and not f.control.is_closing()
                   for f in self.handles)

    def tell_readiness(self, state: str) -> None:
        """The master's readiness changed: every front answers [server] health_path with it."""
        if state != self.readiness:
            self.readiness = state
            self.command_all({"cmd": "readiness", "state": state})

    def start_all(self) -> None:
        for front in self.handles:
            self.start(front)

    def start(self, front: FrontHandle) -> None:
        config_path = os.path.join(self.runtime_dir, "config.json")
        if not os.path.exists(config_path):
            with open(config_path, "w") as f:
                f.write(config_mod.dump(self.config))
        ours, theirs = socket.socketpair()
        fds = [s.fileno() for s in self.listen_shards[front.index]]
        channel_fd = front.channel_sock.fileno()
        queue_fd = self.queue_front.fileno()
        cmd = [sys.executable, "-m", "askr.front", "--config-json", config_path,
               "--listen-fds", ",".join(map(str, fds)), "--channel-fd", str(channel_fd),
               "--control-fd", str(theirs.fileno()), "--queue-fd", str(queue_fd),
               "--front-index", str(front.index),
               "--scoreboard", self.scoreboard_path]
        if self.run_as is not None:
            cmd += ["--run-as", f"{self.run_as[0]}:{self.run_as[1]}"]
        if self.redirect_sock is not None:
            cmd += ["--redirect-fd", str(self.redirect_sock.fileno())]
            fds.append(self.redirect_sock.fileno())
        if self.ticket_keys is not None:  # a pipe, not argv or the environment: it is a secret
            keys_read, keys_write = os.pipe()
            os.write(keys_write, self.ticket_keys)  # 80 bytes: within any pipe's buffer
            os.close(keys_write)
            cmd += ["--ticket-keys-fd", str(keys_read)]
            fds.append(keys_read)
        front.proc = subprocess.Popen(cmd, pass_fds=[*fds, channel_fd, theirs.fileno(), queue_fd],
                                      stdin=subprocess.DEVNULL)
        theirs.close()
        if self.ticket_keys is not None:
            os.close(keys_read)
        self.track(self._read(front, ours))
        log.info("front #%d started (pid %d)", front.index, front.proc.pid)

    async def _read(self, front: FrontHandle, sock: socket.socket) -> None:
        reader, front.control = await asyncio.open_connection(sock=sock)
        front.command({"cmd": "readiness", "state": self.readiness})  # a new process knows nothing yet
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if msg.get("event") == "stats":  # counters only: no lifecycle decision, no queueing
                    self.metrics.front_stats(front.index, msg)
                    if self.history is not None:
                        self.history.front_report(front.index, msg)
                elif (event := events.parse(msg)) is not None:
                    self.post(FrontEvent(event))
                else:
                    log.warning("front #%d sent an event askr does not know: %.200s", front.index, line)
        except ConnectionError:
            pass  # a command written as the front exited broke the pipe: it is gone, as at EOF

    def command_all(self, cmd: dict) -> None:
        for front in self.handles:
            front.command(cmd)

    def signal(self, sig: int) -> None:
        for front in self.handles:
            if front.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    front.proc.send_signal(sig)

    def restart(self, front: FrontHandle) -> None:
        """A new process on the same sockets. The workers connect to it again as they notice the
        old one's channels close; what the old one had queued is answered to the new one, which
        does not know those ids and drops the answers."""
        self.start(front)

    def reaped(self, pid: int, status: int) -> FrontHandle | None:
        """The front that was `pid`, now marked gone; None if `pid` was no front."""
        front = next((f for f in self.handles if f.proc is not None and f.proc.pid == pid), None)
        if front is not None:
            front.proc.returncode = os.waitstatus_to_exitcode(status)  # type: ignore[union-attr]
            front.proc = None
        return front

    def close_queues(self) -> None:
        """Shutdown: with the master's copy of the queue's front end closed (the fronts have
        exited), idle workers waiting on it see it end and exit."""
        self.queue_front.close()

    def cleanup(self) -> None:
        for front in self.handles:
            if front.proc is not None and front.proc.poll() is None:
                front.proc.kill()
        redirect = [self.redirect_sock] if self.redirect_sock else []
        for sock in [*itertools.chain(*self.listen_shards), *redirect]:
            sock.close()
