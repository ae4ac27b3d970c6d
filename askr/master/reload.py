"""Rolling reloads, canaries and rollback: state the master's loop advances, one step per event.

A reload boots the next PHP generation (fresh module startup: new code, a fresh OPcache; the
root is re-resolved, so a symlink swap takes effect), then replaces each worker in turn, the
replacement first and the old worker retired once it is ready, so capacity never dips. With a
canary, the first worker is replaced alone and watched for canary_seconds (canary.py judges it).
If a replacement cannot get ready, everything rolls back to the previous generation the same
way. Phases:

    STARTING -> [CANARY -> WATCH ->] ROLLING -> QUEUE -> done
                    \\________\\__________\\-> ROLLING_BACK -> done

Nothing here waits: `Reloads` records where the reload is, the arbiter's `reconcile()` starts
the replacement `roll_position()` names, and `advance()` moves to the next phase once its
condition holds. Timers (ROLL_TIMEOUT, canary_seconds) and the queue workers' roll come back
as events. A reload asked for meanwhile runs next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from askr.master import canary
from askr.master.events import RELOAD, CanaryDue, QueueRolled, RollTimeout
from askr.master.zygote import Zygote

if TYPE_CHECKING:
    from askr.master.arbiter import Arbiter, WorkerProc

log = logging.getLogger("askr.master")

ROLL_TIMEOUT = 60.0  # a reload gives each replacement this long to become ready, then rolls back


class Phase(Enum):
    STARTING = "starting"  # the new zygote boots
    CANARY = "canary"  # the canary slot rolls
    WATCH = "watch"  # the canary serves for canary_seconds
    ROLLING = "rolling"  # the other slots roll, one at a time
    QUEUE = "queue"  # the queue workers roll
    ROLLING_BACK = "rolling back"  # back to the previous generation, one slot at a time


ROLLING_PHASES = (Phase.CANARY, Phase.ROLLING, Phase.ROLLING_BACK)


@dataclass
class Reload:
    """The reload in progress."""

    id: int
    why: str
    canary: bool
    from_generation: int
    phase: Phase = Phase.STARTING
    previous: Zygote | None = None  # the generation it replaces: what a rollback returns to
    rolling: int | None = None  # the slot being rolled now
    attempt: int = 0  # counts slot rolls, so a stale RollTimeout is told from the live one
    watched: int = -1  # the canary's worker id while it is watched
    start: dict[int, canary.Counts] = field(default_factory=dict)  # counters when the watch began
    report: dict = field(default_factory=dict)  # /api/status "last_reload"

    def __post_init__(self) -> None:
        self.report = {"requested_by": self.why, "started_at": time.time(), "finished_at": None,
                       "outcome": "in progress", "from_generation": self.from_generation,
                       "canary": None}  # "watching", then "healthy" or "unhealthy"

    @property
    def previous_generation(self) -> int:
        return self.previous.generation if self.previous is not None else self.from_generation

    def finish(self, outcome: str, generation: int) -> None:
        self.report.update(outcome=outcome, finished_at=time.time(), generation=generation)


class Reloads:
    def __init__(self, master: Arbiter):
        self.master = master  # its tables are read, its spawn/kill/timers used; it owns the loop
        self.current: Reload | None = None
        self.next: tuple[str, bool] | None = None  # (why, canary) of one asked for meanwhile
        self.started = 0
        self.last: dict | None = None  # the latest finished reload's report

    def report(self) -> dict | None:
        """/api/status "last_reload": the one in progress, else the latest."""
        return self.current.report if self.current is not None else self.last

    # -- asking --------------------------------------------------------------------------------
    def ask(self, why: str, canary_wanted: bool = False) -> str:
        """Start a reload, or queue it behind the one running: "started" or "queued"."""
        canary_wanted = canary_wanted or self.master.config.reload.canary
        if self.current is not None:
            log.info("%s: a reload is in progress; another one follows it", why)
            _, queued_canary = self.next or ("", False)
            self.next = (why, canary_wanted or queued_canary)
            return "queued"
        log.info("%s: rolling reload%s", why, " with a canary" if canary_wanted else "")
        self.master.systemd.reloading()
        self._start(why, canary_wanted)
        return "started"

    def _start(self, why: str, canary_wanted: bool) -> None:
        self.started += 1
        self.current = Reload(self.started, why, canary_wanted, from_generation=self.master.gens.number)
        self.master.boot_generation(RELOAD)

    def abandon(self) -> None:
        """Shutdown: the reload ends where it is (its outcome stays "in progress")."""
        self.current = None
        self.next = None

    # -- the phases ----------------------------------------------------------------------------
    def zygote_started(self, zygote: Zygote) -> None:
        reload, master = self.current, self.master
        if reload is None:  # abandoned meanwhile
            zygote.close()
            return
        reload.previous = master.gens.promote(zygote)
        master.fronts.command_all({"cmd": "reload"})
        if reload.canary and reload.previous is not None:
            reload.phase = Phase.CANARY
            reload.report["canary"] = "watching"
            log.info("canary: php#%d runs generation %d for %g s", 0, master.gens.number,
                     master.config.reload.canary_seconds)
        else:
            reload.phase = Phase.ROLLING

    def zygote_failed(self, error: str) -> None:
        log.error("reload failed: cannot start the new PHP generation: %s; nothing changed", error)
        self._finish(f"failed: {error}")

    def roll_position(self) -> int | None:
        """The slot to replace now: the first whose worker runs other code, one at a time; in
        the canary phase only the first slot. When the roll moves on to a slot, that slot's
        ROLL_TIMEOUT starts."""
        reload = self.current
        if reload is None or reload.phase not in ROLLING_PHASES:
            return None
        slots = list(self.master.slots.values())
        for slot in slots[:1] if reload.phase is Phase.CANARY else slots:
            if slot.needs_successor(self.master.gens.number):
                if reload.rolling != slot.position:
                    reload.rolling = slot.position
                    reload.attempt += 1
                    self.master.later(ROLL_TIMEOUT, RollTimeout(reload.attempt))
                return slot.position
        return None

    def is_rolling(self, position: int) -> bool:
        reload = self.current
        return reload is not None and reload.phase in ROLLING_PHASES and reload.rolling == position

    def slot_rolled(self, position: int) -> None:
        """`position`'s replacement is ready: that roll step is done (the slot may need another)."""
        if self.current is not None and self.current.rolling == position:
            self.current.rolling = None

    def advance(self) -> None:
        """Move on when the phase's condition holds (called after every event)."""
        reload, master = self.current, self.master
        if reload is None:
            return
        generation = master.gens.number
        first = master.slots[0]
        if reload.phase is Phase.CANARY:
            current = first.current
            if (first.successor is None and current is not None and current.generation == generation
                    and current.state == "ready"):
                self._watch(reload, current)
        elif reload.phase is Phase.WATCH:
            watched = master.procs.get(reload.watched)
            if first.current is None or first.current is not watched or watched.state != "ready":
                self._verdict(reload, "the canary worker exited")
        elif reload.phase in (Phase.ROLLING, Phase.ROLLING_BACK) and not any(
                s.needs_successor(generation) or s.successor is not None for s in master.slots.values()):
            self._rolled(reload)

    def _watch(self, reload: Reload, canary_proc: WorkerProc) -> None:
        reload.phase = Phase.WATCH
        reload.rolling = None
        reload.watched = canary_proc.worker_id
        reload.start = self._counts(p for p in self.master.procs.values() if p.state == "ready"
                                    and (p is canary_proc or p.generation == reload.previous_generation))
        self.master.later(self.master.config.reload.canary_seconds, CanaryDue(reload.id))

    def judge_canary(self, reload_id: int) -> None:
        reload = self.current
        if reload is None or reload.id != reload_id or reload.phase is not Phase.WATCH:
            return
        now = self._counts(self.master.procs.values())
        canary_start = {k: v for k, v in reload.start.items() if k == reload.watched}
        old_start = {k: v for k, v in reload.start.items() if k != reload.watched}
        self._verdict(reload, canary.verdict(canary.window(canary_start, now), canary.window(old_start, now)))

    def _counts(self, procs: Iterable[WorkerProc]) -> dict[int, canary.Counts]:
        """Each worker's scoreboard counters, by worker id."""
        board = self.master.scoreboard
        return {p.worker_id: canary.Counts((s := board.read(p.worker_id, p.pid)).served, s.errors)
                for p in procs}

    def _verdict(self, reload: Reload, verdict: str) -> None:
        self.master.metrics.canaries["unhealthy" if verdict else "healthy"] += 1
        reload.report["canary"] = "unhealthy" if verdict else "healthy"
        if verdict:
            log.error("canary UNHEALTHY — aborting reload; remaining workers keep old code (%s)", verdict)
            self._roll_back(reload, f"canary unhealthy: {verdict}")
        else:
            log.info("canary healthy — rolling the rest")
            reload.phase = Phase.ROLLING

    def roll_failed(self) -> None:
        """The slot being rolled got no ready replacement (boot failures, or ROLL_TIMEOUT)."""
        reload, master = self.current, self.master
        assert reload is not None and reload.rolling is not None
        slot = master.slots[reload.rolling]
        if slot.successor is not None:
            master.kill(slot.successor)
        if reload.phase is Phase.CANARY:
            self._verdict(reload, f"the canary did not start: {slot.last_error or 'not ready in time'}")
        elif reload.phase is Phase.ROLLING:
            failed, errors = master.gens.number, self._last_errors()
            if reload.previous is None:
                self._finish(f"failed: generation {failed} did not start ({errors})")
                return
            log.error("reload aborted: a generation %d worker did not get ready (%s); rolling back to "
                      "generation %d", failed, errors, reload.previous.generation)
            self._roll_back(reload, f"rolled back: generation {failed} did not start ({errors})")
        else:  # the rollback itself is stuck: it stays where it is, its outcome already recorded
            self._finish(None)

    def roll_timed_out(self, attempt: int) -> None:
        reload = self.current
        if reload is not None and reload.attempt == attempt and reload.rolling is not None \
                and reload.phase in ROLLING_PHASES:
            self.roll_failed()

    def _roll_back(self, reload: Reload, outcome: str) -> None:
        """The previous generation becomes current again, and every slot that rolled already is
        rolled back, one at a time, the same way."""
        reload.finish(outcome, reload.previous_generation)
        self.master.metrics.reload_finished(outcome)
        if reload.previous is None:
            self._finish(None)
            return
        self.master.gens.rollback(reload.previous)
        reload.phase = Phase.ROLLING_BACK
        reload.rolling = None

    def _rolled(self, reload: Reload) -> None:
        """Every slot runs the current generation."""
        master = self.master
        if reload.phase is Phase.ROLLING_BACK:
            self._finish(None)
            return
        log.info("reload complete: all %d PHP workers run generation %d", len(master.slots),
                 master.gens.number)
        master.scheduler.reload(master.gens.number)
        reload.phase = Phase.QUEUE
        if not master.queue.slots:
            self._finish("complete")
            return

        async def roll_queue() -> None:
            await master.queue.roll(master.gens.number)
            master.post(QueueRolled(reload.id))
        master.track(roll_queue())

    def queue_rolled(self, reload_id: int) -> None:
        if self.current is not None and self.current.id == reload_id:
            self._finish("complete")

    def _finish(self, outcome: str | None) -> None:
        """End the reload in progress (outcome None: recorded already), then start the one
        asked for meanwhile, if any."""
        reload, master = self.current, self.master
        assert reload is not None
        if outcome is not None:
            reload.finish(outcome, master.gens.number)
            master.metrics.reload_finished(outcome)
        self.last, self.current = reload.report, None
        master.history.reload_finished(reload.report)
        master.gens.close_idle(master.live_generations())
        if self.next is not None:
            why, canary_wanted = self.next
            self.next = None
            log.info("starting the queued reload")
            self._start(why, canary_wanted)
        else:
            outcome = reload.report["outcome"]
            master.systemd.ready(f"PHP generation {master.gens.number}: last reload {outcome}")

    def _last_errors(self) -> str:
        errors = sorted({s.last_error for s in self.master.slots.values() if s.last_error})
        return "; ".join(errors) or f"none within {ROLL_TIMEOUT:.0f} s"

    def keeps(self) -> set[int]:
        """The generation a rollback would return to stays open (with one worker, the canary
        retires the previous generation's last worker)."""
        reload = self.current
        return {reload.previous.generation} if reload is not None and reload.previous is not None else set()
