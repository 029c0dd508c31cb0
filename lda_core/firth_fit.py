"""A binomial regression of logit(rate) on a polynomial in alpha, with Firth's penalty: the fit
behind the alpha-0 estimate (lda_core.extrapolate), which profiles its intercept.

Firth's penalty (half the log-determinant of the Fisher information, a Jeffreys prior) keeps the
fit finite when a cell has 0% or 100% hits. Pure Python (`math`): the API process computes it, and
the fit has at most three parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Newton stops when no parameter would move by more than STEP_TOLERANCE (log-odds), or the step would
# gain less than GAIN_TOLERANCE in log-likelihood: where the information is tiny, a step can stay large
# in log-odds while its gain is lost to rounding, and it no longer matters to any deviance we compare.
STEP_TOLERANCE = 1e-9
GAIN_TOLERANCE = 1e-12
ROUNDING_SLACK = 1e-13  # relative: a step this close to the optimum can only lose to rounding
MAX_ITERATIONS = 100
MAX_HALVINGS = 40

Cell = tuple[float, float, float]  # (alpha, n, activated), one per distinct positive alpha
Fan = tuple[tuple[int, ...], int, tuple[float, ...]]  # leading cells, first later cell, squared minors


def sigmoid(log_odds: float) -> float:
    if log_odds >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds))
    odds = math.exp(log_odds)
    return odds / (1.0 + odds)


def _softplus(log_odds: float) -> float:
    """log(1 + exp(log_odds)) = -log(1 - sigmoid(log_odds)), exact in both tails."""
    return max(log_odds, 0.0) + math.log1p(math.exp(-abs(log_odds)))


@dataclass(frozen=True)
class Design:
    """The cells as the fit sees them, on t = alpha / (largest alpha).

    Rescaling keeps every power of t within [0, 1], so the information is as well conditioned at
    alphas 1-8 as at 0.25-1, while a stays the value at alpha 0, the one parameter we profile. The
    fans list every set of cells of the information's size with its squared minor: by Cauchy-Binet
    the information's determinant and every cell's leverage are then sums of positive terms, which
    do not cancel when the cells' weights span many orders of magnitude. The nuisance fans do the
    same for the information without a, whose determinant gives a's variance.
    """

    powers: tuple[tuple[float, ...], ...]  # [cell][power]: t^0 .. t^degree
    trials: tuple[float, ...]
    hits: tuple[float, ...]
    fans: tuple[Fan, ...]
    nuisance_fans: tuple[Fan, ...]
    alpha_scale: float


def _vandermonde(ts: Sequence[float]) -> float:
    """det of the rows (1, t, .., t^(len-1)) for these ts: the product of their differences."""
    return math.prod(ts[j] - ts[i] for i, j in itertools.combinations(range(len(ts)), 2))


def _fans(ts: Sequence[float], size: int, minor: Callable[[list[float]], float]) -> tuple[Fan, ...]:
    """Every set of `size` cells with its squared minor, grouped by all but its last cell.

    Grouping lets `_cauchy_binet` run over the last cell in one comprehension: the sets number
    m^3/6 for m alphas, and this keeps an estimate from 50 alphas near 0.1 s.
    """
    fans = []
    for leading in itertools.combinations(range(len(ts)), size - 1):
        first = leading[-1] + 1 if leading else 0
        minors = tuple(minor([ts[i] for i in (*leading, last)]) ** 2 for last in range(first, len(ts)))
        fans.append((leading, first, minors))
    return tuple(fans)


def design_of(cells: Sequence[Cell], degree: int) -> Design:
    alpha_scale = max(alpha for alpha, _, _ in cells)
    ts = [alpha / alpha_scale for alpha, _, _ in cells]
    return Design(
        powers=tuple(tuple(t**power for power in range(degree + 1)) for t in ts),
        trials=tuple(n for _, n, _ in cells),
        hits=tuple(activated for _, _, activated in cells),
        fans=_fans(ts, degree + 1, _vandermonde),
        # Columns t .. t^degree: each row's common factor t comes out of the minor.
        nuisance_fans=_fans(ts, degree, lambda subset: math.prod(subset) * _vandermonde(subset)),
        alpha_scale=alpha_scale,
    )


def _cauchy_binet(fans: Sequence[Fan], weights: Sequence[float]) -> tuple[float, list[float]]:
    """det of the weighted information, and each cell's share of it (leverage times det)."""
    det, shares = 0.0, [0.0] * len(weights)
    for leading, first, minors in fans:
        head = math.prod(weights[i] for i in leading)
        terms = [head * minor * weight for minor, weight in zip(minors, weights[first:], strict=True)]
        total = sum(terms)
        det += total
        for i in leading:
            shares[i] += total
        for i, term in enumerate(terms, first):
            shares[i] += term
    return det, shares


def _solve(matrix: Sequence[Sequence[float]], vector: Sequence[float]) -> list[float]:
    """x with matrix @ x = vector, by Gaussian elimination with partial pivoting (k is 3 at most)."""
    size = len(vector)
    rows = [[*matrix[i], vector[i]] for i in range(size)]
    for column in range(size):
        pivot = max(range(column, size), key=lambda row: abs(rows[row][column]))
        rows[column], rows[pivot] = rows[pivot], rows[column]
        if rows[column][column] == 0.0:
            raise ArithmeticError("singular system")
        for row in range(column + 1, size):
            factor = rows[row][column] / rows[column][column]
            for entry in range(column, size + 1):
                rows[row][entry] -= factor * rows[column][entry]
    solution = [0.0] * size
    for row in reversed(range(size)):
        known = sum(rows[row][entry] * solution[entry] for entry in range(row + 1, size))
        solution[row] = (rows[row][size] - known) / rows[row][row]
    return solution


