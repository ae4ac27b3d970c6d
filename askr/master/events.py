"""What the master's loop takes off its queue, one at a time (askr/master/arbiter.py).

Everything that happens to the master arrives as one of these: signals, the zygotes' report
lines, the fronts' worker events, and the results of the few things the loop starts without
waiting for (a zygote booting, a timer, the queue workers' roll). Producers only enqueue; the
loop alone acts, so process lifecycle has exactly one owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from askr.bridge.events import WorkerEvent

if TYPE_CHECKING:
    from askr.master.zygote import Zygote


@dataclass(frozen=True, slots=True)
class Signal:
    signum: int


@dataclass(frozen=True, slots=True)
class ZygoteLine:
    """One line of a zygote's report (docs/internals.md): spawned, exited, or closed (EOF)."""

    zygote: Zygote
    fields: list[str]


@dataclass(frozen=True, slots=True)
class FrontEvent:
    """A front's news about one of its PHP workers."""

    event: WorkerEvent


@dataclass(frozen=True, slots=True)
class ZygoteStarted:
    """A new generation's zygote is up; `purpose` is RELOAD or RESTART."""

    zygote: Zygote
    purpose: str


@dataclass(frozen=True, slots=True)
class ZygoteFailed:
    """A reload's new zygote did not start (its error; a restart retries by itself)."""

    error: str


@dataclass(frozen=True, slots=True)
class Wake:
    """A backoff delay is over: the loop reconciles, which starts what is due."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No worker could boot: exit now, with or without the PHP error the front was to relay."""


@dataclass(frozen=True, slots=True)
class DrainDelayOver:
    """SIGTERM's [server] drain_delay has run out: drain and stop now."""


@dataclass(frozen=True, slots=True)
class RollTimeout:
    """A reload's replacement for one slot had ROLL_TIMEOUT to get ready; `attempt` says which roll."""

    attempt: int


@dataclass(frozen=True, slots=True)
class CanaryDue:
    """The canary has served for canary_seconds: time to judge it."""

    reload_id: int


@dataclass(frozen=True, slots=True)
class QueueRolled:
    """The queue workers run the reload's generation."""

    reload_id: int


@dataclass(frozen=True, slots=True)
class QueueRespawn:
    """A queue worker's backoff is over (askr/jobs/queue.py)."""

    index: int


@dataclass(frozen=True, slots=True)
class FilesChanged:
    """[dev] watch: files matching the globs changed (paths relative to the app base)."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WatchQuiet:
    """[dev] watch: a quiet period may be over; a reload is due if nothing changed since."""


@dataclass(frozen=True, slots=True)
class KillDue:
    """A worker asked to log its backtrace before a kill had its grace: SIGKILL it if still there."""

    worker_id: int
    pid: int


RELOAD = "reload"
RESTART = "restart"

Event = (Signal | ZygoteLine | FrontEvent | ZygoteStarted | ZygoteFailed | Wake | GiveUp | DrainDelayOver
         | RollTimeout | CanaryDue | QueueRolled | QueueRespawn | KillDue | FilesChanged | WatchQuiet)
