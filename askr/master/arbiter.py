"""The master's one loop: it owns every child (front, zygote, PHP workers) and acts on events.

Signal handlers, the zygotes' reports, the fronts' events, timers and the few tasks the loop
starts (a zygote booting, the queue workers' roll) only enqueue (askr/master/events.py); `run()`
takes the events one at a time, so process lifecycle has exactly one owner, as in gunicorn's
arbiter. After each event, `Reloads.advance()` moves the reload in progress to its next
phase if its condition now holds (reload.py), and `reconcile()` compares the workers wanted
with the workers running and starts what is missing (gunicorn's `manage_workers`): no handler
decides by itself what to spawn next.

Concepts live beside it: generations in generation.py, reloads in reload.py, the canary's
verdict in canary.py, the front processes in fronts.py, the status document in status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import mmap
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Coroutine
from typing import Any

from askr import privileges, readiness, sandbox
from askr.admin.server import AdminServer
from askr.bridge import events as worker_events
from askr.bridge import scoreboard
from askr.bridge.scoreboard import Scoreboard
from askr.config import Config
from askr.jobs import process as cli_process
from askr.jobs.queue import QueueWorkers
from askr.jobs.scheduler import Scheduler
from askr.master import sockets, status, workers
from askr.master.events import (
    RELOAD,
    RESTART,
    CanaryDue,
    DrainDelayOver,
    Event,
    FilesChanged,
    FrontEvent,
    GiveUp,
    KillDue,
    QueueRespawn,
    QueueRolled,
    RollTimeout,
    Signal,
    Wake,
    WatchQuiet,
    ZygoteFailed,
    ZygoteLine,
    ZygoteStarted,
)
from askr.master.fronts import FrontHandle, Fronts
from askr.master.generation import Generations
from askr.master.history import SAMPLE_SECONDS, History
from askr.master.reload import Reloads
from askr.master.systemd import Notifier
from askr.master.watch import Watcher, WatchReloads
from askr.master.workers import (
    BACKOFF_MAX,
    BACKOFF_START,
    BOOT_ATTEMPTS,
    RECYCLE_REASONS,
    TRACE_GRACE,
    TRACE_SIGNAL,
    ExitKind,
    WorkerProc,
    WorkerSlot,
)
from askr.master.zygote import Zygote, ZygoteError
from askr.metrics import MasterMetrics

log = logging.getLogger("askr.master")

PR_SET_CHILD_SUBREAPER = 36
WORKER_STOP_GRACE = 5.0  # after the fronts are gone: idle workers exit at once, busy ones get this
STOP_NOW_GRACE = 0.5  # SIGINT/SIGQUIT: time for idle workers to leave by themselves before the kill
BOOT_ERROR_GRACE = 2.0  # no worker could boot: how long the exit waits for the PHP error a front relays


class Arbiter:
    def __init__(self, config: Config):
        self.config = config
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.slots = {i: WorkerSlot(i) for i in range(config.server.workers)}
        self.procs: dict[int, WorkerProc] = {}  # live workers by worker id
        self.run_as = privileges.run_as(config)  # [server] user for every child but the master
        # what PHP's sandbox runs without, logged at the first generation and then on a change
        self.sandbox_unenforced = sandbox.UnenforcedLog()
        self.gens = Generations(self._make_zygote)
        self.reloads = Reloads(self)
        self.started_at = time.time()
        self.admin: AdminServer | None = None
        self.systemd = Notifier()
        self.scoreboard = Scoreboard(None)
        self.scoreboard_path = ""
        self.stopping = False
        self.stopping_now = False  # SIGINT/SIGQUIT: no drain; busy PHP workers are killed at once
        self.stop_pending = False  # SIGTERM came; serving on for [server] drain_delay before stopping
        self.draining = False  # askr drain: readiness says 503 while everything is still served
        self.ever_ready = False  # some PHP worker has been ready (else readiness says "booting")
        self.announced_ready = False
        self.runtime_dir = ""
        self.exit_code = 0
        self.giving_up: WorkerSlot | None = None  # no worker could boot: exiting once its error is in
        self.recycled = dict.fromkeys(RECYCLE_REASONS, 0)  # healthy workers replaced, by reason
        self.slowlogged_gone = 0  # what exited workers' slowlogs logged (live ones: the scoreboard)
        self.denied_gone = 0  # syscalls the sandbox denied exited workers (live ones: the scoreboard)
        self._tasks: set[asyncio.Task] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.clock = time.monotonic  # for worker ages and backoff (tests step it by hand)
        self.send_signal = os.kill  # to PHP workers (tests record instead)
        self.metrics = MasterMetrics(self.status)
        self.fronts = Fronts(config, self.run_as, self.post, self.metrics, self.track)
        self.history = History()  # the dashboard's charts (GET /api/history)
        self.fronts.history = self.history
        self.queue = QueueWorkers(config, lambda index: self.post(QueueRespawn(index)), self.run_as)
        self.scheduler = Scheduler(config, self.run_as)
        # [dev] watch: the watchfiles task posts FilesChanged; the loop debounces and reloads
        self.watcher = Watcher(config, self.post) if config.dev.watch else None
        self.watch_reloads = WatchReloads(self)

    # -- events in ---------------------------------------------------------------------------
    def post(self, event: Event) -> None:
        self.events.put_nowait(event)

    def later(self, delay: float, event: Event) -> None:
        """Post `event` after `delay` seconds (cancelled on shutdown)."""
        def fire() -> None:
            self._timers.discard(handle)
            self.post(event)
        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    def track(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task the master keeps a reference to and cancels on shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- setup -------------------------------------------------------------------------------
    def _become_subreaper(self) -> None:
        """Orphaned PHP workers (their zygote gone) are re-parented to us, so we can reap them."""
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_CHILD_SUBREAPER) unavailable")

    def bind(self) -> None:
        """Bind every socket first: a port problem is reported before anything starts."""
        # handed to [server] user: out of the directories the PHP sandbox grants (askr/sandbox.py)
        self.runtime_dir = tempfile.mkdtemp(prefix="askr-", dir=sandbox.runtime_parent(self.config))
        self.scoreboard_path = os.path.join(self.runtime_dir, "scoreboard")
        self.fronts.bind(self.runtime_dir, self.scoreboard_path, len(self.slots))
        self.admin_sock = sockets.bind_tcp(self.config.admin.listen, backlog=64, key="[admin] listen")
        with open(self.scoreboard_path, "w+b") as f:
            f.truncate(scoreboard.file_size(2 * len(self.slots)))  # two ids a slot: free_worker_id
            self.scoreboard = Scoreboard(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        if self.run_as is not None:
            # the fronts and workers (as [server] user) open these; the master stays root
            for name in (".", "scoreboard", *self.fronts.socket_names()):
                os.chown(os.path.join(self.runtime_dir, name), *self.run_as)

    def _make_zygote(self, generation: int) -> Zygote:
        return Zygote(self.config, generation, lambda z, fields: self.post(ZygoteLine(z, fields)),
                      [self.fronts.queue_workers.fileno()], self.scoreboard_path, self.run_as,
                      self.sandbox_unenforced)

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._become_subreaper()
        self.bind()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD):
            loop.add_signal_handler(sig, self.post, Signal(sig))
        try:
            try:
                self.gens.promote(await self.gens.start_next())
            except ZygoteError as e:
                log.error("cannot start PHP: %s", e)
                return 1
            self.fronts.start_all()
            self.reconcile()
            self.queue.start(self.gens.number)
            self.scheduler.start(self.gens.number)
            self.admin = AdminServer(self.admin_sock, self.config.admin, self.status, self.reload_from,
                                     self.metrics.render, self.health, self.drain_from, self.history_document,
                                     full_status=lambda: status.snapshot(self, full=True),
                                     openmetrics=self.metrics.render_openmetrics)
            await self.admin.start()
            self.track(self._sample_history())
            log.info("admin API: http://%s/api/status", sockets.display_address(self.admin_sock))
            if self.watcher is not None:
                self.track(self.watcher.run())
            while not self.stopped():
                self.step(await self.events.get())
            await self.finish_stop()
            return self.exit_code
        finally:
            self.cleanup()

    def step(self, event: Event) -> None:
        """One turn of the loop: act on `event`, move the reload on, start what is missing, and
        let the fronts know if readiness changed."""
        self.handle(event)
        self.reloads.advance()
        self.reconcile()
        self.fronts.tell_readiness(self.readiness().state)

    def handle(self, event: Event) -> None:
        match event:
            case Signal(signum):
                self.handle_signal(signum)
            case ZygoteLine(zygote, fields):
                self.handle_zygote(zygote, fields)
            case FrontEvent(worker_event):
                self.handle_front(worker_event)
            case ZygoteStarted(zygote, purpose):
                self.zygote_started(zygote, purpose)
            case ZygoteFailed(error):
                self.reloads.zygote_failed(error)
            case RollTimeout(attempt):
                self.reloads.roll_timed_out(attempt)
            case CanaryDue(reload_id):
                self.reloads.judge_canary(reload_id)
            case QueueRolled(reload_id):
                self.reloads.queue_rolled(reload_id)
            case QueueRespawn(index):
                self.queue.respawn(index)
            case Wake():
                pass  # reconcile() starts what is due
            case GiveUp():
                self.give_up()
            case KillDue(worker_id, pid):
                proc = self.procs.get(worker_id)
                if proc is not None and proc.pid == pid:
                    log.warning("php#%d (pid %d) did not exit %.0f s after being asked for its backtrace; "
                                "killing it", proc.position, pid, TRACE_GRACE)
                    self.kill(proc)
            case FilesChanged(paths):
                self.watch_reloads.files_changed(paths)
            case WatchQuiet():
                self.watch_reloads.quiet()
            case DrainDelayOver():
                if not self.stopping:
                    self.drain_and_stop()

    def stopped(self) -> bool:
        """Stopping, and the fronts, queue workers and scheduler run are all gone."""
        return (self.stopping and not self.fronts.running() and not self.queue.live()
                and not self.scheduler.running())

    def handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum == signal.SIGTERM:
            delay = self.config.server.drain_delay
            if self.stopping:
                pass
            elif self.stop_pending or not delay:  # a second SIGTERM skips the rest of the delay
                self.drain_and_stop()
            else:
                # The balancer sees 503 "stopping" and takes the host out while it still serves.
                log.info("SIGTERM: readiness is now 503 stopping; serving on for drain_delay (%g s), "
                         "then draining (another SIGTERM drains at once)", delay)
                self.stop_pending = True
                self.later(delay, DrainDelayOver())
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            log.info("%s: stopping now", signal.Signals(signum).name)
            self.stop_now()
        elif signum == signal.SIGHUP and not self.stopping and not self.stop_pending:
            self.reloads.ask("SIGHUP")

    def drain_and_stop(self) -> None:
        """SIGTERM's stop: the fronts finish what is in flight, the queue workers their jobs."""
        log.info("SIGTERM: draining in-flight requests, then exiting")
        self.begin_stop()
        # the command first: a front that got the SIGTERM too (sent to the whole group) would
        # take the signal for the start of its own drain_delay
        self.fronts.command_all({"cmd": "drain"})
        self.fronts.signal(signal.SIGTERM)
        self.queue.stop()
        self.scheduler.stop()

    def begin_stop(self) -> None:
        """No worker starts any more, and a reload in progress ends where it is."""
        if not self.stopping:
            self.systemd.stopping()
        self.stopping = True
        self.fronts.tell_readiness(self.readiness().state)  # now, while every front is there to hear it
        self.reloads.abandon()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def stop_now(self) -> None:
        self.begin_stop()
        self.stopping_now = True
        self.fronts.signal(signal.SIGQUIT)
        self.queue.stop(now=True)
        self.scheduler.stop(now=True)

    # -- PHP workers: wanted versus running ----------------------------------------------------
    def reconcile(self) -> None:
        """Start every worker that is wanted and due: an empty slot's, a replacement for a
        worker that reached its quota, and the replacement a reload rolls now (one slot at a
        time). A slot in backoff waits for its Wake; a successor waiting for a free worker id
        starts once the retiring worker holding it has exited."""
        zygote = self.gens.current
        if self.stopping or self.giving_up is not None or zygote is None or zygote.writer is None:
            return
        now = self.clock()
        rolling = self.reloads.roll_position()
        for slot in self.slots.values():
            if slot.successor is not None or now < slot.not_before:
                continue
            if slot.current is None:
                self.spawn(zygote, slot, successor=False)
            elif slot.quota_reached or slot.position == rolling:
                self.spawn(zygote, slot, successor=True)

    def spawn(self, zygote: Zygote, slot: WorkerSlot, successor: bool) -> None:
        worker_id = self.free_worker_id(slot.position)
        if worker_id is None:  # the worker being retired still holds the other id
            return
        slot.last_worker_id = worker_id
        proc = WorkerProc(worker_id, slot.position, generation=zygote.generation, started_at=self.clock())
        self.procs[worker_id] = proc
        if successor:
            slot.successor = proc
        else:
            slot.current = proc
        zygote.spawn(worker_id, self.fronts.channel_paths(), self.quota(slot.position),
                     self.fronts.queue_workers.fileno(), slot.position)

    def free_worker_id(self, position: int) -> int | None:
        """An id no live worker has; of two, not the slot's previous worker's (worker_ids)."""
        free = [i for i in workers.worker_ids(position, len(self.slots)) if i not in self.procs]
        last = self.slots[position].last_worker_id
        return next((i for i in free if i != last), free[0] if free else None)

    def quota(self, position: int) -> int:
        return workers.quota(self.config.server.max_requests, position, len(self.slots))

    def kill(self, proc: WorkerProc, backtrace_first: bool = False) -> None:
        """On purpose: its exit is replaced at once and not counted as a failure. With
        `backtrace_first`, the worker is asked to log where PHP is (TRACE_SIGNAL: it logs its
        backtrace and exits by itself), and gets SIGKILL only if it is still there TRACE_GRACE
        later."""
        proc.state = "killed"
        if not proc.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            if backtrace_first:
                self.send_signal(proc.pid, TRACE_SIGNAL)
                self.later(TRACE_GRACE, KillDue(proc.worker_id, proc.pid))
            else:
                self.send_signal(proc.pid, signal.SIGKILL)

    def retire(self, proc: WorkerProc) -> None:
        """Stop `proc` taking requests; it finishes the one in hand, then exits."""
        proc.state = "retiring"
        # every front: one is enough (the stop word is shared), but any one may be restarting
        self.fronts.command_all({"cmd": "retire", "worker_id": proc.worker_id, "pid": proc.pid})

    def status(self) -> dict:
        return status.snapshot(self)

    def history_document(self, since: float | None) -> dict:
        return self.history.document(since, self.reloads.current.report if self.reloads.current else None)

    async def _sample_history(self) -> None:
        """One traffic sample a second for the dashboard (history.py)."""
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            alive = [p for p in self.procs.values() if p.pid]
            busy = sum(bool(self.scoreboard.read(p.worker_id, p.pid).request_id) for p in alive)
            self.history.sample(busy, len(alive))

    # -- readiness for load balancers (askr/readiness.py) -------------------------------------
    def readiness(self) -> readiness.Readiness:
        return readiness.decide(stopping=self.stopping or self.stop_pending, draining=self.draining,
                                workers_ready=sum(p.state == "ready" for p in self.procs.values()),
                                ever_ready=self.ever_ready)

    def health(self, probe: str) -> tuple[bool, dict[str, str]]:
        """The admin API's /api/health/live and /api/health/ready."""
        if probe == "live":
            return readiness.liveness(self.fronts.connected())
        verdict = self.readiness()
        return verdict.ready, verdict.document()

    def drain_from(self, draining: bool) -> dict:
        """The admin API's drain and undrain: only readiness changes; everything that still
        arrives is served."""
        if draining != self.draining:
            log.info("%s: readiness %s", "drain" if draining else "undrain",
                     "is now 503 draining; still serving what arrives" if draining else "no longer draining")
        self.draining = draining
        verdict = self.readiness()
        self.fronts.tell_readiness(verdict.state)
        return {"state": verdict.state, "ready": verdict.ready, "draining": self.draining}

    # -- generations -------------------------------------------------------------------------
    def reload_from(self, why: str, canary: bool = False) -> dict:
        """The admin API's reload: start one (or queue it behind the one running)."""
        if self.stopping or self.stop_pending:
            return {"reload": "refused", "reason": "askr is stopping"}
        started = self.reloads.ask(why, canary)
        return {"reload": started, "generation": self.gens.number,
                "canary": canary or self.config.reload.canary}

    def boot_generation(self, purpose: str) -> None:
        """Boot the next zygote in a task that posts the result (ZygoteStarted, ZygoteFailed)."""
        self.track(self._boot_generation(purpose))

    async def _boot_generation(self, purpose: str) -> None:
        """A reload's failure is reported; a replacement for a zygote that died is retried
        with backoff until one starts."""
        delay = BACKOFF_START
        while True:
            try:
                zygote = await self.gens.start_next()
            except ZygoteError as e:
                if purpose == RELOAD:
                    self.post(ZygoteFailed(str(e)))
                    return
                log.error("cannot restart PHP: %s; retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self.post(ZygoteStarted(zygote, purpose))
            return

    def zygote_started(self, zygote: Zygote, purpose: str) -> None:
        if self.stopping:
            zygote.close()
        elif purpose == RESTART:
            self.gens.replace_lost(zygote)
        else:
            self.reloads.zygote_started(zygote)
            if self.watcher is not None:
                self.watcher.rebase()  # the reload resolved the root again: so does the watch

    def live_generations(self) -> set[int]:
        """Generations still needed: those with a live worker, and the one a reload would roll
        back to."""
        return {p.generation for p in self.procs.values()} | self.reloads.keeps()

    # -- what the zygotes and fronts report ----------------------------------------------------
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
                # its slot keeps its last words until the id is reused, which needs this exit
                last_words = self.scoreboard.read(worker_id, pid)
                self.slowlogged_gone += last_words.slowlogged
                self.denied_gone += last_words.denied_syscalls
                del self.procs[worker_id]
                self.worker_exited(proc, pid, code, sig)
        elif what == "closed" and not self.stopping and zygote is self.gens.current:
            log.error("the PHP zygote (pid %d) exited unexpectedly; starting a new one", zygote.pid)
            self.gens.lose_current()
            self.boot_generation(RESTART)

    def worker_exited(self, proc: WorkerProc, pid: int, code: int, sig: int) -> None:
        """The exit policy: who failed, how long to wait before the next start, when to give up."""
        slot = self.slots[proc.position]
        name = f"php#{proc.position} (pid {pid})"
        self.gens.close_idle(self.live_generations())
        if proc.state == "retiring":  # replaced already (max_requests, reload)
            log.info("%s retired", name)
            return
        was_successor = slot.remove(proc)
        if self.stopping:
            return
        how = f"killed by signal {sig}" if sig else f"exited with code {code}"
        kind = workers.classify(proc, code, sig)
        if kind is ExitKind.ON_PURPOSE or kind is ExitKind.CLEAN:
            log.info("%s %s; replacing it", name, how)
        elif kind is ExitKind.BOOT_FAILED:
            log.error("%s: the worker script failed before askr_handle_request(): %s", name,
                      slot.last_error or "see the PHP error above")
        else:
            log.error("%s %s; replacing it", name, how)
            self.metrics.worker_crashes += 1
        slot.count_exit(kind, self.clock() - proc.started_at, booted=proc.state != "starting")
        if kind is ExitKind.BOOT_FAILED and self.nobody_ever_booted(slot):
            self.giving_up = slot
            if slot.last_error:
                self.give_up()
            else:
                # The PHP error comes through a front, on another path than the zygote's exit
                # report, and may be a moment behind it: the last line should name it.
                self.later(BOOT_ERROR_GRACE, GiveUp())
            return
        if was_successor and self.reloads.is_rolling(slot.position) and slot.failures >= BOOT_ATTEMPTS:
            self.reloads.roll_failed()  # a reload's new code does not start: roll back
            return
        slot.restarts += 1
        delay = slot.backoff()
        if slot.open_circuit():
            log.error("php#%d: circuit open after %d failed starts in a row (%s); retrying every "
                      "%.0f s until a worker starts", proc.position, slot.failures,
                      slot.last_error or how, BACKOFF_MAX)
        elif delay and not slot.circuit_open:
            log.warning("php#%d failed %d times in a row; next start in %.1f s", proc.position,
                        slot.failures, delay)
        if delay:
            slot.not_before = self.clock() + delay
            self.later(delay, Wake())

    def give_up(self) -> None:
        """Exit 1 with the reason no worker could boot (once, whichever of its causes comes first)."""
        slot, self.giving_up = self.giving_up, None
        if slot is None:
            return
        log.error("no PHP worker could boot (%d attempts): %s", slot.failures,
                  slot.last_error or "the worker script failed; see the PHP errors above")
        self.exit_code = 1
        self.stop_now()

    def nobody_ever_booted(self, slot: WorkerSlot) -> bool:
        """True when askr has never been ready and `slot` used up its boot attempts: nothing
        will serve, so exiting with the reason beats retrying forever in silence."""
        return (not self.announced_ready and slot.failures >= BOOT_ATTEMPTS
                and not any(p.state != "starting" for p in self.procs.values()))

    def handle_front(self, event: worker_events.WorkerEvent) -> None:
        proc = self.procs.get(event.worker_id)
        if proc is None and self.giving_up is not None and isinstance(event, worker_events.WorkerBootFailed):
            self.boot_failed(self.giving_up, event)  # its exit came first: nothing booted, it is the reason
            return
        if proc is not None and proc.pid == 0 and isinstance(event, worker_events.WorkerReady):
            # HELLO can beat the zygote's "spawned" line. Only HELLO: every front reports a
            # worker's exit, and a late report of the slot's previous worker must not be taken
            # for this one (its own exit would then go unrecognised, and never be replaced).
            proc.pid = event.pid
        if proc is None or proc.pid != event.pid:
            return
        slot = self.slots[proc.position]
        if isinstance(event, worker_events.WorkerReady):
            self.worker_ready(slot, proc)
        elif isinstance(event, worker_events.WorkerQuota):
            if slot.current is proc and not self.stopping and not slot.quota_reached:
                slot.quota_reached = True
                self.recycled[event.reason] = self.recycled.get(event.reason, 0) + 1
                if slot.successor is None:
                    log.info("php#%d (pid %d) %s; starting its replacement", proc.position, proc.pid,
                             self.recycle_reason(proc, event))
        elif isinstance(event, worker_events.RequestTimeout):
            # The backtrace comes from the worker's watchdog thread, which runs with a slowlog only
            traced = self.config.worker.slowlog_timeout is not None
            log.error("php#%d (pid %d) exceeded request_timeout on %s; killing it%s", proc.position,
                      proc.pid, event.uri or "?", " once it has logged its PHP backtrace" if traced else "")
            self.kill(proc, backtrace_first=traced)
        elif isinstance(event, worker_events.WorkerBootFailed):
            self.boot_failed(slot, event)

    def recycle_reason(self, proc: WorkerProc, event: worker_events.WorkerQuota) -> str:
        if event.reason == "max_memory":
            return (f"holds {event.value / 2**20:.1f} MiB of anonymous memory after a request, over "
                    f"max_memory ({self.config.worker.max_memory / 2**20:.1f} MiB)")
        if event.reason == "max_requests":
            return f"reached max_requests ({self.quota(proc.position)})"
        return f"asked to be replaced ({event.reason})"

    def boot_failed(self, slot: WorkerSlot, event: worker_events.WorkerBootFailed) -> None:
        # the first line says it; PHP's stack trace is in the worker's own log line
        slot.last_error = event.error.strip().split("\n")[0]
        if self.giving_up is slot:
            self.give_up()

    def worker_ready(self, slot: WorkerSlot, proc: WorkerProc) -> None:
        if proc.state != "starting":
            return
        proc.state = "ready"
        self.ever_ready = True
        if slot.started():
            log.info("php#%d: circuit closed: a worker started again", slot.position)
        if slot.successor is proc:
            old, slot.current, slot.successor = slot.current, proc, None
            slot.quota_reached = False
            if old is not None and old.state in ("starting", "ready"):
                log.info("php#%d (pid %d) ready; retiring pid %d", proc.position, proc.pid, old.pid)
                self.retire(old)
            self.reloads.slot_rolled(slot.position)
        if not self.announced_ready and all(
            s.current is not None and s.current.state == "ready" for s in self.slots.values()
        ):
            self.announce_ready()

    def announce_ready(self) -> None:
        self.announced_ready = True
        scheme = "https" if self.config.tls.enabled else "http"
        urls = ", ".join(f"{scheme}://{sockets.display_address(s)}" for s in self.fronts.listen_socks)
        script = self.config.worker.script
        mode = f"worker mode: {script}" if script else "classic mode"
        log.info("askr ready: %s (%d PHP workers, %s, root %s)", urls, len(self.slots), mode,
                 self.config.server.root)
        self.systemd.ready(f"serving {urls}, {len(self.slots)} PHP workers")
        if self.fronts.redirect_sock is not None:
            log.info("redirecting http://%s to https", sockets.display_address(self.fronts.redirect_sock))

    def reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.queue.reaped(pid, wait_status) or self.scheduler.reaped(pid, wait_status):
                continue
            front = self.fronts.reaped(pid, wait_status)
            if front is not None:
                if not self.stopping:
                    log.error("front #%d (pid %d) exited with %s; restarting it", front.index, pid,
                              os.waitstatus_to_exitcode(wait_status))
                    self.replace_front(front)
                continue
            zygote = self.gens.find_pid(pid)
            if zygote is not None:
                zygote.proc.returncode = os.waitstatus_to_exitcode(wait_status)  # type: ignore[union-attr]
            # anything else: a PHP worker orphaned by its zygote, re-parented to us (subreaper)

    def replace_front(self, front: FrontHandle) -> None:
        """A front died: only its own clients' connections are lost. Every PHP worker serves every
        front, so none is killed; each reconnects to the new process (a worker that was answering
        the dead front sees its channel break, as on a client abort, and is replaced)."""
        self.fronts.restart(front)

    # -- stopping ----------------------------------------------------------------------------
    async def finish_stop(self) -> None:
        """The fronts have exited: retire PHP. With the queues' front ends and the zygotes
        closed, idle workers exit; each exit wakes us (SIGCHLD, or the zygote's report)."""
        self.fronts.close_queues()
        for zygote in self.gens.all():
            zygote.close()
        deadline = time.monotonic() + (STOP_NOW_GRACE if self.stopping_now else WORKER_STOP_GRACE)
        while self._live_workers() and (left := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(self.events.get(), left)
            except TimeoutError:
                break
            if event == Signal(signal.SIGCHLD):
                self.reap()
            elif isinstance(event, ZygoteLine) and event.fields[:1] == ["exited"]:
                self.procs.pop(int(event.fields[1]), None)
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
        if self.watcher is not None:
            self.watcher.stop()
        for task in self._tasks:
            task.cancel()
        for handle in self._timers:
            handle.cancel()
        self.fronts.cleanup()
        for zygote in self.gens.all():
            if zygote.proc is not None and zygote.proc.poll() is None:
                zygote.close()
            zygote.stop_reading()
        if self.admin is not None:
            self.admin.close()
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
