"""Queue workers: N PHP CLI processes running the queue script (Laravel's queue:work, in-process).

The arbiter owns them like everything else: it reaps them and hands the exit here; respawns come
back to it as events. A worker that exits is replaced (with backoff when it keeps failing fast);
on reload each is replaced in turn, the new one first and the old one after its current job; on
shutdown each gets SIGTERM, finishes its job, and is killed only after stop_timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from askr.config import Config
from askr.jobs import process
from askr.jobs.process import CliProcess, Release

log = logging.getLogger("askr.master")

BACKOFF_START = 0.1
BACKOFF_MAX = 10.0
QUICK_EXIT = 2.0  # an exit sooner than this after starting counts as a failure, even a clean one


@dataclass
class QueueSlot:
    index: int
    current: CliProcess | None = None
    retiring: list[CliProcess] = field(default_factory=list)  # replaced; finishing their job
    failures: int = 0  # fast exits in a row, for backoff
    restarts: int = 0
    last_exit: str = ""

    @property
    def name(self) -> str:
        return f"queue#{self.index}"


class QueueWorkers:
    def __init__(self, config: Config, respawn_due: Callable[[int], None],
                 run_as: tuple[int, int] | None = None):
        self.config = config
        self.respawn_due = respawn_due  # tells the arbiter slot N's backoff is over: it calls respawn(N)
        self.run_as = run_as  # [server] user: (uid, gid) the workers run as
        enabled = config.queue.script is not None
        self.slots = [QueueSlot(i) for i in range(config.queue.workers if enabled else 0)]
        self.release: Release | None = None
        self.generation = 0
        self.stopping = False
        self._finishing: set[asyncio.Task] = set()  # shutdown's SIGTERM-then-wait, one per worker

    def arguments(self) -> list[str]:
        queue = self.config.queue
        args = [f"--max-jobs={queue.max_jobs}"] if queue.max_jobs else []
        if queue.max_time:
            args.append(f"--max-time={queue.max_time}")
        return [*args, *queue.args]

    def _use(self, generation: int) -> None:
        """New workers run `generation`'s release, resolved now (a symlink deploy takes effect)."""
        self.release = Release.resolve(self.config, self.config.queue.script or "", self.run_as)
        self.generation = generation

    def start(self, generation: int) -> None:
        if not self.slots:
            return
        self._use(generation)
        for slot in self.slots:
            self.spawn(slot)
        log.info("%d queue worker(s) started: %s %s", len(self.slots), self.release.script,
                 " ".join(self.arguments()))

    def spawn(self, slot: QueueSlot) -> None:
        assert self.release is not None
        try:
            slot.current = process.start(self.config, slot.name, self.release, self.arguments(),
                                         self.generation, self.run_as,
                                         env={"ASKR_QUEUE_WORKER": str(slot.index)})
        except OSError as e:
            slot.current = None
            slot.last_exit = f"cannot start {self.config.worker.php_cli}: {e}"
            log.error("%s: %s", slot.name, slot.last_exit)
            self._respawn_later(slot, failed=True)

    def respawn(self, index: int) -> None:
        """The arbiter's QueueRespawn event: a backoff delay is over."""
        slot = self.slots[index]
        if not self.stopping and slot.current is None:
            slot.restarts += 1
            self.spawn(slot)

    def _find(self, pid: int) -> tuple[QueueSlot, CliProcess] | None:
        for slot in self.slots:
            for child in (slot.current, *slot.retiring):
                if child is not None and child.pid == pid:
                    return slot, child
        return None

    def reaped(self, pid: int, status: int) -> bool:
        """The arbiter reaped `pid`; True if it was a queue worker."""
        found = self._find(pid)
        if found is None:
            return False
        slot, child = found
        child.reaped(status)
        name = f"{slot.name} (pid {pid})"
        slot.last_exit = child.how()
        if child in slot.retiring:
            slot.retiring.remove(child)
            log.info("%s %s after being replaced", name, child.how())
            return True
        slot.current = None
        if self.stopping:
            log.info("%s %s", name, child.how())
            return True
        quick = child.lived() < QUICK_EXIT
        if child.exit_code == 0 and not quick:
            log.info("%s %s (its --max-jobs or --max-time was reached); starting a new one", name,
                     child.how())
            slot.failures = 0
        else:
            log.error("%s %s after %.1f s; restarting it", name, child.how(), child.lived())
            slot.failures = slot.failures + 1 if quick else 0
        self._respawn_later(slot, failed=slot.failures > 0)
        return True

    def _respawn_later(self, slot: QueueSlot, failed: bool) -> None:
        if not failed:
            self.respawn_due(slot.index)
            return
        delay = min(BACKOFF_START * 2 ** max(slot.failures - 1, 0), BACKOFF_MAX)
        if slot.failures > 1:
            log.warning("%s failed %d times in a row; next start in %.1f s", slot.name, slot.failures, delay)
        asyncio.get_running_loop().call_later(delay, self.respawn_due, slot.index)

    async def roll(self, generation: int) -> None:
        """Reload: each worker in turn is replaced by one running the new release; the old one gets
        SIGTERM, finishes its current job and exits (killed after stop_timeout)."""
        if not self.slots or self.stopping:
            return
        self._use(generation)
        for slot in self.slots:
            if self.stopping:
                return
            old = slot.current
            slot.current = None
            self.spawn(slot)
            if old is not None:
                old.state = "stopping"
                slot.retiring.append(old)
                await self.finish(old)
        log.info("queue workers rolled: %d now run generation %d", len(self.slots), generation)

    async def finish(self, child: CliProcess) -> None:
        """SIGTERM (Laravel's worker finishes its current job, then exits); SIGKILL after stop_timeout."""
        child.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(child.exited), self.config.queue.stop_timeout)
        except TimeoutError:
            log.warning("%s (pid %d) still busy %.0f s after SIGTERM ([queue] stop_timeout); killing it",
                        child.name, child.pid, self.config.queue.stop_timeout)
            child.kill()

    def stop(self, now: bool = False) -> None:
        """Shutdown: no more respawns; every worker finishes its job (now: killed at once)."""
        self.stopping = True
        for child in self.live():
            if now:
                child.kill()
            elif child.state != "stopping":
                child.state = "stopping"
                task = asyncio.get_running_loop().create_task(self.finish(child))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    def live(self) -> list[CliProcess]:
        children = [c for s in self.slots for c in (s.current, *s.retiring)]
        return [c for c in children if c is not None and c.state != "exited"]

    def status(self) -> list[dict]:
        """One entry per process (a slot briefly has two during a reload); a slot waiting out
        its backoff, or stopped, has one without a process."""
        out = []
        for slot in self.slots:
            waiting = "restarting" if not self.stopping else "stopped"
            children = [c for c in (slot.current, *slot.retiring) if c is not None]
            entries = [(c.pid, c.state, c.generation, round(c.started_at, 3)) for c in children]
            if slot.current is None:
                entries.append((None, waiting, None, None))
            out += [{"name": slot.name, "pid": pid, "state": state, "generation": generation,
                     "started_at": started, "restarts": slot.restarts, "failures": slot.failures,
                     "last_exit": slot.last_exit or None} for pid, state, generation, started in entries]
        return out
