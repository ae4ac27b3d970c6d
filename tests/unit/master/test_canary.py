"""The canary's verdict as a pure function of the counts in its window (askr/master/canary.py)."""

from __future__ import annotations

from askr.master.canary import Counts, verdict, window


def test_too_few_answers_are_not_judged() -> None:
    assert verdict(Counts(2, 2), Counts(100, 0)) == ""


def test_a_5xx_rate_within_the_margin_of_the_old_generations_is_healthy() -> None:
    assert verdict(Counts(10, 2), Counts(100, 15)) == ""  # 20% against 15% + 10%
    assert verdict(Counts(10, 0), Counts(0, 0)) == ""


def test_a_clearly_worse_canary_is_unhealthy_and_says_why() -> None:
    assert verdict(Counts(10, 3), Counts(100, 15)) == ("3 of its 10 responses were 5xx; the old "
                                                       "generation's: 15 of 100")
    assert verdict(Counts(3, 1), Counts(0, 0)).startswith("1 of its 3")  # nothing to compare: 0%


def test_the_window_counts_only_workers_still_there() -> None:
    start = {1: Counts(10, 1), 2: Counts(5, 0)}
    now = {1: Counts(25, 3), 3: Counts(7, 7)}
    assert window(start, now) == Counts(15, 2)
