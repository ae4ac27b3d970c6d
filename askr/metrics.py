"""Prometheus metrics: what the fronts count per request, what the master counts itself, and the
exposition the admin API serves at GET /metrics (prometheus_client's text format).

Each front keeps cumulative counters (RequestStats) and sends a snapshot to the master every
STATS_INTERVAL seconds; the master adds them up. A front that restarts starts from zero again,
so its last snapshot is folded into a base first: totals never go backwards.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

STATS_INTERVAL = 1.0
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# What a request's duration is counted in: 100 us to 60 s, 10 steps a decade (each at most a
# third wider than the one before), so the dashboard's p50/p99 are close to the truth; every
# DURATION_BUCKETS bound is one of these, so /metrics' coarse buckets are sums of fine ones.
FINE_BUCKETS = tuple(b for b in (round(m * 10.0 ** e, 10) for e in range(-4, 2)
                                 for m in (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8)) if b <= 60.0)
_COARSE_ENDS = [FINE_BUCKETS.index(b) + 1 for b in DURATION_BUCKETS]  # fine bucket slices
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class RequestStats:
    """A front's counters: responses by status class, a duration histogram (FINE_BUCKETS), and the
    requests retried after their PHP worker crashed ([server] retry_crashed) and those whose retry
    crashed too."""

    __slots__ = ("accepted", "by_class", "count", "fine_counts", "last_request", "retried", "retry_failed",
                 "slow", "total_seconds")

    def __init__(self) -> None:
        self.by_class = [0] * 6
        self.fine_counts = [0] * (len(FINE_BUCKETS) + 1)  # the last one is +Inf
        self.count = 0
        self.total_seconds = 0.0
        self.last_request = 0.0  # loop time the latest request was dispatched (0: none yet)
        self.accepted = 0  # client connections accepted (php-fpm's "accepted conn")
        self.slow = 0  # PHP requests slower than [log] slow_request (php-fpm's "slow requests")
        self.retried = 0  # requests sent to another worker after theirs crashed
        self.retry_failed = 0  # of those, the ones whose second worker crashed too

    def record(self, status: int, seconds: float) -> None:
        self.by_class[min(max(status // 100, 1), 5)] += 1
        self.fine_counts[bisect.bisect_left(FINE_BUCKETS, seconds)] += 1
        self.count += 1
        self.total_seconds += seconds

    @property
    def bucket_counts(self) -> list[int]:
        """The fine counts summed into DURATION_BUCKETS (and +Inf), for /metrics."""
        fine, start, out = self.fine_counts, 0, []
        for end in _COARSE_ENDS:
            out.append(sum(fine[start:end]))
            start = end
        out.append(sum(fine[start:]))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"by_class": self.by_class[1:], "buckets": self.bucket_counts, "count": self.count,
                "sum": self.total_seconds, "fine_buckets": list(self.fine_counts),
                "accepted": self.accepted, "slow": self.slow, "retried": self.retried,
                "retry_failed": self.retry_failed}


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"by_class": [x + y for x, y in zip(a["by_class"], b["by_class"], strict=True)],
            "buckets": [x + y for x, y in zip(a["buckets"], b["buckets"], strict=True)],
            "count": a["count"] + b["count"], "sum": a["sum"] + b["sum"],
            **{name: a.get(name, 0) + b.get(name, 0) for name in _PLAIN_COUNTERS}}


# the front's counters that are summed as they are (restarts folded into the base as the rest)
_PLAIN_COUNTERS = ("accepted", "slow", "saturations", "retried", "retry_failed")


def _zero() -> dict[str, Any]:
    return RequestStats().snapshot()


class MasterMetrics(Collector):
    """The master's view, collected at scrape time from its own state and the fronts' snapshots."""

    def __init__(self, status: Callable[[], dict[str, Any]]):
        self.status = status
        self.base = _zero()  # what fronts that have since restarted had counted
        self.fronts: dict[int, dict[str, Any]] = {}  # each front's latest snapshot
        self.reported_at: dict[int, float] = {}  # when it came (time.monotonic), for askr drain --wait
        self.reloads: dict[str, int] = {}
        self.canaries: dict[str, int] = {"healthy": 0, "unhealthy": 0}
        self.worker_crashes = 0
        self.max_waiting = 0  # the most requests seen waiting for a worker at once (requests_counters)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def front_stats(self, index: int, snapshot: dict[str, Any]) -> None:
        """A front's cumulative counters (RequestStats.snapshot), its `waiting` gauge, and its
        traffic now (`in_flight`, `idle_seconds`: what askr drain --wait waits on)."""
        last = self.fronts.get(index)
        if last is not None and snapshot["count"] < last["count"]:
            self.base = _add(self.base, last)  # the front restarted: keep what it had counted
        self.fronts[index] = snapshot
        self.reported_at[index] = time.monotonic()
        # each front's own peak is exact (it probes on submit); across fronts the total is sampled
        total = sum(s.get("waiting", 0) for s in self.fronts.values())
        self.max_waiting = max(self.max_waiting, total, snapshot.get("peak_waiting", 0))

    def total(self) -> dict[str, Any]:
        """Every front's counters added up, with what restarted fronts had counted."""
        total = self.base
        for snapshot in self.fronts.values():
            total = _add(total, snapshot)
        return total

    def request_counters(self) -> dict[str, Any]:
        """php-fpm's pool counters, over every front (the status fields of docs/admin.md)."""
        total = self.total()
        return {"accepted_connections": total.get("accepted", 0),
                "requests_waiting": sum(s.get("waiting", 0) for s in self.fronts.values()),
                "max_requests_waiting": self.max_waiting,
                "all_workers_busy": total.get("saturations", 0),
                "slow_requests": total.get("slow", 0)}

    def reload_finished(self, outcome: str) -> None:
        kind = outcome.split(":")[0].strip().replace(" ", "_") or "unknown"
        self.reloads[kind] = self.reloads.get(kind, 0) + 1

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def render_openmetrics(self) -> bytes:
        """The same metrics in the OpenMetrics text format (php-fpm's status ?openmetrics)."""
        return openmetrics.generate_latest(self.registry)

    def collect(self) -> Iterator[Any]:
        status = self.status()
        total = self.total()
        requests = CounterMetricFamily("askr_http_requests", "HTTP responses sent, by status class",
                                       labels=["code"])
        for name, value in zip(STATUS_CLASSES, total["by_class"], strict=True):
            requests.add_metric([name], value)
        yield requests
        cumulative, buckets = 0, []
        for bound, n in zip([*DURATION_BUCKETS, float("inf")], total["buckets"], strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily("askr_http_request_duration_seconds",
                                    "Time from a request's head to the end of its response",
                                    buckets=buckets, sum_value=total["sum"])
        yield from self._collect_request_counters()
        yield CounterMetricFamily("askr_requests_retried", "Requests whose PHP worker crashed before "
                                  "answering, sent once more to another worker ([server] retry_crashed)",
                                  value=total.get("retried", 0))
        yield CounterMetricFamily("askr_requests_retry_failed", "Retried requests whose second worker "
                                  "crashed too (answered 502)", value=total.get("retry_failed", 0))
        workers = GaugeMetricFamily("askr_php_workers", "PHP worker processes, by state", labels=["state"])
        states = {"starting": 0, "idle": 0, "busy": 0, "retiring": 0}
        for w in status["workers"]:
            state = "busy" if w["busy"] else ("idle" if w["state"] == "ready" else w["state"])
            states[state] = states.get(state, 0) + 1
        for state, n in states.items():
            workers.add_metric([state], n)
        yield workers
        yield CounterMetricFamily("askr_php_worker_restarts", "PHP workers started again after exiting "
                                  "(any reason but recycling and reloads)", value=status["restarts"])
        recycled = CounterMetricFamily("askr_php_workers_recycled", "Healthy PHP workers replaced, by the "
                                       "limit they reached", labels=["reason"])
        for reason, n in status["recycled"].items():
            recycled.add_metric([reason], n)
        yield recycled
        yield CounterMetricFamily("askr_php_slowlogged_requests", "PHP requests still running after "
                                  "[worker] slowlog_timeout (their backtrace was logged)",
                                  value=status["slowlogged_requests"])
        yield CounterMetricFamily("askr_sandbox_denied_syscalls", "Syscalls the sandbox's seccomp filter "
                                  "denied PHP workers (they failed with EPERM; [sandbox])",
                                  value=status["sandbox"]["denied_syscalls"])
        yield CounterMetricFamily("askr_php_worker_crashes", "PHP workers that died unexpectedly",
                                  value=self.worker_crashes)
        yield GaugeMetricFamily("askr_php_generation", "The PHP generation new workers run",
                                value=status["generation"])
        reloads = CounterMetricFamily("askr_reloads", "Finished reloads, by outcome", labels=["outcome"])
        known = ("complete", "rolled_back", "failed", "canary_unhealthy")
        for outcome in dict.fromkeys((*known, *self.reloads)):
            reloads.add_metric([outcome], self.reloads.get(outcome, 0))
        yield reloads
        canary = CounterMetricFamily("askr_canaries", "Canary verdicts", labels=["verdict"])
        for verdict, n in self.canaries.items():
            canary.add_metric([verdict], n)
        yield canary
        per_slot = {q["name"]: q["restarts"] for q in status["queue_workers"]}  # a slot can list two
        yield CounterMetricFamily("askr_queue_worker_restarts", "Queue worker processes started again",
                                  value=sum(per_slot.values()))
        scheduler = status.get("scheduler") or {"runs": 0, "failed_runs": 0}
        runs = CounterMetricFamily("askr_scheduler_runs", "Scheduler runs, by result", labels=["result"])
        runs.add_metric(["ok"], scheduler["runs"] - scheduler["failed_runs"])
        runs.add_metric(["failed"], scheduler["failed_runs"])
        yield runs

    def _collect_request_counters(self) -> Iterator[Any]:
        """php-fpm's listen queue, max listen queue, max children reached, slow requests and
        accepted conn."""
        counters = self.request_counters()
        yield GaugeMetricFamily("askr_requests_waiting", "Requests waiting for a free PHP worker "
                                "(every worker busy)", value=counters["requests_waiting"])
        yield GaugeMetricFamily("askr_requests_waiting_max", "The most requests seen waiting for a PHP "
                                "worker at once since askr started", value=counters["max_requests_waiting"])
        yield CounterMetricFamily("askr_all_workers_busy", "Times every PHP worker became busy with "
                                  "requests waiting", value=counters["all_workers_busy"])
        yield CounterMetricFamily("askr_slow_requests", "PHP requests slower than [log] slow_request",
                                  value=counters["slow_requests"])
        yield CounterMetricFamily("askr_accepted_connections", "Client connections accepted",
                                  value=counters["accepted_connections"])
