"""askr/master/history.py: percentiles from a histogram, the fronts' reports turned into
per-second samples, and the bounded ring they are kept in."""

from __future__ import annotations

import random

import pytest

from askr.master.history import History, percentile
from askr.metrics import FINE_BUCKETS, RequestStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_interpolates_within_the_bucket():
    bounds = (1.0, 2.0, 4.0)
    assert percentile([0, 0, 0, 0], 0.5, bounds) is None
    assert percentile([10, 0, 0, 0], 0.5, bounds) == pytest.approx(0.5)  # from 0 up to 1
    assert percentile([0, 10, 0, 0], 0.5, bounds) == pytest.approx(1.5)
    assert percentile([5, 5, 0, 0], 0.5, bounds) == pytest.approx(1.0)
    assert percentile([5, 5, 0, 0], 0.75, bounds) == pytest.approx(1.5)
    assert percentile([98, 0, 2, 0], 0.99, bounds) == pytest.approx(3.0)
    assert percentile([0, 0, 0, 7], 0.5, bounds) == 4.0  # above the last bound: the last bound


def test_percentile_of_recorded_durations_is_close_to_the_exact_one():
    """The fine buckets are at most a third wide, so an interpolated quantile of real
    durations lands within that of the exact one."""
    rng = random.Random(7)
    durations = sorted(rng.lognormvariate(-5, 1.2) for _ in range(5000))
    stats = RequestStats()
    for seconds in durations:
        stats.record(200, seconds)
    for q in (0.5, 0.9, 0.99):
        exact = durations[int(q * len(durations)) - 1]
        assert percentile(stats.fine_counts, q) == pytest.approx(exact, rel=0.34)


def report(stats: RequestStats, **extra: int) -> dict:
    return {**stats.snapshot(), "waiting": 0, "in_flight": 0, **extra}


def test_samples_are_rates_over_each_fronts_interval():
    clock = Clock()
    history = History(clock=clock, wall=clock)
    fronts = [RequestStats(), RequestStats()]
    for i, stats in enumerate(fronts):
        history.front_report(i, report(stats))
    assert history.sample(0, 2)["requests_per_s"] == 0  # nothing counted yet
    clock.now += 1.0
    for _ in range(30):
        fronts[0].record(200, 0.003)
    for _ in range(10):
        fronts[1].record(503, 0.2)
    history.front_report(0, report(fronts[0], waiting=2, in_flight=3))
    clock.now += 0.5  # the other front reports half a second later: its interval is 1.5 s
    history.front_report(1, report(fronts[1], in_flight=1))
    point = history.sample(busy_workers=2, workers=4)
    assert point["requests_per_s"] == pytest.approx(30 / 1.0 + 10 / 1.5, abs=0.01)
    assert point["errors_5xx_per_s"] == pytest.approx(10 / 1.5, abs=0.01)
    assert 2.5 <= point["p50_ms"] <= 3.0  # 30 of the 40 took 3 ms
    assert 150 <= point["p99_ms"] <= 200
    assert (point["waiting"], point["in_flight"], point["busy_workers"], point["workers"]) == (2, 4, 2, 4)


def test_a_front_late_with_its_report_counts_with_its_previous_interval_until_stale():
    clock = Clock()
    history = History(clock=clock, wall=clock)
    stats = RequestStats()
    history.front_report(0, report(stats))
    assert history.sample(0, 1)["requests_per_s"] == 0
    clock.now += 1
    for _ in range(20):
        stats.record(200, 0.01)
    history.front_report(0, report(stats))
    assert history.sample(1, 1)["requests_per_s"] == 20
    clock.now += 1  # no report in this second (timer drift): the rate holds
    assert history.sample(1, 1)["requests_per_s"] == 20
    clock.now += 5  # gone: it no longer counts
    point = history.sample(0, 1)
    assert point["requests_per_s"] == 0 and point["p50_ms"] is None


def test_a_new_or_restarted_front_counts_from_zero_over_its_first_interval():
    clock = Clock()
    history = History(clock=clock, wall=clock)
    old = RequestStats()
    for _ in range(100):
        old.record(200, 0.01)
    history.front_report(0, report(old))  # its first report: all it counted in its first second
    assert history.sample(0, 1)["requests_per_s"] == 100
    clock.now += 1
    fresh = RequestStats()  # restarted, counting from zero again: no negative rate
    fresh.record(200, 0.01)
    history.front_report(0, report(fresh))
    assert history.sample(0, 1)["requests_per_s"] == 1
    clock.now += 1
    for _ in range(5):
        fresh.record(200, 0.01)
    history.front_report(0, report(fresh))
    assert history.sample(0, 1)["requests_per_s"] == 5


def test_the_ring_keeps_the_latest_samples_only_and_since_filters():
    clock = Clock()
    history = History(clock=clock, wall=clock, size=5)
    for _ in range(12):
        clock.now += 1
        history.sample(0, 1)
    doc = history.document()
    assert [s["t"] for s in doc["samples"]] == [1008, 1009, 1010, 1011, 1012]
    assert doc["keeps_seconds"] == 5
    assert [s["t"] for s in history.document(since=1010)["samples"]] == [1011, 1012]
    assert history.document(since=2000)["samples"] == []


def test_reloads_newest_first_with_the_one_in_progress_on_top():
    history = History()
    for n in range(15):
        history.reload_finished({"outcome": "complete", "generation": n + 2})
    doc = history.document(current_reload={"outcome": "in progress"})
    assert len(doc["reloads"]) == 11
    assert doc["reloads"][0]["outcome"] == "in progress"
    assert [r["generation"] for r in doc["reloads"][1:3]] == [16, 15]


def test_fine_buckets_cover_a_front_report_from_an_older_askr():
    """A front without fine_buckets (an older askr's, during an upgrade) is skipped, not fatal."""
    clock = Clock()
    history = History(clock=clock, wall=clock)
    old_style = {"by_class": [0] * 5, "buckets": [0] * 14, "count": 0, "sum": 0.0}
    history.front_report(0, old_style)
    clock.now += 1
    history.front_report(0, {**old_style, "count": 3})
    assert history.sample(0, 1)["requests_per_s"] == 0
    assert history.fronts == {}
    assert len(FINE_BUCKETS) + 1 == len(RequestStats().fine_counts)


def test_two_reports_between_samples_add_up():
    clock = Clock()
    history = History(clock=clock, wall=clock)
    stats = RequestStats()
    history.front_report(0, report(stats))
    history.sample(0, 1)
    for burst in (10, 30):  # timer drift: two reports land before the next sample
        clock.now += 1
        for _ in range(burst):
            stats.record(200, 0.001)
        history.front_report(0, report(stats))
    assert history.sample(0, 1)["requests_per_s"] == 20  # 40 requests over 2 s
