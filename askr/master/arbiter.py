"""The master's one loop: it owns every child (front, zygote, PHP workers) and acts on events.

Signal handlers, the zygote's reports and the front's events only enqueue; `run()` takes them one
at a time, so process lifecycle has exactly one owner (as gunicorn's arbiter does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from askr import config as config_mod
from askr.bridge import wire
from askr.config import Config
from askr.master import sockets
from askr.master.zygote import Zygote, ZygoteError

log = logging.getLogger("askr.master")

PR_SET_CHILD_SUBREAPER = 36
SCOREBOARD_SLOT = 16  # per worker: u64 request id, u64 pid (see askr_php.c)
STOP_TIMEOUT = 40.0  # front drain (30 s) plus margin
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
QUICK_DEATH = 2.0  # a worker that dies sooner than this after starting counts as a failure


@dataclass
class WorkerSlot:
    """One of the configured worker positions and the process currently filling it."""

    worker_id: int
    pid: int = 0
    generation: int = 0
    state: str = "starting"  # starting -> ready -> exited (or killed, on purpose, -> exited)
    started_at: float = 0.0
    failures: int = 0  # consecutive quick deaths, for backoff
    restarts: int = 0


@dataclass
class FrontHandle:
    """One front process and the channel socket its PHP workers connect to (kept across restarts)."""

    index: int
    channel_sock: socket.socket
    channel_path: str
    queue_front: socket.socket  # the front sends requests here ...
    queue_workers: socket.socket  # ... and its workers take them from here
    proc: subprocess.Popen | None = None


@dataclass
class Children:
    fronts: list[FrontHandle] = field(default_factory=list)
    zygote: Zygote | None = None

    def fronts_running(self) -> bool:
        return any(f.proc is not None for f in self.fronts)


class Arbiter:
    def __init__(self, config: Config):
        self.config = config
        self.events: asyncio.Queue[tuple] = asyncio.Queue()
        self.children = Children()
        self.slots = {i: WorkerSlot(i) for i in range(config.server.workers)}
        self.generation = 1
        self.stopping = False
        self.announced_ready = False
        self.runtime_dir = ""
        self.listen_socks: list[socket.socket] = []
        self.exit_code = 0
        self._tasks: set[asyncio.Task] = set()

    # -- setup -------------------------------------------------------------------------------
    def _become_subreaper(self) -> None:
        """Orphaned PHP workers (their zygote gone) are re-parented to us, so we can reap them."""
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_CHILD_SUBREAPER) unavailable")

    def bind(self) -> None:
        """Bind every socket first: a port problem is reported before anything starts."""
        self.listen_socks = [sockets.bind_tcp(address) for address in self.config.server.listen]
        self.runtime_dir = tempfile.mkdtemp(prefix="askr-")
        for index in range(self.config.server.fronts):
            path = os.path.join(self.runtime_dir, f"front-{index}.sock")
            sock = sockets.bind_unix(path, backlog=max(128, 4 * len(self.slots)))
            self.children.fronts.append(FrontHandle(index, sock, path, *sockets.request_queue()))
        self.scoreboard_path = os.path.join(self.runtime_dir, "scoreboard")
        with open(self.scoreboard_path, "wb") as f:
            f.truncate(SCOREBOARD_SLOT * len(self.slots))

    def front_of(self, slot: WorkerSlot) -> FrontHandle:
        """Workers are dealt to fronts round-robin; a front dispatches only to its own."""
        fronts = self.children.fronts
        return fronts[slot.worker_id % len(fronts)]

    def quota(self, worker_id: int) -> int:
        """max_requests, spread ±15% across workers so they never all recycle at once."""
        base = self.config.server.max_requests
        n = len(self.slots)
        if not base or n == 1:
            return base
        spread = 0.30 * base * worker_id / (n - 1) - 0.15 * base
        return max(1, round(base + spread))

    async def start_zygote(self) -> Zygote:
        queue_fds = [front.queue_workers.fileno() for front in self.children.fronts]
        zygote = Zygote(self.config, self.generation, self._zygote_line, queue_fds, self.scoreboard_path)
        await zygote.start()
        log.info("PHP generation %d ready (zygote pid %d)", self.generation, zygote.pid)
        return zygote

    def start_front(self, front: FrontHandle) -> None:
        config_path = os.path.join(self.runtime_dir, "config.json")
        if not os.path.exists(config_path):
            with open(config_path, "w") as f:
                f.write(config_mod.dump(self.config))
        ours, theirs = socket.socketpair()
        fds = [s.fileno() for s in self.listen_socks]
        channel_fd = front.channel_sock.fileno()
        queue_fd = front.queue_front.fileno()
        cmd = [sys.executable, "-m", "askr.front", "--config-json", config_path,
               "--listen-fds", ",".join(map(str, fds)), "--channel-fd", str(channel_fd),
               "--control-fd", str(theirs.fileno()), "--queue-fd", str(queue_fd),
               "--scoreboard", self.scoreboard_path]
        front.proc = subprocess.Popen(cmd, pass_fds=[*fds, channel_fd, theirs.fileno(), queue_fd],
                                      stdin=subprocess.DEVNULL)
        theirs.close()
        task = asyncio.get_running_loop().create_task(self._read_front(ours))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("front #%d started (pid %d)", front.index, front.proc.pid)

    async def _read_front(self, sock: socket.socket) -> None:
        reader, _ = await asyncio.open_connection(sock=sock)
        while line := await reader.readline():
            self.events.put_nowait(("front", json.loads(line)))

    def signal_fronts(self, sig: int) -> None:
        for front in self.children.fronts:
            if front.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    front.proc.send_signal(sig)

    def replace_front(self, front: FrontHandle) -> None:
        """A front died: its workers and queued requests belonged to its clients, who are gone.

        Its workers are killed first (idle ones wait on the shared queue and would otherwise take
        the new front's requests and answer the dead one), the queue is emptied, then a new front
        starts on the same sockets; replacement workers connect to it.
        """
        for slot in self.slots.values():
            if self.front_of(slot) is front and slot.pid and slot.state != "exited":
                slot.state = "killed"  # on purpose: not a failure of the worker
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
        with contextlib.suppress(BlockingIOError, OSError):
            while front.queue_workers.recv(wire.MAX_QUEUE_MESSAGE + 64, socket.MSG_DONTWAIT):
                pass
        self.start_front(front)

    # -- event producers (enqueue only) -----------------------------------------------------
    def _zygote_line(self, zygote: Zygote, fields: list[str]) -> None:
        self.events.put_nowait(("zygote", zygote, fields))

    def _signal(self, signum: int) -> None:
        self.events.put_nowait(("signal", signum))

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._become_subreaper()
        self.bind()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            loop.add_signal_handler(sig, self._signal, sig)
        try:
            try:
                self.children.zygote = await self.start_zygote()
            except ZygoteError as e:
                log.error("cannot start PHP: %s", e)
                return 1
            for front in self.children.fronts:
                self.start_front(front)
            for slot in self.slots.values():
                self.spawn(slot)
            while True:
                event = await self.events.get()
                done = self.handle(event)
                if done:
                    break
            await self.finish_stop()
            return self.exit_code
        finally:
            self.cleanup()

    def handle(self, event: tuple) -> bool:
        """Act on one event; True when the master should finish stopping."""
        kind = event[0]
        if kind == "signal":
            return self.handle_signal(event[1])
        if kind == "zygote":
            self.handle_zygote(event[1], event[2])
        elif kind == "front":
            self.handle_front(event[1])
        elif kind == "respawn":
            slot = self.slots[event[1]]
            if not self.stopping and slot.state == "exited":
                self.spawn(slot)
        return self.stopping and not self.children.fronts_running()

    def handle_signal(self, signum: int) -> bool:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum == signal.SIGTERM:
            if not self.stopping:
                log.info("SIGTERM: draining in-flight requests, then exiting")
                self.stopping = True
                self.signal_fronts(signal.SIGTERM)
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            log.info("%s: stopping now", signal.Signals(signum).name)
            self.stopping = True
            self.signal_fronts(signal.SIGQUIT)
        elif signum == signal.SIGHUP:
            log.warning("SIGHUP: rolling reload is not available yet; ignoring")
        return self.stopping and not self.children.fronts_running()

    def spawn(self, slot: WorkerSlot) -> None:
        zygote = self.children.zygote
        if zygote is None or zygote.writer is None:
            return
        slot.state = "starting"
        slot.pid = 0
        slot.started_at = time.monotonic()
        front = self.front_of(slot)
        zygote.spawn(slot.worker_id, front.channel_path, self.quota(slot.worker_id),
                     front.queue_workers.fileno())

    def handle_zygote(self, zygote: Zygote, fields: list[str]) -> None:
        if not fields:
            return
        what = fields[0]
        if what == "spawned":
            slot = self.slots[int(fields[1])]
            slot.pid = int(fields[2])
            slot.generation = zygote.generation
        elif what == "exited":
            worker_id, pid, code, sig = (int(x) for x in fields[1:5])
            self.worker_exited(self.slots[worker_id], pid, code, sig)
        elif what == "closed" and not self.stopping and zygote is self.children.zygote:
            log.error("the PHP zygote (pid %d) exited unexpectedly; starting a new one", zygote.pid)
            self.children.zygote = None
            asyncio.get_running_loop().create_task(self._restart_zygote())

    async def _restart_zygote(self) -> None:
        delay = BACKOFF_START
        while not self.stopping:
            self.generation += 1
            try:
                self.children.zygote = await self.start_zygote()
            except ZygoteError as e:
                log.error("cannot restart PHP: %s; retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            for slot in self.slots.values():
                if slot.state == "exited":
                    self.spawn(slot)
            return

    def worker_exited(self, slot: WorkerSlot, pid: int, code: int, sig: int) -> None:
        if pid != slot.pid:
            return  # a stale report about a process this slot no longer holds
        lived = time.monotonic() - slot.started_at
        on_purpose = slot.state == "killed"
        slot.state = "exited"
        if self.stopping:
            return
        how = f"killed by signal {sig}" if sig else f"exited with code {code}"
        clean = on_purpose or (not sig and code == 0)
        if clean:
            log.info("php#%d (pid %d) %s; replacing it", slot.worker_id, pid, how)
            slot.failures = 0
        else:
            log.error("php#%d (pid %d) %s; replacing it", slot.worker_id, pid, how)
            slot.failures = slot.failures + 1 if lived < QUICK_DEATH else 0
        slot.restarts += 1
        delay = 0.0 if slot.failures == 0 else min(BACKOFF_START * 2 ** (slot.failures - 1), BACKOFF_MAX)
        if delay:
            log.warning("php#%d failed %d times in a row; next start in %.1f s", slot.worker_id,
                        slot.failures, delay)
        asyncio.get_running_loop().call_later(delay, self.events.put_nowait, ("respawn", slot.worker_id))

    def handle_front(self, msg: dict) -> None:
        if msg.get("event") == "worker_ready":
            slot = self.slots.get(msg["worker_id"])
            if slot is None or slot.pid != msg["pid"]:
                return
            slot.state = "ready"
            slot.failures = 0
            if not self.announced_ready and all(s.state == "ready" for s in self.slots.values()):
                self.announced_ready = True
                urls = ", ".join(f"http://{sockets.display_address(s)}" for s in self.listen_socks)
                log.info("askr ready: %s (%d PHP workers, root %s)", urls, len(self.slots),
                         self.config.server.root)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            front = next((f for f in self.children.fronts if f.proc is not None and f.proc.pid == pid), None)
            if front is not None:
                code = os.waitstatus_to_exitcode(status)
                front.proc.returncode = code  # type: ignore[union-attr]
                front.proc = None
                if not self.stopping:
                    log.error("front #%d (pid %d) exited with %s; restarting it", front.index, pid, code)
                    self.replace_front(front)
                continue
            zygote = self.children.zygote
            if zygote is not None and zygote.proc is not None and pid == zygote.proc.pid:
                zygote.proc.returncode = os.waitstatus_to_exitcode(status)
                continue
            # anything else: a PHP worker orphaned by its zygote, re-parented to us (subreaper)

    # -- stopping ----------------------------------------------------------------------------
    async def finish_stop(self) -> None:
        """The fronts have exited: retire PHP. With our copies of the queues' front ends closed too,
        idle workers waiting on a queue see it end and exit."""
        for front in self.children.fronts:
            front.queue_front.close()
        zygote = self.children.zygote
        if zygote is not None:
            zygote.close()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self._live_workers():
            try:
                event = await asyncio.wait_for(self.events.get(), 0.5)
            except TimeoutError:
                self.reap()
                continue
            if event[0] == "signal" and event[1] == signal.SIGCHLD:
                self.reap()
            elif event[0] == "zygote" and event[2][:1] == ["exited"]:
                self.slots[int(event[2][1])].state = "exited"
        for pid in self._live_workers():
            log.warning("php worker pid %d did not exit; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap()
        log.info("stopped")

    def _live_workers(self) -> list[int]:
        live = []
        for slot in self.slots.values():
            if slot.pid and slot.state != "exited":
                try:
                    os.kill(slot.pid, 0)
                    live.append(slot.pid)
                except ProcessLookupError:
                    slot.state = "exited"
        return live

    def cleanup(self) -> None:
        for front in self.children.fronts:
            if front.proc is not None and front.proc.poll() is None:
                front.proc.kill()
        zygote = self.children.zygote
        if zygote is not None and zygote.proc is not None and zygote.proc.poll() is None:
            zygote.close()
        for sock in self.listen_socks:
            sock.close()
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
