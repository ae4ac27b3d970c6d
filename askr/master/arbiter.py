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
import mmap
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from askr import __version__
from askr import config as config_mod
from askr.admin.server import AdminServer
from askr.bridge import events, scoreboard, wire
from askr.bridge.scoreboard import Scoreboard
from askr.config import Config
from askr.jobs import process as cli_process
from askr.jobs.queue import QueueWorkers
from askr.jobs.scheduler import Scheduler
from askr.master import sockets
from askr.master.systemd import Notifier
from askr.master.zygote import Zygote, ZygoteError
from askr.metrics import MasterMetrics

log = logging.getLogger("askr.master")

PR_SET_CHILD_SUBREAPER = 36
BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
QUICK_DEATH = 2.0  # a worker that dies sooner than this after starting counts as a failure
EXIT_BOOT_FAILED = 3  # askr_php.c: the worker script never reached askr_handle_request()
BOOT_ATTEMPTS = 3  # boot failures in a row, with no worker ever ready, before askr gives up
WORKER_STOP_GRACE = 5.0  # after the fronts are gone: idle workers exit at once, busy ones get this
STOP_NOW_GRACE = 0.5  # SIGINT/SIGQUIT: time for idle workers to leave by themselves before the kill
ROLL_TIMEOUT = 60.0  # a reload gives each replacement this long to become ready, then rolls back
CIRCUIT_FAILURES = 5  # failed starts in a row that open a slot's circuit (then retry every BACKOFF_MAX)
CANARY_MIN_REQUESTS = 3  # fewer answers than this in the window: too few to judge an error rate
CANARY_ERROR_MARGIN = 0.10  # the canary may answer 5xx this much more often than the old workers


@dataclass
class WorkerProc:
    """One PHP worker process."""

    worker_id: int  # its scoreboard slot: unique among live workers (see Arbiter.free_worker_id)
    position: int
    pid: int = 0
    generation: int = 0
    state: str = "starting"  # starting -> ready -> (retiring) -> exited; killed: on purpose
    started_at: float = 0.0


@dataclass
class WorkerSlot:
    """One of the configured workers: the process serving it, and its replacement while that
    boots (max_requests recycling starts the replacement first, so capacity never dips)."""

    position: int
    current: WorkerProc | None = None
    successor: WorkerProc | None = None
    wants_successor: bool = False  # quota reached while both worker ids were still in use
    quota_reached: bool = False  # the current worker asked to be replaced (max_requests)
    failures: int = 0  # consecutive failed starts, for backoff
    restarts: int = 0
    last_error: str = ""
    rolled: asyncio.Future | None = None  # a reload waits here for this slot's successor
    circuit_open: bool = False  # CIRCUIT_FAILURES failed starts in a row: retried slowly

    def needs_successor(self, generation: int) -> bool:
        """Its worker must be replaced: it reached its quota, or runs another generation's code."""
        current = self.current
        return current is not None and (self.quota_reached or current.generation != generation)


@dataclass
class FrontHandle:
    """One front process and the channel socket its PHP workers connect to (kept across restarts)."""

    index: int
    channel_sock: socket.socket
    channel_path: str
    queue_front: socket.socket  # the front sends requests here ...
    queue_workers: socket.socket  # ... and its workers take them from here
    proc: subprocess.Popen | None = None
    control: asyncio.StreamWriter | None = None  # commands to the front, one JSON per line

    def command(self, cmd: dict) -> None:
        if self.control is not None and not self.control.is_closing():
            self.control.write(json.dumps(cmd).encode() + b"\n")


@dataclass
class Children:
    fronts: list[FrontHandle] = field(default_factory=list)
    zygote: Zygote | None = None  # the current generation's: new workers fork from it
    old_zygotes: list[Zygote] = field(default_factory=list)  # kept until their workers are gone

    def fronts_running(self) -> bool:
        return any(f.proc is not None for f in self.fronts)


