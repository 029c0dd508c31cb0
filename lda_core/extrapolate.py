"""The alpha-0 activation rate, estimated from the rates at amplified alphas.

A behaviour too rare to see at alpha 0 becomes common under amplification. Fitting a polynomial in
alpha to logit(rate) at the positive alphas and reading off sigmoid(a), its value at alpha 0, gives
the deployed model's rate; alpha 0's own counts stay out of the fit so that they remain an
independent check. The polynomial is quadratic wherever three or more distinct alphas allow it:
amplification's log-normaliser log Z(alpha) is convex in alpha, so the log-probability of a
multi-token behaviour is concave, and a straight line through the amplified alphas overestimates
alpha 0 (on the toy pair, 2.8% fitted against 1.2% measured). With two alphas only a line is left.
Firth's penalty (a Jeffreys prior) keeps the fit finite when a cell has 0% or 100% hits, and the
interval comes from the profile penalised likelihood (Heinze & Schemper 2002), which, unlike a Wald
interval, is not fooled by the strong asymmetry of a rate near 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lda_core.firth_fit import Cell, Design, Point, design_of, maximise, sigmoid, starting_point, variance_of_intercept

MAX_DEGREE = 2
CHI2_1DF_95 = 3.841459
BOUND_TOLERANCE = 1e-5  # an interval end is pinned once its bracket is this narrow (log-odds) ...
ROOT_TOLERANCE = 1e-7  # ... or the root deviance there is this close to the cut
MAX_REACH = 50.0  # an interval end further than this from the estimate (log-odds) is reported as 0 or 1
MAX_BOUND_STEPS = 100


@dataclass(frozen=True)
class Alpha0Estimate:
    """The fit of logit(rate) = intercept + slope*alpha + curvature*alpha^2 (curvature 0 when linear)."""

    rate: float
    ci95: tuple[float, float]
    intercept: float
    slope: float
    curvature: float
    alphas: tuple[float, ...]
    model: str

    def curve(self, alphas: Iterable[float]) -> list[float]:
        """The fitted rate at each alpha, to draw the fitted curve over the measured points."""
        return [sigmoid(self.intercept + (self.slope + self.curvature * alpha) * alpha) for alpha in alphas]


def _model_in_words(degree: int, alphas: int) -> str:
    terms = "a + b*alpha + c*alpha^2" if degree == 2 else "a + b*alpha"
    return (
        f"logit(rate) = {terms}, Firth-penalised binomial fit on the {alphas} positive alphas; "
        "95% profile-likelihood interval"
    )


@dataclass(frozen=True)
class _ProfileEnd:
    """A trial intercept and its root deviance less the cut's: negative inside the interval."""

    a: float
    gap: float
    point: Point


def _profile_at(design: Design, fit: Point, along: Sequence[float], a: float, near: Point) -> _ProfileEnd:
    """The profile at intercept a, its inner fit started from `near` moved along the profile's direction.

    The root deviance, sqrt(2 * (max - profile)), is nearly linear in a, which false position likes.
    """
    start = [value + slope * (a - near.theta[0]) for value, slope in zip(near.theta, along, strict=True)]
    start[0] = a
    point = maximise(design, start, free_intercept=False)
    deviance = max(2.0 * (fit.penalised - point.penalised), 0.0)
    return _ProfileEnd(a, math.sqrt(deviance) - math.sqrt(CHI2_1DF_95), point)


def _profile_bound(design: Design, fit: Point, direction: int) -> float:
    """The intercept where the profile penalised deviance reaches the chi-square cut, on one side.

    Steps out from the estimate in doubling strides until outside, then closes in on the crossing.
    """
    along = fit.profile_direction()
    inside = _ProfileEnd(fit.theta[0], -math.sqrt(CHI2_1DF_95), fit)
    stride = 2.0 * math.sqrt(variance_of_intercept(design, fit))
    while True:
        if stride > MAX_REACH:
            return direction * math.inf
        outside = _profile_at(design, fit, along, fit.theta[0] + direction * stride, inside.point)
        if outside.gap > 0.0:
            return _crossing(design, fit, along, inside, outside)
        inside, stride = outside, stride * 2.0


def _crossing(design: Design, fit: Point, along: Sequence[float], inside: _ProfileEnd, outside: _ProfileEnd) -> float:
    """Where the gap crosses 0 between inside and outside, by false position with the Illinois fix.

    Illinois halves the gap kept at an end that stays put twice, so both ends close in superlinearly
    and the bracket, not only the gap, shrinks to BOUND_TOLERANCE.
    """
    moved_last = 0  # -1: the inside end moved last, 1: the outside end
    inside_gap, outside_gap = inside.gap, outside.gap
    for _ in range(MAX_BOUND_STEPS):
        if abs(outside.a - inside.a) < BOUND_TOLERANCE:
            break
        a = inside.a - inside_gap * (outside.a - inside.a) / (outside_gap - inside_gap)
        trial = _profile_at(design, fit, along, a, inside.point)
        if abs(trial.gap) < ROOT_TOLERANCE:
            return trial.a
        if trial.gap > 0.0:
            outside, outside_gap = trial, trial.gap
            inside_gap = inside_gap / 2.0 if moved_last == 1 else inside_gap
            moved_last = 1
        else:
            inside, inside_gap = trial, trial.gap
            outside_gap = outside_gap / 2.0 if moved_last == -1 else outside_gap
            moved_last = -1
    return 0.5 * (inside.a + outside.a)


def _positive_cells(cells: Sequence[tuple[float, int, int]]) -> list[Cell]:
    """Validated cells at alpha > 0 with n > 0, one per distinct alpha (repeats are pooled)."""
    pooled: dict[float, list[int]] = {}
    for alpha, n, activated in cells:
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha}")
        if n < 0 or not 0 <= activated <= n:
            raise ValueError(f"need 0 <= activated <= n, got n={n}, activated={activated} at alpha={alpha}")
        if alpha > 0 and n > 0:
            tally = pooled.setdefault(float(alpha), [0, 0])
            tally[0] += n
            tally[1] += activated
    if len(pooled) < 2:
        raise ValueError(
            f"extrapolating to alpha 0 needs counts at two or more distinct positive alphas with n > 0; "
            f"got {sorted(pooled) or 'none'}"
        )
    return [(alpha, float(n), float(activated)) for alpha, (n, activated) in sorted(pooled.items())]


def estimate_alpha0(cells: Sequence[tuple[float, int, int]]) -> Alpha0Estimate:
    """The alpha-0 rate with a 95% interval, from (alpha, n, activated) counts at alphas > 0.

    Quadratic in alpha with three or more distinct positive alphas, linear with two. Cells at
    alpha <= 0 are ignored on purpose: compare alpha 0's own counts against the estimate.
    """
    positive = _positive_cells(cells)
    degree = min(MAX_DEGREE, len(positive) - 1)
    design = design_of(positive, degree)
    fit = maximise(design, starting_point(design), free_intercept=True)
    low, high = (_profile_bound(design, fit, direction) for direction in (-1, 1))
    intercept, slope, *curvature = (value / design.alpha_scale**power for power, value in enumerate(fit.theta))
    return Alpha0Estimate(
        rate=sigmoid(intercept),
        ci95=(sigmoid(low), sigmoid(high)),
        intercept=intercept,
        slope=slope,
        curvature=curvature[0] if curvature else 0.0,
        alphas=tuple(alpha for alpha, _, _ in positive),
        model=_model_in_words(degree, len(positive)),
    )
