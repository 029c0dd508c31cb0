"""How often the Wilson and the prompt-clustered intervals contain the true rate, on simulated runs.

Each simulated prompt has its own activation rate, drawn from a Beta with the scenario's mean and
intra-class correlation (ICC = 1/(a+b+1), the correlation of two completions of one prompt); at
ICC 0 every prompt has the mean rate and completions are independent. Each prompt then gets the
same number of completions, each activated with its prompt's rate. The true rate is the mean over
the population of prompts, which the pooled rate estimates when prompts have equal sample counts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from lda_core.cluster_bootstrap import prompt_clustered_interval
from lda_core.stats import wilson_interval


@dataclass(frozen=True)
class Scenario:
    mean: float
    icc: float
    prompts: int
    samples_per_prompt: int


@dataclass(frozen=True)
class Coverage:
    """Shares of experiments whose interval held the true rate, and the intervals' mean widths."""

    scenario: Scenario
    experiments: int
    resamples: int
    wilson_coverage: float
    bootstrap_coverage: float
    wilson_mean_width: float
    bootstrap_mean_width: float
    mean_design_effect: float | None  # over the experiments where it is defined


# No clustering (one sample per prompt, then ICC 0 with many), moderate and strong clustering in
# three shapes of the same budget, a rare rate, and too few prompts for the bootstrap.
DEFAULT_SCENARIOS = (
    Scenario(mean=0.2, icc=0.0, prompts=256, samples_per_prompt=1),
    Scenario(mean=0.2, icc=0.0, prompts=64, samples_per_prompt=16),
    Scenario(mean=0.2, icc=0.1, prompts=64, samples_per_prompt=16),
    Scenario(mean=0.2, icc=0.1, prompts=256, samples_per_prompt=4),
    Scenario(mean=0.2, icc=0.1, prompts=32, samples_per_prompt=64),
    Scenario(mean=0.2, icc=0.3, prompts=64, samples_per_prompt=16),
    Scenario(mean=0.2, icc=0.3, prompts=256, samples_per_prompt=4),
    Scenario(mean=0.2, icc=0.3, prompts=32, samples_per_prompt=64),
    Scenario(mean=0.05, icc=0.3, prompts=64, samples_per_prompt=16),
    Scenario(mean=0.05, icc=0.3, prompts=32, samples_per_prompt=64),
    Scenario(mean=0.2, icc=0.3, prompts=12, samples_per_prompt=64),
)


def simulated_experiment(scenario: Scenario, rng: random.Random, generator: np.random.Generator) -> list[tuple[int, int]]:
    """One experiment at one alpha: (n, activated) per prompt."""
    if scenario.icc > 0:
        concentration = (1 - scenario.icc) / scenario.icc  # a + b
        alpha, beta = scenario.mean * concentration, (1 - scenario.mean) * concentration
        prompt_rates = [rng.betavariate(alpha, beta) for _ in range(scenario.prompts)]
    else:
        prompt_rates = [scenario.mean] * scenario.prompts
    activated = generator.binomial(scenario.samples_per_prompt, prompt_rates)
    return [(scenario.samples_per_prompt, int(hits)) for hits in activated.tolist()]


def measure_coverage(scenario: Scenario, experiments: int = 1000, resamples: int = 500, seed: int = 0) -> Coverage:
    """Both intervals' 95% coverage and mean width over `experiments` seeded simulated experiments."""
    rng = random.Random(seed)
    generator = np.random.default_rng(seed)
    truth = scenario.mean
    wilson_hits = bootstrap_hits = 0
    wilson_width = bootstrap_width = 0.0
    design_effects = []
    for _ in range(experiments):
        per_prompt = simulated_experiment(scenario, rng, generator)
        wilson_low, wilson_high = wilson_interval(sum(a for _, a in per_prompt), sum(n for n, _ in per_prompt))
        clustered = prompt_clustered_interval(per_prompt, resamples=resamples, seed=rng.getrandbits(32))
        wilson_hits += wilson_low <= truth <= wilson_high
        bootstrap_hits += clustered.low <= truth <= clustered.high
        wilson_width += wilson_high - wilson_low
        bootstrap_width += clustered.high - clustered.low
        if clustered.design_effect is not None:
            design_effects.append(clustered.design_effect)
    return Coverage(
        scenario=scenario,
        experiments=experiments,
        resamples=resamples,
        wilson_coverage=wilson_hits / experiments,
        bootstrap_coverage=bootstrap_hits / experiments,
        wilson_mean_width=wilson_width / experiments,
        bootstrap_mean_width=bootstrap_width / experiments,
        mean_design_effect=sum(design_effects) / len(design_effects) if design_effects else None,
    )
