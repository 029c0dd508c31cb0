"""How often the alpha-0 interval holds the true rate: simulated experiments over known curves.

Each scenario is a true rate curve over alpha; an experiment draws binomial counts at the
scenario's positive alphas and fits them with `estimate_alpha0`. Where the true logit is a
polynomial the fit can follow (linear always, quadratic with three or more alphas) the interval
should hold the true alpha-0 rate about 95% of the time; the misspecified scenarios (a rate that
levels off below 1, a logit whose slope dies away faster than a quadratic bends) show how far that
promise falls when it is not.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

from lda_core.extrapolate import estimate_alpha0
from lda_core.firth_fit import sigmoid


@dataclass(frozen=True)
class Scenario:
    """True rate(alpha) = ceiling * sigmoid(intercept + slope*g(alpha) + curvature*alpha^2).

    g(alpha) is alpha, or (1 - exp(-slope_decay*alpha)) / slope_decay where the slope dies away.
    """

    name: str
    intercept: float
    slope: float
    alphas: tuple[float, ...]
    n_per_alpha: tuple[int, ...]
    curvature: float = 0.0
    slope_decay: float = 0.0
    ceiling: float = 1.0

    @property
    def model_holds(self) -> bool:
        """Whether the true logit is a polynomial that `estimate_alpha0` fits at these alphas."""
        fits_curvature = self.curvature == 0.0 or len(set(self.alphas)) >= 3
        return fits_curvature and self.slope_decay == 0.0 and self.ceiling == 1.0

    def true_rate(self, alpha: float) -> float:
        rise = alpha if self.slope_decay == 0.0 else -math.expm1(-self.slope_decay * alpha) / self.slope_decay
        return self.ceiling * sigmoid(self.intercept + self.slope * rise + self.curvature * alpha * alpha)


@dataclass(frozen=True)
class CoverageReport:
    scenario: str
    model_holds: bool
    experiments: int
    true_rate: float
    coverage: float  # share of experiments whose 95% interval holds the true alpha-0 rate
    median_width: float  # of the rate interval, high - low
    median_width_log_odds: float  # logit(high) - logit(low): comparable across rates
    unbounded: float  # share of intervals reaching rate 0 or 1 (infinite in log-odds)
    bias_log_odds: float  # mean estimated intercept minus the true logit of the alpha-0 rate


def log_odds(rate: float) -> float:
    """logit(rate); -inf and inf at 0 and 1, where an interval end may sit."""
    if rate <= 0.0 or rate >= 1.0:
        return -math.inf if rate <= 0.0 else math.inf
    return math.log(rate) - math.log1p(-rate)


def _through(
    name: str,
    rate0: float,
    alphas: tuple[float, ...],
    top_rate: float,
    n: int,
    bend: float = 0.0,
    slope_decay: float = 0.0,
    ceiling: float = 1.0,
) -> Scenario:
    """A scenario whose logit runs from rate0 at alpha 0 to top_rate at the largest alpha (before any ceiling).

    bend (the alpha^2 term) and slope_decay are in units of u = alpha / (largest alpha), so that one
    shape, such as the toy pair's, can be laid over alphas 0.25-1 and 1-8 alike.
    """
    scale = max(alphas)
    rise = 1.0 if slope_decay == 0.0 else -math.expm1(-slope_decay) / slope_decay
    slope = (log_odds(top_rate) - log_odds(rate0) - bend) / rise
    return Scenario(
        name,
        log_odds(rate0),
        slope / scale,
        alphas,
        (n,) * len(alphas),
        curvature=bend / scale**2,
        slope_decay=slope_decay / scale,
        ceiling=ceiling,
    )


SMALL_ALPHAS = (0.25, 0.5, 0.75, 1.0)
LARGE_ALPHAS = (1.0, 2.0, 4.0)
WIDE_ALPHAS = (1.0, 2.0, 4.0, 8.0)
# The toy pair's measured curve: 1.2% at alpha 0, 94% at alpha 1, and a logit bending down by 2.8.
TOY_RATE0, TOY_TOP_RATE, TOY_BEND = 0.012, 0.943, -2.8


def _family(label: str, alphas: tuple[float, ...], n: int) -> tuple[Scenario, ...]:
    """The same true curves laid over one set of alphas."""
    return (
        _through(f"linear p0=1e-3, {label}, n={n}", 1e-3, alphas, 0.3, n),
        _through(f"linear p0=1e-5, {label}, n={n}", 1e-5, alphas, 0.3, n),
        _through(f"toy concave p0=1.2e-2, {label}, n={n}", TOY_RATE0, alphas, TOY_TOP_RATE, n, bend=TOY_BEND),
        _through(f"concave p0=1e-4, {label}, n={n}", 1e-4, alphas, 0.3, n, bend=-3.0),
        _through(f"convex p0=1e-3, {label}, n={n}", 1e-3, alphas, 0.1, n, bend=3.0),
        # Misspecified: the logit's slope halves over the range or every fifth of it, or the rate levels off.
        _through(f"slope halves, p0=1e-3, {label}, n={n}", 1e-3, alphas, 0.5, n, slope_decay=math.log(2)),
        _through(f"slope halves x5, p0=1e-3, {label}, n={n}", 1e-3, alphas, 0.5, n, slope_decay=5 * math.log(2)),
        _through(f"capped at 0.4, p0=4e-4, {label}, n={n}", 1e-3, alphas, 0.5, n, ceiling=0.4),
        _through(f"capped at 0.2, p0=2e-4, {label}, n={n}", 1e-3, alphas, 0.9, n, ceiling=0.2),
    )


SCENARIOS = (
    *_family("alphas .25-1", SMALL_ALPHAS, 1000),
    *_family("alphas 1,2,4", LARGE_ALPHAS, 1000),
    *_family("alphas 1,2,4,8", WIDE_ALPHAS, 1000),
    _through("linear p0=1e-3, alphas 1,4 (line only), n=1000", 1e-3, (1.0, 4.0), 0.3, 1000),
    Scenario("linear p0=1e-3, alphas .25-1, n=2000..256", log_odds(1e-3), 6.9, SMALL_ALPHAS, (2000, 1000, 500, 256)),
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
        unbounded=sum(math.isinf(width) for width in widths_log_odds) / experiments,
        bias_log_odds=statistics.fmean(errors),
    )
