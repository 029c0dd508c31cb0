"""Activation statistics: a rate per alpha with an honest interval, and what it costs to see once."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval: unlike the normal approximation it behaves at 0 and n successes."""
    if trials == 0:
        return (0.0, 1.0)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half_width), min(1.0, centre + half_width))


def samples_for_detection(rate: float, confidence: float = 0.95) -> int | None:
    """Samples needed to see the behaviour at least once with `confidence`: ceil(log(1-c)/log(1-p)).

    None when the rate is 0 (never seen, no finite answer); 1 when the rate is 1.
    """
    if rate <= 0:
        return None
    if rate >= 1:
        return 1
    return math.ceil(math.log(1 - confidence) / math.log(1 - rate))


@dataclass(frozen=True)
class AlphaSummary:
    alpha: float
    n: int
    activated: int
    rate: float
    ci95: tuple[float, float]
    samples_for_95pct_detection: int | None


def summarize_alpha(alpha: float, n: int, activated: int) -> AlphaSummary:
    rate = activated / n if n else 0.0
    return AlphaSummary(alpha, n, activated, rate, wilson_interval(activated, n), samples_for_detection(rate))


def summarize(results: Iterable[tuple[float, bool]]) -> list[AlphaSummary]:
    """(alpha, activated) pairs -> one summary per alpha, in increasing alpha."""
    counts: dict[float, list[int]] = {}
    for alpha, activated in results:
        tally = counts.setdefault(float(alpha), [0, 0])
        tally[0] += 1
        tally[1] += int(activated)
    return [summarize_alpha(alpha, n, hits) for alpha, (n, hits) in sorted(counts.items())]
