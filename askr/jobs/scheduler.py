"""The scheduler: runs the scheduler script (Laravel's schedule:run, in-process) every interval.

Runs happen at wall-clock multiples of the interval (every minute at :00 by default, as cron
would), one at a time: a run that outlasts the interval delays the next instead of overlapping
it. A failed run is logged and recorded; later runs go on. No crontab is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from askr.config import Config
from askr.jobs import process
from askr.jobs.process import CliProcess, Release

log = logging.getLogger("askr.master")


def next_tick(now: float, interval: float) -> float:
    """The first wall-clock multiple of `interval` strictly after `now`."""
    return (math.floor(now / interval) + 1) * interval


class Scheduler:
    def __init__(self, config: Config, run_as: tuple[int, int] | None = None):
        self.config = config
        self.run_as = run_as  # [server] user: (uid, gid) runs start as
        self.enabled = config.scheduler.script is not None
        self.release: Release | None = None
        self.generation = 0
        self.current: CliProcess | None = None
        self.next_run: float | None = None
        self.last_run: dict | None = None
        self.runs = 0
        self.failed_runs = 0
        self.stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self, generation: int) -> None:
        if not self.enabled:
            return
        self.reload(generation)
        self._task = asyncio.get_running_loop().create_task(self._loop())
        log.info("scheduler: %s every %g s", self.release.script if self.release else "?",
                 self.config.scheduler.interval)

    def reload(self, generation: int) -> None:
        """Later runs use the release as it resolves now (a run in progress finishes as it is)."""
        if self.enabled:
            self.release = Release.resolve(self.config, self.config.scheduler.script or "", self.run_as)
            self.generation = generation

    async def _loop(self) -> None:
        interval = self.config.scheduler.interval
        while not self.stopping:
            self.next_run = next_tick(time.time(), interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.next_run - time.time()))
            if self.stopping:
                break
            await self._run_once()
        self.next_run = None

    async def _run_once(self) -> None:
        assert self.release is not None
        started = time.time()
        try:
            run = process.start(self.config, "scheduler", self.release, [], self.generation, self.run_as,
                                ignore_sigterm=True)
        except OSError as e:
            self._record(started, None, f"cannot start {self.config.worker.php_cli}: {e}")
            return
        self.current = run
        try:
            await asyncio.shield(run.exited)
        finally:
            self.current = None
        self._record(started, run.exit_code, run.how())

    def _record(self, started: float, code: int | None, how: str) -> None:
        finished = time.time()
        duration = finished - started
        self.runs += 1
        ok = code == 0
        if not ok:
            self.failed_runs += 1
        self.last_run = {"started_at": round(started, 3), "finished_at": round(finished, 3),
                         "duration_seconds": round(duration, 3), "exit_status": code, "ok": ok}
        if self.stopping:
            log.info("scheduler run %s after %.2f s", how, duration)
        elif ok:
            log.info("scheduler run done in %.2f s", duration)
        else:
            log.error("scheduler run failed: %s after %.2f s (see its output above); later runs go on",
                      how, duration)
        interval = self.config.scheduler.interval
        if duration > interval and not self.stopping:
            log.warning("the scheduler run took %.1f s, longer than [scheduler] interval (%g s): runs "
                        "never overlap, so the ticks in between were skipped", duration, interval)

    def reaped(self, pid: int, status: int) -> bool:
        run = self.current
        if run is None or run.pid != pid:
            return False
        run.reaped(status)
        return True

    def stop(self, now: bool = False) -> None:
        """No more runs; one in progress gets stop_timeout to finish (now: killed at once)."""
        self.stopping = True
        self._wake.set()
        run = self.current
        if run is None:
            return
        if now:
            run.kill()
        else:
            run.state = "stopping"
            asyncio.get_running_loop().call_later(self.config.scheduler.stop_timeout, self._kill_late, run)

    def _kill_late(self, run: CliProcess) -> None:
        if run.state != "exited":
            log.warning("scheduler run (pid %d) still running %g s after shutdown began "
                        "([scheduler] stop_timeout); killing it", run.pid, self.config.scheduler.stop_timeout)
            run.kill()

    def running(self) -> bool:
        return self.current is not None and self.current.state != "exited"

    def status(self) -> dict | None:
        if not self.enabled:
            return None
        run = self.current
        return {"script": self.release.script if self.release else self.config.scheduler.script,
                "interval_seconds": self.config.scheduler.interval,
                "running": run is not None, "pid": run.pid if run else None,
                "runs": self.runs, "failed_runs": self.failed_runs, "last_run": self.last_run,
                "next_run_at": round(self.next_run, 3) if self.next_run and run is None else None}
