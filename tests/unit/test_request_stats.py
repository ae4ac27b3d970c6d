"""askr/metrics.py RequestStats: one fine histogram per front, summed into /metrics' buckets."""

from __future__ import annotations

import bisect
import itertools
import random

from askr.metrics import DURATION_BUCKETS, FINE_BUCKETS, RequestStats


def test_every_prometheus_bound_is_a_fine_bound():
    assert set(DURATION_BUCKETS) <= set(FINE_BUCKETS)
    assert list(FINE_BUCKETS) == sorted(FINE_BUCKETS) and FINE_BUCKETS[-1] == DURATION_BUCKETS[-1]
    widths = [b / a for a, b in itertools.pairwise(FINE_BUCKETS)]
    assert max(widths) <= 1.34  # so interpolated percentiles are within a third


def test_coarse_buckets_are_what_counting_in_them_directly_gives():
    rng = random.Random(3)
    stats = RequestStats()
    direct = [0] * (len(DURATION_BUCKETS) + 1)
    samples = [*DURATION_BUCKETS, 0.0, 1e-6, 61.0, 1e9] + [rng.lognormvariate(-4, 2.5) for _ in range(3000)]
    for seconds in samples:
        stats.record(200, seconds)
        direct[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
    snap = stats.snapshot()
    assert snap["buckets"] == direct
    assert sum(snap["fine_buckets"]) == snap["count"] == len(samples)
