"""Extrapolating the alpha-0 activation rate from amplified alphas, and how often its interval holds."""

import math
import random

import pytest

from lda_core.extrapolate import estimate_alpha0
from lda_core.extrapolate_simulation import SCENARIOS, binomial_draw, log_odds, simulate_coverage
from lda_core.firth_fit import sigmoid
from lda_core.stats import wilson_interval

ALPHAS = (0.25, 0.5, 0.75, 1.0)
TRUE_INTERCEPT, TRUE_SLOPE = log_odds(1e-3), 6.0
# The toy pair, measured: (alpha, n, activated) at the amplified alphas, and alpha 0 on its own.
TOY_CELLS = [(0.25, 1024, 111), (0.5, 1024, 490), (0.75, 1024, 832), (1.0, 1024, 966)]
TOY_ALPHA0_N, TOY_ALPHA0_ACTIVATED = 8192, 98


def expected_cells(n: int, alphas=ALPHAS, curvature: float = 0.0) -> list[tuple[float, int, int]]:
    logits = [TRUE_INTERCEPT + TRUE_SLOPE * alpha + curvature * alpha * alpha for alpha in alphas]
    return [(alpha, n, round(n * sigmoid(logit))) for alpha, logit in zip(alphas, logits, strict=True)]


@pytest.mark.parametrize("curvature", [0.0, -2.5, 2.0])
def test_fit_recovers_known_curve_from_exact_expected_counts(curvature: float) -> None:
    estimate = estimate_alpha0(expected_cells(1_000_000, curvature=curvature))
    assert estimate.intercept == pytest.approx(TRUE_INTERCEPT, abs=0.02)
    assert estimate.slope == pytest.approx(TRUE_SLOPE, abs=0.05)
    assert estimate.curvature == pytest.approx(curvature, abs=0.05)
    assert estimate.ci95[0] < 1e-3 < estimate.ci95[1]
    assert estimate.alphas == ALPHAS
    assert estimate.model.startswith("logit(rate) = a + b*alpha + c*alpha^2,") and "4 positive alphas" in estimate.model


def test_toy_pair_alpha0_as_measured_lies_inside_the_quadratic_interval() -> None:
    estimate = estimate_alpha0(TOY_CELLS)
    direct = TOY_ALPHA0_ACTIVATED / TOY_ALPHA0_N
    assert estimate.ci95[0] < direct < estimate.ci95[1]
    assert estimate.curvature < 0.0  # concave, as a convex log-normaliser makes it
    low, high = wilson_interval(TOY_ALPHA0_ACTIVATED, TOY_ALPHA0_N)
    assert low < estimate.rate < high
    assert estimate.curve(ALPHAS) == pytest.approx([hits / n for _, n, hits in TOY_CELLS], abs=0.01)


def test_two_alphas_fit_a_line() -> None:
    estimate = estimate_alpha0(expected_cells(1_000_000, alphas=(0.25, 1.0)))
    assert estimate.intercept == pytest.approx(TRUE_INTERCEPT, abs=0.01)
    assert estimate.slope == pytest.approx(TRUE_SLOPE, abs=0.01)
    assert estimate.curvature == 0.0
    assert estimate.ci95[0] < 1e-3 < estimate.ci95[1]
    assert estimate.model.startswith("logit(rate) = a + b*alpha,") and "alpha^2" not in estimate.model


def test_three_alphas_fit_a_quadratic_through_every_point() -> None:
    cells = expected_cells(1000, alphas=(1.0, 2.0, 4.0), curvature=-0.2)
    estimate = estimate_alpha0(cells)
    assert "alpha^2" in estimate.model
    assert estimate.ci95[0] < estimate.rate < estimate.ci95[1]
    # No residual degrees of freedom: the fit meets every cell, Firth's half a hit apart.
    fitted = estimate.curve([alpha for alpha, _, _ in cells])
    assert fitted == pytest.approx([(hits + 0.5) / (n + 1) for _, n, hits in cells], rel=1e-6)


