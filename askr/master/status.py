"""GET /api/status: the master's state and the scoreboard, as one JSON document (docs/admin.md).

Read-only: built on demand from the arbiter's tables and each worker's scoreboard slot (what it
holds now, what it has served), plus /proc for memory. Nothing here changes state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from askr import __version__, readiness
from askr.bridge.scoreboard import SlotState

if TYPE_CHECKING:
    from askr.master.arbiter import Arbiter


def snapshot(arbiter: Arbiter, full: bool = False) -> dict[str, Any]:
    """The status document; `full` (?full) adds each worker's latest finished request."""
    now, mono = time.time(), arbiter.clock()
    workers = []
    for proc in sorted(arbiter.procs.values(), key=lambda p: (p.position, p.started_at)):
        slot = arbiter.scoreboard.read(proc.worker_id, proc.pid)
        busy = bool(slot.request_id)
        began = slot.began_us / 1e6 if busy and slot.began_us else None
        workers.append({
            "position": proc.position, "worker_id": proc.worker_id, "pid": proc.pid,
            "generation": proc.generation, "state": proc.state, "busy": busy,
            "current_uri": slot.uri if busy else None,
            "current_seconds": round(max(0.0, now - began), 3) if began is not None else None,
            "requests": slot.served, "errors_5xx": slot.errors,
            "slowlogged_requests": slot.slowlogged,
            "denied_syscalls": slot.denied_syscalls,
            **memory_kib(proc.pid),
            "started_at": round(now - (mono - proc.started_at), 3),
        })
        if full:
            workers[-1].update(last_request(slot))
    alive = [w for w in workers if w["pid"]]
    slots = arbiter.slots.values()
    return {
        "version": __version__,
        "uptime_seconds": round(now - arbiter.started_at, 3),
        "state": arbiter.readiness().state,
        "draining": arbiter.draining,
        "traffic": traffic(arbiter, now),
        "mode": "worker" if arbiter.config.worker.script else "classic",
        "generation": arbiter.gens.number,
        "workers_configured": len(arbiter.slots),
        "workers_alive": len(alive),
        "workers_ready": sum(w["state"] == "ready" for w in alive),
        "busy": sum(w["busy"] for w in alive),
        "idle": sum(w["state"] == "ready" and not w["busy"] for w in alive),
        "restarts": sum(s.restarts for s in slots),
        "recycled": dict(arbiter.recycled),
        # requests [worker] slowlog_timeout logged; `slow_requests` (below) counts [log] slow_request's
        "slowlogged_requests": arbiter.slowlogged_gone + sum(w["slowlogged_requests"] for w in workers),
        "failing": {f"php#{s.position}": {"failures": s.failures, "last_error": s.last_error,
                                          "circuit": "open" if s.circuit_open else "closed"}
                    for s in slots if s.failures},
        "reloading": arbiter.reloads.current is not None,
        "last_reload": arbiter.reloads.report(),
        **arbiter.metrics.request_counters(),
        "slow_request_seconds": arbiter.config.log.slow_request,
        "workers": workers,
        "sandbox": sandbox_state(arbiter, workers),
        "queue_workers": arbiter.queue.status(),
        "scheduler": arbiter.scheduler.status(),
    }


def sandbox_state(arbiter: Arbiter, workers: list[dict[str, Any]]) -> dict[str, Any]:
    """[sandbox] as the current generation's zygote applied it: the Landlock ABI enforced (0:
    none), whether the seccomp filter is on, and the syscalls it denied so far (all workers)."""
    config = arbiter.config.sandbox
    zygote = arbiter.gens.current
    applied = (zygote.sandbox if zygote is not None else None) or {}
    return {"enabled": config.enabled, "required": config.required, "allow_exec": config.allow_exec,
            "landlock_abi": applied.get("landlock_abi", 0), "seccomp": applied.get("seccomp", False),
            "denied_syscalls": arbiter.denied_gone + sum(w["denied_syscalls"] for w in workers)}


def last_request(slot: SlotState) -> dict[str, Any]:
    """A worker's latest finished request, as php-fpm's ?full shows it ("request duration",
    "last request cpu", "last request memory"); None before its first."""
    if not slot.last_us:  # none finished yet (any request takes more than a microsecond)
        return {"last_request_seconds": None, "last_request_cpu_seconds": None,
                "last_request_peak_bytes": None}
    return {"last_request_seconds": slot.last_us / 1e6, "last_request_cpu_seconds": slot.last_cpu_us / 1e6,
            "last_request_peak_bytes": slot.last_peak}


def traffic(arbiter: Arbiter, now: float) -> dict[str, Any]:
    """The running fronts' latest stats reports as one view (askr drain --wait polls `quiet`);
    a running front that has not reported yet keeps it from being quiet."""
    metrics, mono = arbiter.metrics, time.monotonic()
    fronts: list[readiness.FrontActivity | None] = []
    for front in arbiter.fronts.handles:
        if front.proc is None:
            continue
        report = metrics.fronts.get(front.index)
        fronts.append(None if report is None else readiness.FrontActivity(
            metrics.reported_at[front.index], report.get("idle_seconds"), report.get("in_flight", 0)))
    since = mono - (now - arbiter.started_at)
    return {**readiness.traffic(fronts, mono, arbiter.config.admin.drain_quiet, since),
            "quiet_after_seconds": arbiter.config.admin.drain_quiet}


def memory_kib(pid: int) -> dict[str, int | None]:
    """VmRSS (every resident page, shared ones too) and RssAnon (what [worker] max_memory
    compares: the process's own heap, without OPcache's shared memory or libraries)."""
    found: dict[str, int | None] = {"rss_kib": None, "rss_anon_kib": None}
    names = {"VmRSS:": "rss_kib", "RssAnon:": "rss_anon_kib"}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                fields = line.split()
                key = names.get(fields[0]) if fields else None
                if key:
                    found[key] = int(fields[1])
    except (OSError, ValueError):
        pass
    return found
