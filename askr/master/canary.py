"""The canary's verdict: is the new generation's first worker clearly worse than the old ones?

A canary reload rolls one worker, lets it take its share of traffic for canary_seconds, then
compares its 5xx rate with the old generation's over the same window (from the scoreboard's
per-worker counters). Pure functions of counts, so the rule is tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass

CANARY_MIN_REQUESTS = 3  # fewer answers than this in the window: too few to judge an error rate
CANARY_ERROR_MARGIN = 0.10  # the canary may answer 5xx this much more often than the old workers


@dataclass(frozen=True, slots=True)
class Counts:
    """Responses served and 5xx among them (a scoreboard slot's cumulative counters)."""

    served: int = 0
    errors: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.served + other.served, self.errors + other.errors)

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.served - other.served, self.errors - other.errors)


def window(start: dict[int, Counts], now: dict[int, Counts]) -> Counts:
    """What the workers in `start` served since then; a worker gone meanwhile (absent from
    `now`) counts for nothing."""
    return sum((now[k] - start[k] for k in start if k in now), Counts())


def verdict(canary: Counts, old: Counts) -> str:
    """"" when the canary is healthy, else why not."""
    old_rate = old.errors / old.served if old.served else 0.0
    worse = canary.served and canary.errors / canary.served > old_rate + CANARY_ERROR_MARGIN
    if canary.served >= CANARY_MIN_REQUESTS and worse:
        return (f"{canary.errors} of its {canary.served} responses were 5xx; the old generation's: "
                f"{old.errors} of {old.served}")
    return ""