@dataclass(frozen=True)
class Point:
    """The penalised log-likelihood at theta (a and the t-scale coefficients), its score and information.

    The information, the weights and det are stored divided by exp(log_scale) (det by its k-th
    power), so that rates far in the tails neither underflow nor overflow.
    """

    theta: tuple[float, ...]
    penalised: float
    score: tuple[float, ...]
    information: tuple[tuple[float, ...], ...]
    log_scale: float
    weights: tuple[float, ...]  # of the cells: n * rate * (1 - rate)
    det: float  # of the information

    def newton_step(self, free_intercept: bool) -> list[float]:
        """Fisher scoring: the step that solves information * step = score (a held where not free)."""
        first = 0 if free_intercept else 1
        block = [row[first:] for row in self.information[first:]]
        step = _solve(block, self.score[first:])
        return [0.0] * first + [math.exp(-self.log_scale) * value for value in step]

    def profile_direction(self) -> list[float]:
        """How theta moves per unit of a along the profile, to first order (1 for a itself)."""
        block = [row[1:] for row in self.information[1:]]
        return [1.0] + [-value for value in _solve(block, [row[0] for row in self.information[1:]])]


def _evaluate(theta: Sequence[float], design: Design) -> Point | None:
    """None where the information is singular to working precision (far outside any sensible fit)."""
    etas = [sum(c * p for c, p in zip(theta, powers, strict=True)) for powers in design.powers]
    # log(n * rate * (1 - rate)) = log n - softplus(eta) - softplus(-eta)
    log_weights = [math.log(n) - _softplus(eta) - _softplus(-eta) for eta, n in zip(etas, design.trials, strict=True)]
    log_scale = max(log_weights)
    weights = [math.exp(log_weight - log_scale) for log_weight in log_weights]
    det, shares = _cauchy_binet(design.fans, weights)
    if det <= 0.0:
        return None
    loglik, score = 0.0, [0.0] * len(theta)
    for i, (eta, n, activated) in enumerate(zip(etas, design.trials, design.hits, strict=True)):
        # Hits and misses apart, so that a cell of a million hits at a rate near 1 does not cancel.
        rate, misses = sigmoid(eta), n - activated
        loglik -= activated * _softplus(-eta) + misses * _softplus(eta)
        residual = activated * (1.0 - rate) - misses * rate + shares[i] / det * (0.5 - rate)  # Firth's modified score
        score = [total + residual * p for total, p in zip(score, design.powers[i], strict=True)]
    penalised = loglik + 0.5 * (len(theta) * log_scale + math.log(det))
    information = _weighted_gram(weights, design.powers)
    return Point(tuple(theta), penalised, tuple(score), information, log_scale, tuple(weights), det)


def _weighted_gram(weights: Sequence[float], powers: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """sum over cells of weight * powers powers^T: the (scaled) information, or least squares' normal matrix."""
    size = len(powers[0])
    return tuple(
        tuple(sum(w * row[j] * row[k] for w, row in zip(weights, powers, strict=True)) for k in range(size))
        for j in range(size)
    )


def maximise(design: Design, theta: Sequence[float], free_intercept: bool) -> Point:
    """Fisher scoring on the penalised likelihood, halving any step that would lower it.

    With free_intercept False the intercept stays at theta[0]: the profile likelihood there.
    """
    point = _evaluate(theta, design)
    if point is None:
        raise ArithmeticError(f"singular information at theta={list(theta)}")
    for _ in range(MAX_ITERATIONS):
        step = point.newton_step(free_intercept)
        gain = 0.5 * sum(s * u for s, u in zip(step, point.score, strict=True))  # quadratic model of the rise
        if max(abs(s) for s in step) < STEP_TOLERANCE or gain < GAIN_TOLERANCE:
            break
        for _ in range(MAX_HALVINGS):
            candidate = _evaluate([c + s for c, s in zip(point.theta, step, strict=True)], design)
            if candidate is not None and candidate.penalised >= point.penalised - ROUNDING_SLACK * abs(point.penalised):
                break
            step = [s / 2.0 for s in step]
        else:
            break  # no step uphill left: converged as far as floating point allows
        point = candidate
    return point


def starting_point(design: Design) -> list[float]:
    """Weighted least squares on empirical logits, (hits + 1/2) / (n + 1) keeping 0% and 100% finite."""
    rates = [(activated + 0.5) / (n + 1.0) for n, activated in zip(design.trials, design.hits, strict=True)]
    weights = [n * rate * (1.0 - rate) for n, rate in zip(design.trials, rates, strict=True)]
    right = [
        sum(
            w * row[j] * math.log(rate / (1.0 - rate))
            for w, row, rate in zip(weights, design.powers, rates, strict=True)
        )
        for j in range(len(design.powers[0]))
    ]
    return _solve(_weighted_gram(weights, design.powers), right)


def variance_of_intercept(design: Design, point: Point) -> float:
    """(information^-1)_aa as det(information without a) / det(information): positive even where
    the alphas sit so close together, far from 0, that solving with the information would cancel."""
    nuisance_det, _ = _cauchy_binet(design.nuisance_fans, point.weights)
    return math.exp(-point.log_scale) * nuisance_det / point.det
