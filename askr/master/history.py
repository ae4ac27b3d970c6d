"""GET /api/history: the last minutes of traffic, one sample a second, for the admin dashboard.

The fronts report cumulative counters every STATS_INTERVAL (askr/metrics.py RequestStats); each
report is turned into what changed since that front's previous one, and once a second the master
folds the fronts' latest intervals into one sample: requests/s, 5xx/s, p50 and p99 (from the
intervals' duration histograms), requests waiting for a worker, in flight, busy workers. The
samples sit in a ring of fixed size, so memory stays bounded however long askr runs. The
latest reloads (with their canary verdicts) are kept beside them, as few.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from askr.metrics import FINE_BUCKETS, STATS_INTERVAL, RequestStats

SAMPLE_SECONDS = 1.0
HISTORY_SECONDS = 600  # 10 minutes of samples
RELOADS_KEPT = 10
STALE_AFTER = 3 * STATS_INTERVAL  # a front silent this long (gone, or restarting) counts for nothing


def percentile(buckets: list[int], q: float, bounds: tuple[float, ...] = FINE_BUCKETS) -> float | None:
    """The q-quantile (0..1) of a histogram: counts per bucket, bucket i holding values up to
    bounds[i] (the last one unbounded). Linear within the bucket that holds it, as Prometheus'
    histogram_quantile does; a quantile in the unbounded bucket is reported as the last bound.
    None for an empty histogram."""
    total = sum(buckets)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / n
        seen += n
    return bounds[-1]


@dataclass
class Interval:
    """What one front counted between two of its reports."""

    seconds: float = 0.0
    requests: int = 0
    errors_5xx: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(FINE_BUCKETS) + 1))

    def add(self, other: Interval) -> None:
        self.seconds += other.seconds
        self.requests += other.requests
        self.errors_5xx += other.errors_5xx
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


@dataclass
class FrontSeries:
    last: dict[str, Any]  # its latest report
    at: float  # when it came (monotonic)
    pending: Interval = field(default_factory=Interval)  # since the latest sample
    previous: Interval = field(default_factory=Interval)  # what the latest sample used


_ZERO = RequestStats().snapshot()  # what a front reports before its first request


class History:
    def __init__(self, clock: Any = time.monotonic, wall: Any = time.time,
                 size: int = int(HISTORY_SECONDS / SAMPLE_SECONDS)):
        self.clock, self.wall = clock, wall
        self.fronts: dict[int, FrontSeries] = {}
        self.samples: deque[dict[str, Any]] = deque(maxlen=size)
        self.reloads: deque[dict[str, Any]] = deque(maxlen=RELOADS_KEPT)

    def front_report(self, index: int, report: dict[str, Any]) -> None:
        """A front's stats report (RequestStats.snapshot plus waiting, in_flight): what changed
        since its previous one is added to what the next sample counts."""
        if "fine_buckets" not in report:  # a front of an older askr has no histogram to read
            return
        now = self.clock()
        series = self.fronts.get(index)
        if series is None or report["count"] < series.last["count"]:
            # a new front, or one restarted: it counted from zero, for one STATS_INTERVAL
            series = self.fronts[index] = FrontSeries(_ZERO, now - STATS_INTERVAL)
        last = series.last
        series.pending.add(Interval(
            seconds=now - series.at, requests=report["count"] - last["count"],
            errors_5xx=report["by_class"][4] - last["by_class"][4],
            buckets=[a - b for a, b in zip(report["fine_buckets"], last["fine_buckets"], strict=True)]))
        series.last, series.at = report, now

    def sample(self, busy_workers: int, workers: int) -> dict[str, Any]:
        """Fold the fronts' latest intervals into one sample and keep it. A front whose report
        did not arrive since the previous sample (timers drift) counts with its previous interval."""
        now = self.clock()
        rate = errors = 0.0
        buckets = [0] * (len(FINE_BUCKETS) + 1)
        waiting = in_flight = 0
        for series in self.fronts.values():
            if now - series.at > STALE_AFTER:
                continue
            if series.pending.seconds > 0:
                series.previous, series.pending = series.pending, Interval()
            interval = series.previous
            if interval.seconds > 0:
                rate += interval.requests / interval.seconds
                errors += interval.errors_5xx / interval.seconds
                buckets = [a + b for a, b in zip(buckets, interval.buckets, strict=True)]
            waiting += series.last.get("waiting", 0)
            in_flight += series.last.get("in_flight", 0)
        p50, p99 = percentile(buckets, 0.5), percentile(buckets, 0.99)
        point = {"t": round(self.wall(), 3), "requests_per_s": round(rate, 2),
                 "errors_5xx_per_s": round(errors, 2),
                 "p50_ms": None if p50 is None else round(p50 * 1000, 3),
                 "p99_ms": None if p99 is None else round(p99 * 1000, 3),
                 "waiting": waiting, "in_flight": in_flight, "busy_workers": busy_workers, "workers": workers}
        self.samples.append(point)
        return point

    def reload_finished(self, report: dict[str, Any]) -> None:
        self.reloads.append(dict(report))

    def document(self, since: float | None = None, current_reload: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        """The /api/history answer: samples newer than `since` (a sample's `t`; all without it),
        oldest first, and the latest reloads, newest first (the one in progress on top)."""
        samples = [s for s in self.samples if since is None or s["t"] > since]
        reloads = [dict(r) for r in reversed(self.reloads)]
        if current_reload is not None:
            reloads.insert(0, dict(current_reload))
        return {"sample_seconds": SAMPLE_SECONDS, "keeps_seconds": self.samples.maxlen * SAMPLE_SECONDS,
                "samples": samples, "reloads": reloads}
