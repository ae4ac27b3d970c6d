"""askr/readiness.py: the readiness verdict, liveness, and when the balancer has gone quiet."""

from __future__ import annotations

import itertools

import pytest

from askr import readiness
from askr.readiness import FrontActivity, decide, traffic


@pytest.mark.parametrize(("stopping", "draining", "workers_ready", "ever_ready"),
                         list(itertools.product([False, True], [False, True], [0, 2], [False, True])))
def test_every_combination_has_one_documented_answer(stopping, draining, workers_ready, ever_ready):
    verdict = decide(stopping=stopping, draining=draining, workers_ready=workers_ready, ever_ready=ever_ready)
    if stopping:
        expected = "stopping"  # leaving outranks everything
    elif draining:
        expected = "draining"
    elif workers_ready:
        expected = "ready"
    else:
        expected = "no ready workers" if ever_ready else "booting"
    assert verdict.state == expected
    assert verdict.ready == (expected == "ready")
    if verdict.ready:
        assert verdict.document() == {"status": "ready"}
    else:
        assert verdict.document() == {"status": "not ready", "reason": expected}


def test_liveness_needs_a_front():
    assert readiness.liveness(1) == (True, {"status": "live"})
    ok, body = readiness.liveness(0)
    assert not ok and body["status"] == "down" and "front" in body["reason"]


def test_quiet_once_every_front_reported_a_whole_quiet_window():
    # front 0's latest request came at t=100 (reported at 103, idle 3 s); front 1 has had none
    fronts = [FrontActivity(103.0, 3.0, 0), FrontActivity(103.5, None, 0)]
    assert traffic(fronts, 104.0, 5.0, since=0.0) == {"in_flight": 0, "idle_seconds": 4.0, "quiet": False}
    fronts = [FrontActivity(105.0, 5.0, 0), FrontActivity(105.5, None, 0)]
    assert traffic(fronts, 105.6, 5.0, since=0.0)["quiet"] is True


def test_a_stale_report_is_not_taken_for_silence():
    # front 1 saw a request at 104.8 and reported it; front 0 reported at 105.0 with 5 s idle of its
    # own, but the host's latest request is front 1's: not quiet until 109.8
    fronts = [FrontActivity(105.0, 5.0, 0), FrontActivity(105.0, 0.2, 0)]
    assert traffic(fronts, 106.0, 5.0, since=0.0)["quiet"] is False
    fronts = [FrontActivity(110.0, 10.0, 0), FrontActivity(109.9, 5.1, 0)]
    assert traffic(fronts, 110.0, 5.0, since=0.0)["quiet"] is True
    # one front's report is older than the window's end: it has not confirmed the whole window
    fronts = [FrontActivity(109.0, 9.0, 0), FrontActivity(110.0, 5.2, 0)]
    assert traffic(fronts, 110.0, 5.0, since=0.0)["quiet"] is False


def test_in_flight_or_an_unreported_front_is_never_quiet():
    long_idle = FrontActivity(1000.0, 900.0, 0)
    assert traffic([long_idle, FrontActivity(1000.0, 900.0, 1)], 1000.0, 5.0, since=0.0) == {
        "in_flight": 1, "idle_seconds": 900.0, "quiet": False}
    assert traffic([long_idle, None], 1000.0, 5.0, since=0.0)["quiet"] is False
    assert traffic([], 1000.0, 5.0, since=0.0)["quiet"] is False


def test_no_request_ever_counts_from_the_start():
    fronts = [FrontActivity(12.0, None, 0)]
    assert traffic(fronts, 12.0, 5.0, since=10.0)["quiet"] is False  # up for 2 s only
    assert traffic([FrontActivity(15.0, None, 0)], 15.0, 5.0, since=10.0) == {
        "in_flight": 0, "idle_seconds": 5.0, "quiet": True}
