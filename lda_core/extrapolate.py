"""The alpha-0 activation rate, estimated from the rates at amplified alphas.

A behaviour too rare to see at alpha 0 becomes common under amplification. Fitting
logit(rate) = a + b*alpha to the positive alphas and reading off sigmoid(a) gives the deployed
model's rate; alpha 0's own counts stay out of the fit so that they remain an independent check.
Firth's penalty (a Jeffreys prior) keeps the fit finite when a cell has 0% or 100% hits, and the
interval comes from the profile penalised likelihood (Heinze & Schemper 2002), which, unlike a Wald
interval, is not fooled by the strong asymmetry of a rate near 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MODEL = "logit(rate) = a + b*alpha, Firth-penalised binomial fit on alphas > 0; 95% profile-likelihood interval"
CHI2_1DF_95 = 3.841459
# Newton stops when no parameter would move by more than STEP_TOLERANCE (log-odds), or the step would
# gain less than GAIN_TOLERANCE in log-likelihood: where the information is tiny, a step can stay large
# in log-odds while its gain is lost to rounding, and it no longer matters to any deviance we compare.
STEP_TOLERANCE = 1e-9
GAIN_TOLERANCE = 1e-12
BOUND_TOLERANCE = 1e-5  # bisection stops when an interval end is pinned this closely (log-odds)
MAX_REACH = 50.0  # an interval end further than this from the estimate (log-odds) is reported as 0 or 1
ROUNDING_SLACK = 1e-13  # relative: a step this close to the optimum can only lose to rounding
MAX_ITERATIONS = 100
MAX_HALVINGS = 40

Cell = tuple[float, float, float]  # (alpha, n, activated), one per distinct positive alpha


def sigmoid(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)


def _softplus(log_odds: float) -> float:
    """log(1 + exp(log_odds)) = -log(1 - sigmoid(log_odds)), exact in both tails."""
    return max(log_odds, 0.0) + math.log1p(math.exp(-abs(log_odds)))


@dataclass(frozen=True)
class Alpha0Estimate:
    rate: float
    ci95: tuple[float, float]
    intercept: float
    slope: float
    alphas: tuple[float, ...]
    model: str = MODEL

    def curve(self, alphas: Iterable[float]) -> list[float]:
        """The fitted rate at each alpha, to draw the fitted curve over the measured points."""
        return [sigmoid(self.intercept + self.slope * alpha) for alpha in alphas]


@dataclass(frozen=True)
class _Point:
    """The penalised log-likelihood at (a, b), its gradient, and the Fisher information.

    The information is kept as exp(log_scale) * [[info_aa, info_ab], [info_ab, info_bb]] with
    determinant exp(2*log_scale) * det, so that rates far in the tails neither underflow nor cancel.
    """

    a: float
    b: float
    penalised: float
    score_a: float
    score_b: float
    info_aa: float
    info_ab: float
    info_bb: float
    det: float
    log_scale: float

    def newton_step(self, free_intercept: bool) -> tuple[float, float]:
        """Fisher scoring: the step that solves information * step = score (slope alone if a is held)."""
        scale = math.exp(-self.log_scale)
        if not free_intercept:
            return 0.0, scale * self.score_b / self.info_bb
        step_a = (self.info_bb * self.score_a - self.info_ab * self.score_b) / self.det
        step_b = (self.info_aa * self.score_b - self.info_ab * self.score_a) / self.det
        return scale * step_a, scale * step_b

    def variance_of_intercept(self) -> float:
        return math.exp(-self.log_scale) * self.info_bb / self.det


def _evaluate(a: float, b: float, cells: Sequence[Cell]) -> _Point | None:
    """None where the information is singular to working precision (far outside any sensible fit)."""
    etas = [a + b * alpha for alpha, _, _ in cells]
    # log(n * rate * (1 - rate)) = log n - softplus(eta) - softplus(-eta)
    log_weights = [math.log(n) - _softplus(eta) - _softplus(-eta) for eta, (_, n, _) in zip(etas, cells, strict=True)]
    log_scale = max(log_weights)
    weights = [math.exp(log_weight - log_scale) for log_weight in log_weights]
    # Spread of cell i: sum_j w_j (alpha_j - alpha_i)^2; det I = sum over pairs w_i w_j (alpha_i - alpha_j)^2
    # (scaled). Written as sums of positive terms, neither cancels.
    spreads = [
        sum(w * (alpha - alpha_i) ** 2 for w, (alpha, _, _) in zip(weights, cells, strict=True))
        for alpha_i, _, _ in cells
    ]
    det = 0.5 * sum(w * spread for w, spread in zip(weights, spreads, strict=True))
    if det <= 0.0:
        return None
    loglik, score_a, score_b = 0.0, 0.0, 0.0
    for eta, w, spread, (alpha, n, activated) in zip(etas, weights, spreads, cells, strict=True):
        # Hits and misses apart, so that a cell of a million hits at a rate near 1 does not cancel.
        rate, misses = sigmoid(eta), n - activated
        loglik -= activated * _softplus(-eta) + misses * _softplus(eta)
        leverage = w * spread / det
        residual = activated * (1.0 - rate) - misses * rate + leverage * (0.5 - rate)  # Firth's modified score
        score_a += residual
        score_b += residual * alpha
    info_aa = sum(weights)
    info_ab = sum(w * alpha for w, (alpha, _, _) in zip(weights, cells, strict=True))
    info_bb = sum(w * alpha * alpha for w, (alpha, _, _) in zip(weights, cells, strict=True))
    penalised = loglik + 0.5 * (2.0 * log_scale + math.log(det))
    return _Point(a, b, penalised, score_a, score_b, info_aa, info_ab, info_bb, det, log_scale)


def _maximise(cells: Sequence[Cell], a: float, b: float, free_intercept: bool) -> _Point:
    """Fisher scoring on the penalised likelihood, halving any step that would lower it.

    With free_intercept False the intercept stays at a: the profile likelihood at a.
    """
    point = _evaluate(a, b, cells)
    if point is None:
        raise ArithmeticError(f"singular information at a={a}, b={b}")
    for _ in range(MAX_ITERATIONS):
        step_a, step_b = point.newton_step(free_intercept)
        gain = 0.5 * (step_a * point.score_a + step_b * point.score_b)  # quadratic model of the rise
        if max(abs(step_a), abs(step_b)) < STEP_TOLERANCE or gain < GAIN_TOLERANCE:
            break
        for _ in range(MAX_HALVINGS):
            candidate = _evaluate(point.a + step_a, point.b + step_b, cells)
            if candidate is not None and candidate.penalised >= point.penalised - ROUNDING_SLACK * abs(point.penalised):
                break
            step_a, step_b = step_a / 2.0, step_b / 2.0
        else:
            break  # no step uphill left: converged as far as floating point allows
        point = candidate
    return point


def _starting_point(cells: Sequence[Cell]) -> tuple[float, float]:
    """Weighted least squares on empirical logits, (hits + 1/2) / (n + 1) keeping 0% and 100% finite."""
    sums = [0.0] * 5  # sum of w, w*alpha, w*alpha^2, w*logit, w*alpha*logit
    for alpha, n, activated in cells:
        rate = (activated + 0.5) / (n + 1.0)
        weight, log_odds = n * rate * (1.0 - rate), math.log(rate / (1.0 - rate))
        for index, term in enumerate((1.0, alpha, alpha * alpha, log_odds, alpha * log_odds)):
            sums[index] += weight * term
    total, by_alpha, by_alpha_squared, by_logit, by_both = sums
    slope = (total * by_both - by_alpha * by_logit) / (total * by_alpha_squared - by_alpha * by_alpha)
    return (by_logit - slope * by_alpha) / total, slope


def _profile_bound(cells: Sequence[Cell], fit: _Point, direction: int) -> float:
    """The intercept where the profile penalised deviance reaches the chi-square cut, on one side.

    Steps out from the estimate in doubling strides until outside, then bisects. The slope for each
    trial intercept starts from the fit's regression of b on a, so the inner fits take few steps.
    """
    slope_per_intercept = -fit.info_ab / fit.info_bb

    def excess(a: float, inside_a: float, inside_b: float) -> tuple[float, float]:
        point = _maximise(cells, a, inside_b + slope_per_intercept * (a - inside_a), free_intercept=False)
        return 2.0 * (fit.penalised - point.penalised) - CHI2_1DF_95, point.b

    inside_a, inside_b = fit.a, fit.b
    stride = 2.0 * math.sqrt(fit.variance_of_intercept())
    while True:
        if stride > MAX_REACH:
            return direction * math.inf
        outside_a = fit.a + direction * stride
        over, b = excess(outside_a, inside_a, inside_b)
        if over > 0.0:
            break
        inside_a, inside_b, stride = outside_a, b, stride * 2.0
    while abs(outside_a - inside_a) > BOUND_TOLERANCE:
        middle = 0.5 * (inside_a + outside_a)
        over, b = excess(middle, inside_a, inside_b)
        if over > 0.0:
            outside_a = middle
        else:
            inside_a, inside_b = middle, b
    return 0.5 * (inside_a + outside_a)


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

    Cells at alpha <= 0 are ignored on purpose: compare alpha 0's own counts against the estimate.
    """
    positive = _positive_cells(cells)
    fit = _maximise(positive, *_starting_point(positive), free_intercept=True)
    low, high = (_profile_bound(positive, fit, direction) for direction in (-1, 1))
    return Alpha0Estimate(
        rate=sigmoid(fit.a),
        ci95=(sigmoid(low), sigmoid(high)),
        intercept=fit.a,
        slope=fit.b,
        alphas=tuple(alpha for alpha, _, _ in positive),
    )