@pytest.mark.parametrize(
    "cells",
    [
        [(1.0, 100, 0), (2.0, 100, 0), (4.0, 100, 0)],
        [(1.0, 100, 100), (2.0, 100, 100)],
        [(1.0, 100, 0), (2.0, 100, 100)],
        [(1.0, 100, 0), (2.0, 100, 0), (4.0, 100, 100)],
        [(0.25, 256, 0), (0.5, 256, 0), (0.75, 256, 3), (1.0, 256, 256)],
        [(1.0, 1, 0), (2.0, 1, 1), (3.0, 1, 0)],
    ],
    ids=["all-zero", "all-full", "zero-then-full", "zero-zero-full", "separated", "one-trial-each"],
)
def test_zero_and_full_cells_give_finite_estimates(cells: list[tuple[float, int, int]]) -> None:
    estimate = estimate_alpha0(cells)
    assert all(math.isfinite(value) for value in (estimate.intercept, estimate.slope, estimate.curvature))
    low, high = estimate.ci95
    assert 0.0 <= low < estimate.rate < high <= 1.0


@pytest.mark.parametrize(
    "cells",
    [
        [],
        [(1.0, 100, 5)],
        [(0.0, 100, 0), (1.0, 100, 5)],
        [(-1.0, 100, 0), (1.0, 100, 5)],
        [(1.0, 100, 5), (1.0, 50, 2)],
        [(1.0, 100, 5), (2.0, 0, 0)],
    ],
    ids=["no-cells", "one-alpha", "alpha-zero-does-not-count", "negative-alpha", "repeated-alpha", "empty-cell"],
)
def test_fewer_than_two_distinct_positive_alphas_is_refused(cells: list[tuple[float, int, int]]) -> None:
    with pytest.raises(ValueError, match="two or more distinct positive alphas"):
        estimate_alpha0(cells)


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="activated <= n"):
        estimate_alpha0([(1.0, 10, 11), (2.0, 10, 5)])


def test_alpha_zero_counts_are_left_out_of_the_fit() -> None:
    cells = expected_cells(1000)
    assert estimate_alpha0([(0.0, 5000, 0), *cells]) == estimate_alpha0(cells)


def test_repeated_alphas_are_pooled() -> None:
    split = [(alpha, 500, hits // 2) for alpha, _, hits in expected_cells(1000) for _ in range(2)]
    pooled = [(alpha, 1000, 2 * (hits // 2)) for alpha, _, hits in expected_cells(1000)]
    assert estimate_alpha0(split) == estimate_alpha0(pooled)


def test_interval_contains_the_estimate_and_narrows_with_more_data() -> None:
    few, many = estimate_alpha0(expected_cells(256)), estimate_alpha0(expected_cells(4096))
    for estimate in (few, many):
        assert estimate.ci95[0] < estimate.rate < estimate.ci95[1]
    assert many.ci95[1] - many.ci95[0] < (few.ci95[1] - few.ci95[0]) / 2


def test_curve_gives_the_fitted_rates_from_alpha_zero_up() -> None:
    estimate = estimate_alpha0(expected_cells(1000))
    rates = estimate.curve([0.0, *ALPHAS])
    assert rates[0] == estimate.rate
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(sigmoid(TRUE_INTERCEPT + TRUE_SLOPE), rel=0.05)


@pytest.mark.parametrize("rate", [0.003, 0.3, 0.8])
def test_binomial_draws_average_n_times_rate(rate: float) -> None:
    rng, n, draws = random.Random(7), 1000, 2000
    mean = sum(binomial_draw(rng, n, rate) for _ in range(draws)) / draws
    assert mean == pytest.approx(n * rate, abs=4 * math.sqrt(n * rate * (1 - rate) / draws))


@pytest.mark.parametrize("name", ["linear p0=1e-3, alphas .25-1", "toy concave p0=1.2e-2, alphas 1,2,4,8"])
def test_interval_holds_the_true_rate_about_95_percent_of_the_time_when_the_model_holds(name: str) -> None:
    scenario = next(scenario for scenario in SCENARIOS if scenario.name.startswith(name))
    assert scenario.model_holds
    report = simulate_coverage(scenario, experiments=400, seed=11)
    assert 0.91 <= report.coverage <= 0.985
    assert abs(report.bias_log_odds) < 0.3


def test_interval_misses_when_the_slope_dies_away_faster_than_a_quadratic_bends() -> None:
    scenario = next(scenario for scenario in SCENARIOS if scenario.name.startswith("slope halves x5"))
    assert not scenario.model_holds
    report = simulate_coverage(scenario, experiments=100, seed=11)
    assert report.coverage < 0.5
