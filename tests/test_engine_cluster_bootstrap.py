"""The prompt-clustered (cluster bootstrap) interval of an activation rate, and its coverage."""

import random

import pytest

from lda_core.cluster_bootstrap import prompt_clustered_interval
from lda_core.cluster_bootstrap_simulation import Scenario, measure_coverage
from lda_core.stats import wilson_interval


def heterogeneous_prompts(prompts: int, samples: int, seed: int) -> list[tuple[int, int]]:
    """Prompts whose own rates spread widely (Beta(1, 3), mean 0.25): strongly clustered."""
    rng = random.Random(seed)
    per_prompt = []
    for _ in range(prompts):
        prompt_rate = rng.betavariate(1, 3)
        per_prompt.append((samples, sum(rng.random() < prompt_rate for _ in range(samples))))
    return per_prompt


def test_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    per_prompt = heterogeneous_prompts(50, 8, seed=1)
    first = prompt_clustered_interval(per_prompt, seed=3)
    assert prompt_clustered_interval(per_prompt, seed=3) == first
    other = prompt_clustered_interval(per_prompt, seed=4)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.rate == first.rate and other.design_effect == first.design_effect


@pytest.mark.parametrize("seed", range(5))
def test_interval_contains_the_pooled_rate(seed: int) -> None:
    per_prompt = heterogeneous_prompts(30, 1 + seed * 5, seed)
    interval = prompt_clustered_interval(per_prompt, resamples=500, seed=seed)
    assert interval.rate == sum(a for _, a in per_prompt) / sum(n for n, _ in per_prompt)
    assert 0.0 <= interval.low <= interval.rate <= interval.high <= 1.0
    assert (interval.prompts, interval.resamples, interval.seed) == (30, 500, seed)


def test_strong_clustering_widens_the_interval_beyond_wilson() -> None:
    # Half the prompts always show the behaviour, half never: 40 prompts, not 2000 completions.
    per_prompt = [(50, 50)] * 20 + [(50, 0)] * 20
    interval = prompt_clustered_interval(per_prompt)
    wilson_low, wilson_high = wilson_interval(1000, 2000)
    assert interval.high - interval.low > 4 * (wilson_high - wilson_low)
    assert interval.design_effect == pytest.approx(50 * 40 / 39)


def test_one_sample_per_prompt_is_close_to_wilson() -> None:
    per_prompt = [(1, 1)] * 120 + [(1, 0)] * 280
    interval = prompt_clustered_interval(per_prompt)
    wilson_low, wilson_high = wilson_interval(120, 400)
    assert interval.low == pytest.approx(wilson_low, abs=0.01)
    assert interval.high == pytest.approx(wilson_high, abs=0.01)
    assert interval.design_effect == pytest.approx(400 / 399)


def test_no_activation_anywhere_collapses_the_interval_and_has_no_design_effect() -> None:
    interval = prompt_clustered_interval([(10, 0)] * 30)
    assert (interval.rate, interval.low, interval.high, interval.design_effect) == (0.0, 0.0, 0.0, None)


@pytest.mark.parametrize("per_prompt", [[], [(0, 0)], [(3, 4)], [(3, -1)]])
def test_empty_or_impossible_counts_are_refused(per_prompt: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        prompt_clustered_interval(per_prompt)


def test_wilson_under_covers_under_clustering_while_the_bootstrap_holds() -> None:
    clustered = measure_coverage(Scenario(mean=0.2, icc=0.3, prompts=48, samples_per_prompt=32), 300, 300, seed=1)
    assert clustered.wilson_coverage < 0.85
    assert 0.88 <= clustered.bootstrap_coverage <= 0.98
    assert clustered.bootstrap_mean_width > clustered.wilson_mean_width


def test_without_clustering_both_intervals_cover_near_nominal() -> None:
    independent = measure_coverage(Scenario(mean=0.2, icc=0.0, prompts=64, samples_per_prompt=8), 300, 300, seed=1)
    assert 0.9 <= independent.wilson_coverage <= 0.99
    assert 0.9 <= independent.bootstrap_coverage <= 0.99
    assert independent.mean_design_effect == pytest.approx(1.0, abs=0.1)
