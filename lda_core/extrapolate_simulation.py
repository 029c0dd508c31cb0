"""How often the alpha-0 interval holds the true rate: simulated experiments over known curves.

Each scenario is a true rate curve over alpha; an experiment draws binomial counts at the
scenario's positive alphas and fits them with `estimate_alpha0`. Where the curve is logit-linear
the interval should hold the true alpha-0 rate about 95% of the time; the misspecified scenarios
(a bending logit, a rate that saturates below 1) show how far that promise falls when it is not.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

from lda_core.extrapolate import estimate_alpha0, sigmoid


@dataclass(frozen=True)
class Scenario:
    """True rate(alpha) = ceiling * sigmoid(intercept + slope*alpha + curvature*alpha^2)."""

    name: str
    intercept: float
    slope: float
    alphas: tuple[float, ...]
    n_per_alpha: tuple[int, ...]
    curvature: float = 0.0
    ceiling: float = 1.0

    @property
    def model_holds(self) -> bool:
        return self.curvature == 0.0 and self.ceiling == 1.0

    def true_rate(self, alpha: float) -> float:
        return self.ceiling * sigmoid(self.intercept + self.slope * alpha + self.curvature * alpha * alpha)


@dataclass(frozen=True)
class CoverageReport:
    scenario: str
    model_holds: bool
    experiments: int
    true_rate: float
    coverage: float  # share of experiments whose 95% interval holds the true alpha-0 rate
    median_width: float  # of the rate interval, high - low
    median_width_log_odds: float  # logit(high) - logit(low): comparable across rates
    bias_log_odds: float  # mean estimated intercept minus the true logit of the alpha-0 rate


def log_odds(rate: float) -> float:
    """logit(rate); -inf and inf at 0 and 1, where an interval end may sit."""
    if rate <= 0.0 or rate >= 1.0:
        return -math.inf if rate <= 0.0 else math.inf
    return math.log(rate) - math.log1p(-rate)


def _through(name: str, rate0: float, alphas: tuple[float, ...], top_rate: float, n: int, **bend: float) -> Scenario:
    """A scenario whose logit-linear part runs from rate0 at alpha 0 to top_rate at the largest alpha."""
    slope = (log_odds(top_rate) - log_odds(rate0)) / max(alphas)
    return Scenario(name, log_odds(rate0), slope, alphas, (n,) * len(alphas), **bend)


SMALL_ALPHAS = (0.25, 0.5, 0.75, 1.0)
LARGE_ALPHAS = (1.0, 2.0, 4.0)
SCENARIOS = (
    _through("p0=1e-3, alphas .25-1, n=256", 1e-3, SMALL_ALPHAS, 0.3, 256),
    _through("p0=1e-4, alphas .25-1, n=256", 1e-4, SMALL_ALPHAS, 0.2, 256),
    _through("p0=1e-4, alphas .25-1, n=2000", 1e-4, SMALL_ALPHAS, 0.2, 2000),
    _through("p0=2e-2, alphas .25-1, n=1000", 2e-2, SMALL_ALPHAS, 0.6, 1000),
    _through("p0=1e-3, alphas 1,2,4, n=500", 1e-3, LARGE_ALPHAS, 0.3, 500),
    _through("p0=1e-5, alphas 1,2,4, n=2000", 1e-5, LARGE_ALPHAS, 0.3, 2000),
    Scenario("p0=1e-3, alphas .25-1, n=2000..256", log_odds(1e-3), 6.9, SMALL_ALPHAS, (2000, 1000, 500, 256)),
    # Misspecified: the logit bends (convex in alpha), or the rate levels off below 1.
    _through("logit + 1*alpha^2, alphas .25-1, n=1000", 1e-3, SMALL_ALPHAS, 0.1, 1000, curvature=1.0),
    _through("logit + 3*alpha^2, alphas .25-1, n=1000", 1e-3, SMALL_ALPHAS, 0.03, 1000, curvature=3.0),
    _through("rate capped at 0.4, alphas 1,2,4, n=1000", 1e-3, LARGE_ALPHAS, 0.5, 1000, ceiling=0.4),
    _through("rate capped at 0.2, alphas 1,2,4, n=1000", 1e-3, LARGE_ALPHAS, 0.9, 1000, ceiling=0.2),
)


def binomial_draw(rng: random.Random, n: int, rate: float) -> int:
    """Hits in n trials, by geometric jumps between hits: cost grows with n*min(rate, 1 - rate)."""
    if rate > 0.5:
        return n - binomial_draw(rng, n, 1.0 - rate)
    if rate <= 0.0:
        return 0
    log_miss = math.log1p(-rate)
    hits, trial = 0, 0
    while True:
        trial += int(math.log(1.0 - rng.random()) / log_miss) + 1
        if trial > n:
            return hits
        hits += 1


def simulate_coverage(scenario: Scenario, experiments: int, seed: int = 0) -> CoverageReport:
    """Coverage, median width and bias of `estimate_alpha0` over seeded simulated experiments."""
    rng = random.Random(f"{seed}:{scenario.name}")
    true_rate = scenario.true_rate(0.0)
    rates = [scenario.true_rate(alpha) for alpha in scenario.alphas]
    covered, widths, widths_log_odds, errors = 0, [], [], []
    for _ in range(experiments):
        cells = [
            (alpha, n, binomial_draw(rng, n, rate))
            for alpha, n, rate in zip(scenario.alphas, scenario.n_per_alpha, rates, strict=True)
        ]
        estimate = estimate_alpha0(cells)
        low, high = estimate.ci95
        covered += low <= true_rate <= high
        widths.append(high - low)
        widths_log_odds.append(log_odds(high) - log_odds(low))
        errors.append(estimate.intercept - log_odds(true_rate))
    return CoverageReport(
        scenario=scenario.name,
        model_holds=scenario.model_holds,
        experiments=experiments,
        true_rate=true_rate,
        coverage=covered / experiments,
        median_width=statistics.median(widths),
        median_width_log_odds=statistics.median(widths_log_odds),
        bias_log_odds=statistics.fmean(errors),
    )
