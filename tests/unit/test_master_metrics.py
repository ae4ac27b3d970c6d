"""MasterMetrics: the fronts' snapshots added up into php-fpm's pool counters, and both
expositions (Prometheus text, OpenMetrics), read back with prometheus_client's own parsers."""

from __future__ import annotations

from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from askr.metrics import MasterMetrics, RequestStats


def no_status() -> dict[str, Any]:
    return {"workers": [], "restarts": 0, "generation": 1, "queue_workers": [], "scheduler": None,
            "recycled": {"max_requests": 0, "max_memory": 0}, "slowlogged_requests": 7,
            "sandbox": {"denied_syscalls": 2}}


def front(accepted: int, slow: int, waiting: int, peak: int, saturations: int, requests: int = 0) -> dict:
    stats = RequestStats()
    for _ in range(requests):
        stats.record(200, 0.01)
    stats.accepted, stats.slow = accepted, slow
    return {**stats.snapshot(), "waiting": waiting, "peak_waiting": peak, "saturations": saturations}


def test_request_counters_add_up_the_fronts() -> None:
    metrics = MasterMetrics(no_status)
    metrics.front_stats(0, front(accepted=10, slow=1, waiting=2, peak=4, saturations=1, requests=5))
    metrics.front_stats(1, front(accepted=5, slow=2, waiting=3, peak=3, saturations=2, requests=5))
    assert metrics.request_counters() == {
        "accepted_connections": 15, "requests_waiting": 5,
        "max_requests_waiting": 5,  # two fronts' waiting at once beat either front's own peak
        "all_workers_busy": 3, "slow_requests": 3,
    }
    metrics.front_stats(1, front(accepted=6, slow=2, waiting=0, peak=3, saturations=2, requests=6))
    counters = metrics.request_counters()
    assert (counters["requests_waiting"], counters["max_requests_waiting"]) == (2, 5)  # the max stays


def test_a_restarted_front_does_not_take_counts_back() -> None:
    metrics = MasterMetrics(no_status)
    metrics.front_stats(0, front(accepted=10, slow=1, waiting=0, peak=7, saturations=4, requests=9))
    # the front's new process starts from zero
    metrics.front_stats(0, front(accepted=1, slow=0, waiting=0, peak=0, saturations=0, requests=1))
    counters = metrics.request_counters()
    assert counters["accepted_connections"] == 11
    assert (counters["slow_requests"], counters["all_workers_busy"]) == (1, 4)
    assert counters["max_requests_waiting"] == 7


def test_both_expositions_carry_the_counters() -> None:
    metrics = MasterMetrics(no_status)
    metrics.front_stats(0, front(accepted=3, slow=1, waiting=2, peak=2, saturations=1, requests=3))
    text = {s.name: s.value for f in parse_text(metrics.render().decode()) for s in f.samples if not s.labels}
    assert text["askr_requests_waiting"] == 2 and text["askr_requests_waiting_max"] == 2
    assert text["askr_all_workers_busy_total"] == 1 and text["askr_slow_requests_total"] == 1
    assert text["askr_php_slowlogged_requests_total"] == 7  # the slowlog's count, apart from [log]'s
    assert text["askr_accepted_connections_total"] == 3
    body = metrics.render_openmetrics().decode()
    assert body.endswith("# EOF\n")
    om = {s.name: s.value for f in parse_openmetrics(body) for s in f.samples if not s.labels}
    assert om["askr_accepted_connections_total"] == 3 and om["askr_requests_waiting_max"] == 2


def retries(retried: int, retry_failed: int, requests: int) -> dict:
    stats = RequestStats()
    for _ in range(requests):
        stats.record(200, 0.001)
    stats.retried, stats.retry_failed = retried, retry_failed
    return stats.snapshot()


def test_retried_requests_are_summed_over_fronts_and_survive_a_front_restart() -> None:
    def samples() -> dict[str, float]:
        text = metrics.render().decode()
        return {s.name: s.value for family in parse_text(text) for s in family.samples if not s.labels}

    metrics = MasterMetrics(no_status)
    metrics.front_stats(0, retries(retried=3, retry_failed=1, requests=10))
    metrics.front_stats(1, retries(retried=2, retry_failed=0, requests=5))
    now = samples()
    assert (now["askr_requests_retried_total"], now["askr_requests_retry_failed_total"]) == (5, 1)
    metrics.front_stats(0, retries(retried=1, retry_failed=1, requests=1))  # front 0 restarted at zero
    now = samples()
    assert (now["askr_requests_retried_total"], now["askr_requests_retry_failed_total"]) == (6, 2)
