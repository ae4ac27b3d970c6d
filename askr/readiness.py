"""Should this host get traffic? The answer behind /api/health/ready, [server] health_path and
the `state` of /api/status (docs/admin.md), decided from the master's state alone (pure).

A load balancer probes it; it must say "stop sending" before askr stops serving (`askr drain`,
SIGTERM with drain_delay) and "send" only once a PHP worker can take a request.
"""

from __future__ import annotations

from dataclasses import dataclass

READY = "ready"
BOOTING = "booting"  # no PHP worker has been ready yet
DRAINING = "draining"  # askr drain: still serving what arrives
STOPPING = "stopping"  # SIGTERM received (drain_delay included)
NO_READY_WORKERS = "no ready workers"  # had some, has none now (crashes, a blocked boot)


@dataclass(frozen=True, slots=True)
class Readiness:
    state: str  # READY or the reason it is not

    @property
    def ready(self) -> bool:
        return self.state == READY

    def document(self) -> dict[str, str]:
        """The health endpoints' JSON body."""
        return {"status": "ready"} if self.ready else {"status": "not ready", "reason": self.state}


def decide(*, stopping: bool, draining: bool, workers_ready: int, ever_ready: bool) -> Readiness:
    """Stopping outranks draining (the host is leaving either way), both outrank the workers:
    a drained host stays out of rotation whatever its workers do."""
    if stopping:
        return Readiness(STOPPING)
    if draining:
        return Readiness(DRAINING)
    if workers_ready:
        return Readiness(READY)
    return Readiness(NO_READY_WORKERS if ever_ready else BOOTING)


def liveness(fronts_running: int) -> tuple[bool, dict[str, str]]:
    """/api/health/live: the master answers (it serves this), and a front can take connections."""
    if fronts_running:
        return True, {"status": "live"}
    return False, {"status": "down", "reason": "no front process is running"}


@dataclass(frozen=True, slots=True)
class FrontActivity:
    """What one front's latest stats report said about its traffic (askr/metrics.py)."""

    reported_at: float  # when the master got it (its monotonic clock)
    idle_seconds: float | None  # since the front's latest request arrived, at the report; None: none yet
    in_flight: int  # requests it was answering then


def traffic(fronts: list[FrontActivity | None], now: float, quiet_after: float,
            since: float) -> dict[str, object]:
    """The fronts' traffic as one view, and whether the balancer has gone quiet (askr drain --wait).

    `fronts` has one entry per running front, None for one that has not reported yet. Quiet
    means every front has reported, none had a request in flight, and every report came
    `quiet_after` seconds or more after the latest request any front saw: each front has
    confirmed the whole quiet window, so a request that reached one front between its reports
    cannot be missed. `since` (the master's start) stands for the latest request when there was
    none."""
    reports = [f for f in fronts if f is not None]
    last = max((f.reported_at - f.idle_seconds for f in reports if f.idle_seconds is not None),
               default=since)
    in_flight = sum(f.in_flight for f in reports)
    quiet = (bool(reports) and len(reports) == len(fronts) and in_flight == 0
             and min(f.reported_at for f in reports) - last >= quiet_after)
    return {"in_flight": in_flight, "idle_seconds": round(max(0.0, now - last), 3), "quiet": quiet}