class Arbiter:
    def __init__(self, config: Config):
        self.config = config
        self.events: asyncio.Queue[tuple] = asyncio.Queue()
        self.children = Children()
        self.slots = {i: WorkerSlot(i) for i in range(config.server.workers)}
        self.procs: dict[int, WorkerProc] = {}  # live workers by worker id
        self.generation = 1  # the current PHP generation: new workers run its code
        self.generations_started = 1  # numbers stay unique even after a rollback
        self.reloading = False
        self.reload_queued = False
        self.reload_canary = False
        self.last_reload: dict | None = None  # what /api/status reports about the latest reload
        self.started_at = time.time()
        self.admin: AdminServer | None = None
        self.systemd = Notifier()
        self.scoreboard = Scoreboard(None)
        self.stopping = False
        self.stopping_now = False  # SIGINT/SIGQUIT: no drain; busy PHP workers are killed at once
        self.announced_ready = False
        self.runtime_dir = ""
        self.listen_socks: list[socket.socket] = []
        self.redirect_sock: socket.socket | None = None
        self.exit_code = 0
        self._tasks: set[asyncio.Task] = set()
        self.metrics = MasterMetrics(self.status)
        self.run_as = config_mod.run_as(config)  # [server] user for every child but the master
        self.queue = QueueWorkers(config, self.events.put_nowait, self.run_as)
        self.scheduler = Scheduler(config, self.run_as)

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
        redirect = self.config.server.redirect_http
        self.redirect_sock = sockets.bind_tcp(redirect, key="[server] redirect_http") if redirect else None
        self.admin_sock = sockets.bind_tcp(self.config.admin.listen, backlog=64, key="[admin] listen")
        self.runtime_dir = tempfile.mkdtemp(prefix="askr-")
        for index in range(self.config.server.fronts):
            path = os.path.join(self.runtime_dir, f"front-{index}.sock")
            sock = sockets.bind_unix(path, backlog=max(128, 4 * len(self.slots)))
            self.children.fronts.append(FrontHandle(index, sock, path, *sockets.request_queue()))
        self.scoreboard_path = os.path.join(self.runtime_dir, "scoreboard")
        with open(self.scoreboard_path, "w+b") as f:
            f.truncate(scoreboard.file_size(2 * len(self.slots)))  # two ids a slot: free_worker_id
            self.scoreboard = Scoreboard(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        if self.run_as is not None:
            # the fronts and workers (as [server] user) open these; the master stays root
            for name in (".", "scoreboard", *(f"front-{i}.sock" for i in range(self.config.server.fronts))):
                os.chown(os.path.join(self.runtime_dir, name), *self.run_as)

    def front_of(self, position: int) -> FrontHandle:
        """Workers are dealt to fronts round-robin; a front dispatches only to its own."""
        fronts = self.children.fronts
        return fronts[position % len(fronts)]

    def free_worker_id(self, position: int) -> int | None:
        """Slot p uses worker ids p and p + N in turn, so a replacement and the worker it
        replaces never share a scoreboard entry."""
        for worker_id in (position, position + len(self.slots)):
            if worker_id not in self.procs:
                return worker_id
        return None

    def quota(self, position: int) -> int:
        """max_requests, spread ±15% across workers so they never all recycle at once."""
        base = self.config.server.max_requests
        n = len(self.slots)
        if not base or n == 1:
            return base
        spread = 0.30 * base * position / (n - 1) - 0.15 * base
        return max(1, round(base + spread))

    async def start_zygote(self) -> Zygote:
        """Start the next PHP generation's zygote (it becomes current only when the caller says)."""
        generation = self.generations_started
        self.generations_started += 1
        queue_fds = [front.queue_workers.fileno() for front in self.children.fronts]
        zygote = Zygote(self.config, generation, self._zygote_line, queue_fds, self.scoreboard_path,
                        self.run_as)
        await zygote.start()
        log.info("PHP generation %d ready (zygote pid %d)", generation, zygote.pid)
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
        if self.run_as is not None:
            cmd += ["--run-as", f"{self.run_as[0]}:{self.run_as[1]}"]
        if self.redirect_sock is not None:
            cmd += ["--redirect-fd", str(self.redirect_sock.fileno())]
            fds.append(self.redirect_sock.fileno())
        front.proc = subprocess.Popen(cmd, pass_fds=[*fds, channel_fd, theirs.fileno(), queue_fd],
                                      stdin=subprocess.DEVNULL)
        theirs.close()
        task = asyncio.get_running_loop().create_task(self._read_front(front, ours))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("front #%d started (pid %d)", front.index, front.proc.pid)

    async def _read_front(self, front: FrontHandle, sock: socket.socket) -> None:
        reader, front.control = await asyncio.open_connection(sock=sock)
        while line := await reader.readline():
            msg = json.loads(line)
            if msg.get("event") == "stats":  # counters only: no lifecycle decision, no queueing
                self.metrics.front_stats(front.index, msg)
            elif (event := events.parse(msg)) is not None:
                self.events.put_nowait(("front", event))
            else:
                log.warning("front #%d sent an event askr does not know: %.200s", front.index, line)

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
        for proc in self.procs.values():
            if self.front_of(proc.position) is front and proc.pid:
                proc.state = "killed"  # on purpose: not a failure of the worker
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
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
            self.generation = self.children.zygote.generation
            for front in self.children.fronts:
                self.start_front(front)
            for slot in self.slots.values():
                self.spawn(slot)
            self.queue.start(self.generation)
            self.scheduler.start(self.generation)
            self.admin = AdminServer(self.admin_sock, self.config.admin.token, self.status, self.reload_from,
                                     self.metrics.render)
            await self.admin.start()
            log.info("admin API: http://%s/api/status", sockets.display_address(self.admin_sock))
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
            if not self.stopping:
                if slot.current is None:
                    self.spawn(slot)
                elif event[2] and slot.successor is None and slot.needs_successor(self.generation):
                    self.spawn(slot, successor=True)
        elif kind == "queue_respawn":
            self.queue.respawn(event[1])
        return self.stopped()

    def stopped(self) -> bool:
        """Stopping, and the fronts, queue workers and scheduler run are all gone."""
        return (self.stopping and not self.children.fronts_running() and not self.queue.live()
                and not self.scheduler.running())

    def handle_signal(self, signum: int) -> bool:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum == signal.SIGTERM:
            if not self.stopping:
                log.info("SIGTERM: draining in-flight requests, then exiting")
                self.systemd.stopping()
                self.stopping = True
                self.signal_fronts(signal.SIGTERM)
                self.queue.stop()
                self.scheduler.stop()
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            log.info("%s: stopping now", signal.Signals(signum).name)
            self.stop_now()
        elif signum == signal.SIGHUP and not self.stopping:
            self.request_reload("SIGHUP")
        return self.stopped()

    def stop_now(self) -> None:
        if not self.stopping:
            self.systemd.stopping()
        self.stopping = True
        self.stopping_now = True
        self.signal_fronts(signal.SIGQUIT)
        self.queue.stop(now=True)
        self.scheduler.stop(now=True)

    # -- PHP workers -------------------------------------------------------------------------
    def spawn(self, slot: WorkerSlot, successor: bool = False) -> None:
        """Start the worker for `slot`, or (successor) the one that will replace its current one."""
        zygote = self.children.zygote
        if zygote is None or zygote.writer is None:
            return
        worker_id = self.free_worker_id(slot.position)
        if worker_id is None:
            slot.wants_successor = successor  # the retiring worker still holds an id: on its exit
            return
        proc = WorkerProc(worker_id, slot.position, generation=zygote.generation, started_at=time.monotonic())
        self.procs[worker_id] = proc
        if successor:
            slot.successor = proc
        else:
            slot.current = proc
        slot.wants_successor = False
        front = self.front_of(slot.position)
        zygote.spawn(worker_id, front.channel_path, self.quota(slot.position),
                     front.queue_workers.fileno(), slot.position)

    # -- status (admin API) ------------------------------------------------------------------
    def status(self) -> dict:
        now, mono = time.time(), time.monotonic()
        workers = []
        for proc in sorted(self.procs.values(), key=lambda p: (p.position, p.started_at)):
            request_id, served, errors, began, uri = self.board(proc)
            workers.append({
                "position": proc.position, "worker_id": proc.worker_id, "pid": proc.pid,
                "generation": proc.generation, "state": proc.state, "busy": bool(request_id),
                "current_uri": uri if request_id else None,
                "current_seconds": round(max(0.0, now - began / 1e6), 3) if request_id and began else None,
                "requests": served, "errors_5xx": errors, "rss_kib": _rss_kib(proc.pid),
                "started_at": round(now - (mono - proc.started_at), 3),
            })
        alive = [w for w in workers if w["pid"]]
        return {
            "version": __version__,
            "uptime_seconds": round(now - self.started_at, 3),
            "mode": "worker" if self.config.worker.script else "classic",
            "generation": self.generation,
            "workers_configured": len(self.slots),
            "workers_alive": len(alive),
            "workers_ready": sum(w["state"] == "ready" for w in alive),
            "busy": sum(w["busy"] for w in alive),
            "idle": sum(w["state"] == "ready" and not w["busy"] for w in alive),
            "restarts": sum(s.restarts for s in self.slots.values()),
            "failing": {f"php#{s.position}": {"failures": s.failures, "last_error": s.last_error,
                                              "circuit": "open" if s.circuit_open else "closed"}
                        for s in self.slots.values() if s.failures},
            "reloading": self.reloading,
            "last_reload": self.last_reload,
            "workers": workers,
            "queue_workers": self.queue.status(),
            "scheduler": self.scheduler.status(),
        }

    def board(self, proc: WorkerProc) -> tuple[int, int, int, int, str]:
        """From the worker's scoreboard slot: (request id held, requests served, 5xx sent,
        when its latest request began in Unix µs, that request's URI)."""
        slot = self.scoreboard.read(proc.worker_id, proc.pid)
        return slot.request_id, slot.served, slot.errors, slot.began_us, slot.uri

    # -- rolling reload ----------------------------------------------------------------------
    def reload_from(self, why: str, canary: bool = False) -> dict:
        """The admin API's reload: start one (or queue it behind the one running)."""
        if self.stopping:
            return {"reload": "refused", "reason": "askr is stopping"}
        queued = self.reloading
        self.request_reload(why, canary)
        return {"reload": "queued" if queued else "started", "generation": self.generation,
                "canary": canary or self.config.reload.canary}

    def request_reload(self, why: str, canary: bool = False) -> None:
        canary = canary or self.config.reload.canary
        if self.reloading:
            log.info("%s: a reload is in progress; another one follows it", why)
            self.reload_queued = True
            self.reload_canary = self.reload_canary or canary
            return
        self.reload_canary = canary
        log.info("%s: rolling reload%s", why, " with a canary" if canary else "")
        self.systemd.reloading()
        self.reloading = True
        self.last_reload = {"requested_by": why, "started_at": time.time(), "finished_at": None,
                            "outcome": "in progress", "from_generation": self.generation}
        task = asyncio.get_running_loop().create_task(self._reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(self) -> None:
        """A new PHP generation (fresh module startup: new code, a fresh OPcache; the root is
        re-resolved, so a symlink swap takes effect), then each worker replaced in turn: the
        replacement first, the old worker retired once it is ready, so capacity never dips.
        If a replacement cannot get ready, everything rolls back to the previous generation."""
        try:
            while True:
                old_zygote = self.children.zygote
                try:
                    new_zygote = await self.start_zygote()
                except ZygoteError as e:
                    log.error("reload failed: cannot start the new PHP generation: %s; nothing changed", e)
                    self._reload_outcome(f"failed: {e}")
                    return
                if self.stopping:
                    new_zygote.close()
                    return
                if old_zygote is not None:
                    self.children.old_zygotes.append(old_zygote)
                self.children.zygote = new_zygote
                self.generation = new_zygote.generation
                for front in self.children.fronts:
                    front.command({"cmd": "reload"})
                canary = self.reload_canary
                verdict = await self._canary(old_zygote) if canary and old_zygote is not None else ""
                if canary:
                    self.metrics.canaries["unhealthy" if verdict else "healthy"] += 1
                if canary and not verdict:
                    log.info("canary healthy — rolling the rest")
                if not verdict and await self._roll():
                    log.info("reload complete: all %d PHP workers run generation %d", len(self.slots),
                             self.generation)
                    self.scheduler.reload(self.generation)
                    await self.queue.roll(self.generation)
                    self._reload_outcome("complete")
                elif old_zygote is not None and not self.stopping:
                    failed, self.generation = self.generation, old_zygote.generation
                    if verdict:
                        log.error("canary UNHEALTHY — aborting reload; remaining workers keep old code "
                                  "(%s)", verdict)
                        self._reload_outcome(f"canary unhealthy: {verdict}")
                    else:
                        log.error("reload aborted: a generation %d worker did not get ready (%s); "
                                  "rolling back to generation %d", failed, self._last_errors(),
                                  self.generation)
                        self._reload_outcome(f"rolled back: generation {failed} did not start "
                                             f"({self._last_errors()})")
                    self.children.old_zygotes.remove(old_zygote)
                    self.children.old_zygotes.append(new_zygote)
                    self.children.zygote = old_zygote
                    await self._roll()
                self.close_idle_zygotes()
                if not self.reload_queued or self.stopping:
                    return
                self.reload_queued = False
                log.info("starting the queued reload")
        finally:
            self.reloading = False
            if not self.stopping:
                self.systemd.ready(f"PHP generation {self.generation}: {self._reload_text()}")

    def _reload_text(self) -> str:
        return f"last reload {self.last_reload['outcome']}" if self.last_reload else "serving"

    def _reload_outcome(self, outcome: str) -> None:
        if self.last_reload is not None:
            self.last_reload.update(outcome=outcome, finished_at=time.time(), generation=self.generation)
        self.metrics.reload_finished(outcome)

    async def _canary(self, old_zygote: Zygote) -> str:
        """Roll one worker and watch it for canary_seconds while it takes its share of traffic.
        Returns "" when healthy, else why not (it did not start, it died, or it answered 5xx
        clearly more often than the old generation did meanwhile)."""
        slot = next(iter(self.slots.values()))
        log.info("canary: php#%d runs generation %d for %g s", slot.position, self.generation,
                 self.config.reload.canary_seconds)
        if not await self._roll_slot(slot):
            return f"the canary did not start: {slot.last_error or 'not ready in time'}"
        canary = slot.current
        assert canary is not None
        old = [p for p in self.procs.values() if p.generation == old_zygote.generation and p.state == "ready"]
        start = {p.worker_id: self.board(p) for p in [canary, *old]}
        deadline = time.monotonic() + self.config.reload.canary_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if slot.current is not canary or canary.state != "ready":
                return "the canary worker exited"
        if self.stopping:
            return "askr is stopping"

        def delta(procs: list[WorkerProc]) -> tuple[int, int]:
            now = [(self.board(p), start[p.worker_id]) for p in procs if p.worker_id in self.procs]
            return (sum(n[1] - s[1] for n, s in now), sum(n[2] - s[2] for n, s in now))

        served, errors = delta([canary])
        old_served, old_errors = delta(old)
        old_rate = old_errors / old_served if old_served else 0.0
        if served >= CANARY_MIN_REQUESTS and errors / served > old_rate + CANARY_ERROR_MARGIN:
            return (f"{errors} of its {served} responses were 5xx; the old generation's: "
                    f"{old_errors} of {old_served}")
        return ""

    async def _roll(self) -> bool:
        """Bring every slot to the current generation, one at a time. False if one did not get
        ready within ROLL_TIMEOUT (its failed starts are retried with backoff meanwhile)."""
        for slot in self.slots.values():
            if not await self._roll_slot(slot):
                return False
        return True

    async def _roll_slot(self, slot: WorkerSlot) -> bool:
        """Replace `slot`'s worker with a current-generation one; False if none got ready."""
        # a loop: a replacement already booting (max_requests) may run the older code
        while slot.needs_successor(self.generation):
            if self.stopping:
                return False
            slot.rolled = asyncio.get_running_loop().create_future()
            if slot.successor is None:
                self.spawn(slot, successor=True)
            try:
                ready = await asyncio.wait_for(asyncio.shield(slot.rolled), ROLL_TIMEOUT)
            except TimeoutError:
                ready = False
            finally:
                slot.rolled = None
            if not ready:
                successor = slot.successor
                if successor is not None and successor.pid:
                    successor.state = "killed"
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(successor.pid, signal.SIGKILL)
                return False
        return True

    def _last_errors(self) -> str:
        errors = sorted({s.last_error for s in self.slots.values() if s.last_error})
        return "; ".join(errors) or f"none within {ROLL_TIMEOUT:.0f} s"

    def close_idle_zygotes(self) -> None:
        """An old generation's zygote goes once none of its workers is left."""
        live = {p.generation for p in self.procs.values()}
        for zygote in list(self.children.old_zygotes):
            if zygote.generation not in live:
                zygote.close()
                self.children.old_zygotes.remove(zygote)

    def retire(self, proc: WorkerProc) -> None:
        """Stop `proc` taking requests; it finishes the one in hand, then exits."""
        proc.state = "retiring"
        self.front_of(proc.position).command({"cmd": "retire", "worker_id": proc.worker_id, "pid": proc.pid})

    def handle_zygote(self, zygote: Zygote, fields: list[str]) -> None:
        if not fields:
            return
        what = fields[0]
        if what == "spawned":
            proc = self.procs.get(int(fields[1]))
            if proc is not None and proc.pid == 0:
                proc.pid = int(fields[2])
                proc.generation = zygote.generation
        elif what == "exited":
            worker_id, pid, code, sig = (int(x) for x in fields[1:5])
            proc = self.procs.get(worker_id)
            if proc is not None and proc.pid in (pid, 0):
                del self.procs[worker_id]
                self.worker_exited(proc, pid, code, sig)
        elif what == "closed" and not self.stopping and zygote is self.children.zygote:
            log.error("the PHP zygote (pid %d) exited unexpectedly; starting a new one", zygote.pid)
            self.children.zygote = None
            asyncio.get_running_loop().create_task(self._restart_zygote())

    async def _restart_zygote(self) -> None:
        delay = BACKOFF_START
        while not self.stopping:
            try:
                self.children.zygote = await self.start_zygote()
                self.generation = self.children.zygote.generation
            except ZygoteError as e:
                log.error("cannot restart PHP: %s; retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            for slot in self.slots.values():
                if slot.current is None:
                    self.spawn(slot)
            return

    def worker_exited(self, proc: WorkerProc, pid: int, code: int, sig: int) -> None:
        slot = self.slots[proc.position]
        name = f"php#{proc.position} (pid {pid})"
        if proc.state == "retiring":  # replaced already (max_requests, reload)
            log.info("%s retired", name)
            self.close_idle_zygotes()
            if slot.wants_successor and not self.stopping:
                self.spawn(slot, successor=True)
            return
        self.close_idle_zygotes()
        was_successor = slot.successor is proc
        if was_successor:
            slot.successor = None
        elif slot.current is proc:
            slot.current = None
            slot.quota_reached = False
        if self.stopping:
            return
        how = f"killed by signal {sig}" if sig else f"exited with code {code}"
        lived = time.monotonic() - proc.started_at
        booted = proc.state != "starting"
        if proc.state == "killed":  # on purpose (its front was replaced): not its failure
            log.info("%s %s; replacing it", name, how)
        elif code == EXIT_BOOT_FAILED and not sig:
            log.error("%s: the worker script failed before askr_handle_request(): %s", name,
                      slot.last_error or "see the PHP error above")
            slot.failures += 1
        elif not sig and code == 0:
            log.info("%s %s; replacing it", name, how)
            slot.failures = 0
        else:
            log.error("%s %s; replacing it", name, how)
            self.metrics.worker_crashes += 1
            slot.failures = slot.failures + 1 if lived < QUICK_DEATH or not booted else 0
        if code == EXIT_BOOT_FAILED and self.nobody_ever_booted(slot):
            log.error("no PHP worker could boot (%d attempts): %s", slot.failures,
                      slot.last_error or "the worker script failed; see the PHP errors above")
            self.exit_code = 1
            self.stop_now()
            return
        rolled = slot.rolled
        if was_successor and rolled is not None and not rolled.done() and slot.failures >= BOOT_ATTEMPTS:
            rolled.set_result(False)  # a reload's new code does not start: roll back
            return
        slot.restarts += 1
        delay = 0.0 if slot.failures == 0 else min(BACKOFF_START * 2 ** (slot.failures - 1), BACKOFF_MAX)
        if slot.failures >= CIRCUIT_FAILURES:
            delay = BACKOFF_MAX  # the circuit is open: a slow, steady retry until one start succeeds
            if not slot.circuit_open:
                slot.circuit_open = True
                log.error("php#%d: circuit open after %d failed starts in a row (%s); retrying every "
                          "%.0f s until a worker starts", proc.position, slot.failures,
                          slot.last_error or how, BACKOFF_MAX)
        elif delay:
            log.warning("php#%d failed %d times in a row; next start in %.1f s", proc.position,
                        slot.failures, delay)
        asyncio.get_running_loop().call_later(delay, self.events.put_nowait,
                                              ("respawn", proc.position, was_successor))

    def nobody_ever_booted(self, slot: WorkerSlot) -> bool:
        """True when askr has never been ready and `slot` used up its boot attempts: nothing
        will serve, so exiting with the reason beats retrying forever in silence."""
        return (not self.announced_ready and slot.failures >= BOOT_ATTEMPTS
                and not any(p.state != "starting" for p in self.procs.values()))

    def handle_front(self, event: events.WorkerEvent) -> None:
        proc = self.procs.get(event.worker_id)
        if proc is not None and proc.pid == 0:
            proc.pid = event.pid  # the front's news can beat the zygote's "spawned" line
        if proc is None or proc.pid != event.pid:
            return
        slot = self.slots[proc.position]
        if isinstance(event, events.WorkerReady):
            self.worker_ready(slot, proc)
        elif isinstance(event, events.WorkerQuota):
            if slot.current is proc and not self.stopping:
                slot.quota_reached = True
                if slot.successor is None:
                    log.info("php#%d (pid %d) reached max_requests (%d); starting its replacement",
                             proc.position, proc.pid, self.quota(proc.position))
                    self.spawn(slot, successor=True)
        elif isinstance(event, events.RequestTimeout):
            log.error("php#%d (pid %d) exceeded request_timeout on %s; killing it", proc.position,
                      proc.pid, event.uri or "?")
            proc.state = "killed"  # on purpose: replaced at once, not counted as a crash
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        elif isinstance(event, events.WorkerBootFailed):
            # the first line says it; PHP's stack trace is in the worker's own log line
            slot.last_error = event.error.strip().split("\n")[0]

    def worker_ready(self, slot: WorkerSlot, proc: WorkerProc) -> None:
        if proc.state != "starting":
            return
        proc.state = "ready"
        if slot.circuit_open:
            log.info("php#%d: circuit closed: a worker started again", slot.position)
        slot.circuit_open = False
        slot.failures = 0
        slot.last_error = ""
        if slot.successor is proc:
            old, slot.current, slot.successor = slot.current, proc, None
            slot.quota_reached = False
            if old is not None and old.state in ("starting", "ready"):
                log.info("php#%d (pid %d) ready; retiring pid %d", proc.position, proc.pid, old.pid)
                self.retire(old)
            if slot.rolled is not None and not slot.rolled.done():
                slot.rolled.set_result(True)
        if not self.announced_ready and all(
            s.current is not None and s.current.state == "ready" for s in self.slots.values()
        ):
            self.announced_ready = True
            scheme = "https" if self.config.tls.enabled else "http"
            urls = ", ".join(f"{scheme}://{sockets.display_address(s)}" for s in self.listen_socks)
            script = self.config.worker.script
            mode = f"worker mode: {script}" if script else "classic mode"
            log.info("askr ready: %s (%d PHP workers, %s, root %s)", urls, len(self.slots), mode,
                     self.config.server.root)
            self.systemd.ready(f"serving {urls}, {len(self.slots)} PHP workers")
            if self.redirect_sock is not None:
                log.info("redirecting http://%s to https", sockets.display_address(self.redirect_sock))

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.queue.reaped(pid, status) or self.scheduler.reaped(pid, status):
                continue
            front = next((f for f in self.children.fronts if f.proc is not None and f.proc.pid == pid), None)
            if front is not None:
                code = os.waitstatus_to_exitcode(status)
                front.proc.returncode = code  # type: ignore[union-attr]
                front.proc = None
                if not self.stopping:
                    log.error("front #%d (pid %d) exited with %s; restarting it", front.index, pid, code)
                    self.replace_front(front)
                continue
            zygote = next((z for z in (self.children.zygote, *self.children.old_zygotes)
                           if z is not None and z.proc is not None and z.proc.pid == pid), None)
            if zygote is not None:
                zygote.proc.returncode = os.waitstatus_to_exitcode(status)  # type: ignore[union-attr]
                continue
            # anything else: a PHP worker orphaned by its zygote, re-parented to us (subreaper)

    # -- stopping ----------------------------------------------------------------------------
    async def finish_stop(self) -> None:
        """The fronts have exited: retire PHP. With our copies of the queues' front ends closed too,
        idle workers waiting on a queue see it end and exit."""
        for front in self.children.fronts:
            front.queue_front.close()
        for zygote in (self.children.zygote, *self.children.old_zygotes):
            if zygote is not None:
                zygote.close()
        deadline = time.monotonic() + (STOP_NOW_GRACE if self.stopping_now else WORKER_STOP_GRACE)
        while time.monotonic() < deadline and self._live_workers():
            try:
                event = await asyncio.wait_for(self.events.get(), 0.5)
            except TimeoutError:
                self.reap()
                continue
            if event[0] == "signal" and event[1] == signal.SIGCHLD:
                self.reap()
            elif event[0] == "zygote" and event[2][:1] == ["exited"]:
                self.procs.pop(int(event[2][1]), None)
        for pid in self._live_workers():
            log.warning("php worker pid %d was still running a request at shutdown; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.reap()
        await cli_process.flush_logs()
        log.info("stopped")

    def _live_workers(self) -> list[int]:
        live = []
        for worker_id, proc in list(self.procs.items()):
            if proc.pid:
                try:
                    os.kill(proc.pid, 0)
                    live.append(proc.pid)
                except ProcessLookupError:
                    del self.procs[worker_id]
        return live

    def cleanup(self) -> None:
        for front in self.children.fronts:
            if front.proc is not None and front.proc.poll() is None:
                front.proc.kill()
        for zygote in (self.children.zygote, *self.children.old_zygotes):
            if zygote is not None and zygote.proc is not None and zygote.proc.poll() is None:
                zygote.close()
        if self.admin is not None:
            self.admin.close()
        for sock in [*self.listen_socks, *([self.redirect_sock] if self.redirect_sock else [])]:
            sock.close()
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None
