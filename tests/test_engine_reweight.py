"""The reweighted alpha-0 estimate (lda_core.reweight): how it pools the alphas, its interval, and its coverage
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
    satterthwaite_degrees,
    t_quantile_975,
)
from lda_core.reweight_simulation import SCENARIOS, simulate_reweight_coverage


def _cell(alpha: float, hit_weights_per_prompt: list[list[float]], samples: int = 20) -> AlphaWeights:
    weights = [w for prompt in hit_weights_per_prompt for w in prompt]
    return AlphaWeights(alpha, [PromptWeights(index, samples, sum(prompt))
                                for index, prompt in enumerate(hit_weights_per_prompt)],
                        len(weights), sum(weights), sum(w * w for w in weights))


def test_the_estimate_is_the_mean_of_every_positive_alphas_term() -> None:
    small = _cell(0.5, [[0.9], [0.8, 0.7], [], [0.9]] * 3)
    large = _cell(4.0, [[0.2, 0.3], [0.1], [0.4, 0.2, 0.2], [0.3]] * 3, samples=40)  # more samples: its own size
    estimate = reweighted_alpha0([large, _cell(0.0, [[1.0]] * 12), small])  # alpha 0 is never pooled

    assert estimate.alphas == (0.5, 4.0) and [term.alpha for term in estimate.by_alpha] == [0.5, 4.0]
    terms = [small.weight_sum / (20 * 12), large.weight_sum / (40 * 12)]
    assert [term.rate for term in estimate.by_alpha] == pytest.approx(terms)
    assert estimate.rate == pytest.approx(sum(terms) / 2)
    total = sum(terms)
    squares = small.weight_square_sum / (20 * 12) ** 2 + large.weight_square_sum / (40 * 12) ** 2
    assert estimate.effective_hits == pytest.approx(total**2 / squares)
    assert MIN_EFFECTIVE_HITS <= estimate.effective_hits


def test_the_interval_is_symmetric_on_the_reciprocal_scale_with_students_t_over_the_prompts() -> None:
    cells = [_cell(2.0, [[0.1] * k for k in (1, 3, 0, 2, 5, 1, 0, 4, 2, 3)]),
             _cell(1.0, [[0.2] * k for k in (2, 1, 1, 0, 3, 2, 0, 2, 1, 4)])]
    estimate = reweighted_alpha0(cells)
    low, high = estimate.ci95
    assert low < estimate.rate < high
    assert 1 / low - 1 / estimate.rate == pytest.approx(1 / estimate.rate - 1 / high)
    # The delta method by hand: each prompt's deviation, averaged over the two alphas' terms.
    rates = [term.rate for term in estimate.by_alpha]  # alphas 1, 2
    by_alpha = list(zip(cells[::-1], rates, strict=True))
    deviations = [sum((cell.prompts[i].weighted_hits - rate * 20) / 200 for cell, rate in by_alpha) / 2
                  for i in range(10)]
    error = math.sqrt(10 / 9 * sum(d * d for d in deviations))
    assert estimate.degrees_of_freedom == satterthwaite_degrees(deviations)
    spread = t_quantile_975(int(estimate.degrees_of_freedom)) * error / estimate.rate
    assert estimate.rate / low - 1 == pytest.approx(spread)
    assert t_quantile_975(9) == pytest.approx(2.2622, abs=1e-3) and t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)


def test_heavy_tailed_prompts_leave_fewer_degrees_of_freedom() -> None:
    even = [(-1) ** i * 0.5 for i in range(60)]  # no excess kurtosis to speak of: Student's P - 1
    one_carries_it = [5.0] + [-5.0 / 59] * 59  # a single prompt carries the rate
    assert satterthwaite_degrees(even) == pytest.approx(59)
    assert satterthwaite_degrees(one_carries_it) < 5


def test_the_upper_end_is_one_where_the_spread_reaches_the_rate() -> None:
    estimate = reweighted_alpha0([_cell(1.0, [[0.9] * 12] + [[]] * 5)])  # one prompt of six holds every hit
    low, high = estimate.ci95
    assert 0 < low < estimate.rate and high == 1.0


def test_one_prompt_takes_its_completions_as_the_independent_units() -> None:
    weights = [0.2, 0.5, 0.1, 0.3] * 4
    cell = AlphaWeights(1.0, [PromptWeights(7, 400, sum(weights))], len(weights), sum(weights),
                        sum(w * w for w in weights))
    estimate = reweighted_alpha0([cell])
    terms = weights + [0.0] * (400 - len(weights))
    mean = sum(terms) / 400
    error = math.sqrt(sum((t - mean) ** 2 for t in terms) / 399 / 400)
    low, high = estimate.ci95
    assert estimate.rate == pytest.approx(mean)
    assert mean / low - 1 == pytest.approx(t_quantile_975(399) * error / mean)


def test_no_estimate_without_enough_weighted_hits() -> None:
    estimate = reweighted_alpha0([_cell(1.0, [[0.5]] * 3), _cell(2.0, [[0.5], [1e-3]] * 3), _cell(0.0, [[1.0]] * 40)])
    assert estimate.rate is None and estimate.ci95 is None and estimate.effective_hits < MIN_EFFECTIVE_HITS
    assert estimate.alphas == (1.0, 2.0)


def test_a_stored_weight_stays_finite() -> None:
    assert alpha0_weight(0.0) == 1.0 and alpha0_weight(float("-inf")) == 0.0
    assert math.isfinite(alpha0_weight(1e6))


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name.startswith("moderate")], ids=lambda s: s.name)
def test_the_interval_covers_the_exact_rate_where_the_model_holds(scenario) -> None:
    report = simulate_reweight_coverage(scenario, experiments=300, seed=3)
    assert report.estimated == 1.0
    assert 0.91 <= report.coverage <= 0.99, report
    assert report.median_estimate == pytest.approx(report.true_rate, rel=0.1)
