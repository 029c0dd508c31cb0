"""The reweighted alpha-0 estimate (lda_core.reweight): which alpha it trusts, its interval, and its coverage
on simulated experiments whose alpha-0 rate is exact."""

from __future__ import annotations

import math

import pytest

from lda_core.reweight import (
    MIN_EFFECTIVE_HITS,
    AlphaWeights,
    PromptWeights,
    alpha0_weight,
    reweighted_alpha0,
    t_quantile_975,
)
from lda_core.reweight_simulation import SCENARIOS, simulate_reweight_coverage


def _cell(alpha: float, hit_weights_per_prompt: list[list[float]], samples: int = 20) -> AlphaWeights:
    weights = [w for prompt in hit_weights_per_prompt for w in prompt]
    return AlphaWeights(alpha, [PromptWeights(samples, sum(prompt)) for prompt in hit_weights_per_prompt],
                        len(weights), sum(weights), sum(w * w for w in weights))


def test_the_estimate_comes_from_the_smallest_alpha_whose_hits_weigh_enough() -> None:
    too_few = _cell(0.5, [[0.9]] * 6)  # 6 hits of equal weight: an effective sample of 6
    enough = _cell(1.0, [[0.4, 0.5], [0.3], [0.6, 0.2, 0.4], [0.5]] * 3)
    spread = _cell(4.0, [[1e-6] * 5, [0.3]] * 8)  # many hits, one weight in each prompt carries it all
    estimate = reweighted_alpha0([spread, enough, too_few])

    assert [cell.alpha for cell in estimate.by_alpha] == [0.5, 1.0, 4.0]
    assert estimate.by_alpha[0].effective_hits == pytest.approx(6.0)
    assert estimate.by_alpha[2].effective_hits < MIN_EFFECTIVE_HITS <= estimate.by_alpha[1].effective_hits
    assert estimate.alpha == 1.0
    assert estimate.rate == pytest.approx(enough.weight_sum / (20 * len(enough.prompts)))


def test_the_interval_is_symmetric_on_the_log_scale_with_students_t() -> None:
    cell = _cell(2.0, [[0.1] * k for k in (1, 3, 0, 2, 5, 1, 0, 4, 2, 3)])
    estimate = reweighted_alpha0([cell])
    low, high = estimate.ci95
    error = estimate.by_alpha[0].standard_error
    assert low < estimate.rate < high
    assert math.log(high / estimate.rate) == pytest.approx(math.log(estimate.rate / low))
    assert math.log(high / estimate.rate) == pytest.approx(t_quantile_975(9) * error / estimate.rate)
    assert t_quantile_975(9) == pytest.approx(2.2622, abs=1e-3) and t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)


def test_no_estimate_without_enough_weighted_hits() -> None:
    estimate = reweighted_alpha0([_cell(1.0, [[0.5]] * 3), _cell(0.0, [[1.0]] * 40)])  # alpha 0 is never used
    assert estimate.rate is None and estimate.ci95 is None and estimate.alpha is None
    assert [cell.alpha for cell in estimate.by_alpha] == [1.0]


def test_a_stored_weight_stays_finite() -> None:
    assert alpha0_weight(0.0) == 1.0 and alpha0_weight(float("-inf")) == 0.0
    assert math.isfinite(alpha0_weight(1e6))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name.startswith("moderate")], ids=lambda s: s.name)
def test_the_interval_covers_the_exact_rate_where_the_model_holds(scenario) -> None:
    report = simulate_reweight_coverage(scenario, experiments=300, seed=3)
    assert report.estimated == 1.0
    assert 0.91 <= report.coverage <= 0.99, report
    assert report.median_estimate == pytest.approx(report.true_rate, rel=0.1)
