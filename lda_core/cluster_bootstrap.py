"""An activation rate's interval that resamples prompts, not completions (a cluster bootstrap).

Completions of one prompt are correlated: a prompt that elicits the behaviour tends to do so for
many of its samples. The Wilson interval (lda_core.stats) treats every completion as independent,
so it is right when samples per prompt are few (one or two), or when the prompts are exactly the
population of interest as listed and only the sampling noise within them is in question. When
each prompt gets many samples and the prompts stand for a larger population of prompts, the
information comes from the prompts and Wilson is too narrow by about the square root of the design
effect; then read this interval, which resamples whole prompts. It needs enough prompts: with fewer
than about 20 the bootstrap distribution is too coarse and its interval too narrow, so report
Wilson beside it and treat both as optimistic. When no completion (or every one) shows the
behaviour, every resample agrees and this interval collapses to a point: read Wilson then.

The interval is the bias-corrected and accelerated (BCa) percentile interval. Where the rate is
rare and clustering strong, its bootstrap distribution is skewed and the plain percentile interval
under-covers; BCa corrects for the skew at the cost of one leave-one-prompt-out pass. In the
coverage simulation (lda_core.cluster_bootstrap_simulation, 3000 experiments each) it lifts 95%
coverage from 0.91 to 0.93 at mean 0.05, ICC 0.3, 64 prompts x 16 samples, and from 0.87 to 0.90
with 32 prompts x 64 samples; rare rates on few prompts remain somewhat under-covered. A percentile
interval on a transformed scale (logit) would change nothing: percentiles commute with monotone maps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Resamples are drawn this many indices at a time, to bound memory (10,000 prompts x 2,000
# resamples would otherwise hold 20M indices at once). The split is fixed, so the same counts and
# seed give the same interval. numpy, not torch: the API computes this, and the API process never
# imports torch.
DRAW_CHUNK_ELEMENTS = 1 << 22

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class ClusteredInterval:
    """A rate with its prompt-clustered interval.

    `design_effect` is the ratio-estimator (linearised) variance over the binomial variance
    p(1-p)/N: how many times fewer independent completions the sample is worth. None when p is 0
    or 1 (no binomial variance) or there is a single prompt (no between-prompt variance).
    """

    rate: float
    low: float
    high: float
    prompts: int
    resamples: int
    seed: int
    design_effect: float | None


def prompt_clustered_interval(
    per_prompt: Sequence[tuple[int, int]], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> ClusteredInterval:
    """BCa interval of sum(activated)/sum(n) from resampling prompts with replacement.

    `per_prompt` holds one (n, activated) pair per prompt at one alpha. The same input and seed give
    the same interval: draws come from a seeded CPU generator and the sums are exact integers.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    completions, activations = _counts(per_prompt)
    rate = int(activations.sum()) / int(completions.sum())
    rates = _resampled_rates(completions, activations, resamples, seed)
    bias = _bias_correction(rates, rate)
    acceleration = _acceleration(completions, activations)
    tail = (1 - level) / 2
    probabilities = [_bca_probability(bias, acceleration, _STANDARD_NORMAL.inv_cdf(q)) for q in (tail, 1 - tail)]
    low, high = np.quantile(rates, probabilities).tolist()
    # BCa can leave the estimate outside only when nearly every resample falls on one side of it;
    # an interval that excludes its own point reads as a bug, so its nearer end moves to the point.
    return ClusteredInterval(
        rate=rate,
        low=min(low, rate),
        high=max(high, rate),
        prompts=len(completions),
        resamples=resamples,
        seed=seed,
        design_effect=_design_effect(completions, activations, rate),
    )


def _counts(per_prompt: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(n, activated) pairs -> two int64 arrays [prompts], refusing what has no rate."""
    if len(per_prompt) == 0:
        raise ValueError("no prompts: a clustered interval needs at least one prompt")
    for n, activated in per_prompt:
        if n < 1 or not 0 <= activated <= n:
            raise ValueError(f"each prompt needs n >= 1 and 0 <= activated <= n, got ({n}, {activated})")
    counts = np.asarray(per_prompt, dtype=np.int64).reshape(-1, 2)  # [prompts, 2]
    return counts[:, 0].copy(), counts[:, 1].copy()


def _resampled_rates(completions: np.ndarray, activations: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """One pooled rate per resample of the prompts, float64 [resamples]."""
    prompts = len(completions)
    generator = np.random.default_rng(seed)
    rows_per_chunk = max(1, DRAW_CHUNK_ELEMENTS // prompts)
    rates = []
    for start in range(0, resamples, rows_per_chunk):
        rows = min(rows_per_chunk, resamples - start)
        drawn = generator.integers(0, prompts, size=(rows, prompts))  # [rows, prompts]
        rates.append(activations[drawn].sum(axis=1) / completions[drawn].sum(axis=1))
    return np.concatenate(rates)


def _bias_correction(rates: np.ndarray, rate: float) -> float:
    """BCa's z0: how far the bootstrap median sits from the estimate, in normal quantiles.

    Ties count half (the rates are discrete, and rare rates tie often); the share is kept off 0
    and 1 so a lopsided distribution gives a large, finite correction.
    """
    resamples = len(rates)
    below = int((rates < rate).sum()) + 0.5 * int((rates == rate).sum())
    share = min(max(below / resamples, 0.5 / resamples), 1 - 0.5 / resamples)
    return _STANDARD_NORMAL.inv_cdf(share)


def _acceleration(completions: np.ndarray, activations: np.ndarray) -> float:
    """BCa's acceleration: the skewness of the leave-one-prompt-out rates (0 with one prompt)."""
    if len(completions) < 2:
        return 0.0
    left_out = (
        (int(activations.sum()) - activations) / (int(completions.sum()) - completions)
    ).tolist()
    centre = math.fsum(left_out) / len(left_out)
    deviations = [centre - value for value in left_out]
    spread = math.fsum(d * d for d in deviations)
    if spread == 0:
        return 0.0
    return math.fsum(d * d * d for d in deviations) / (6 * spread**1.5)


def _bca_probability(bias: float, acceleration: float, z: float) -> float:
    """The bootstrap quantile that BCa reads for the normal quantile z."""
    shifted = bias + z
    denominator = 1 - acceleration * shifted
    if denominator <= 0:  # past the acceleration's reach: the extreme resample on that side
        return 1.0 if shifted > 0 else 0.0
    return _STANDARD_NORMAL.cdf(bias + shifted / denominator)


def _design_effect(completions: np.ndarray, activations: np.ndarray, rate: float) -> float | None:
    """Ratio-estimator variance P/(P-1) * sum((a_i - p n_i)^2) / N^2 over p(1-p)/N (Kish's deff)."""
    prompts = len(completions)
    total = int(completions.sum())
    binomial_variance = rate * (1 - rate) / total
    if prompts < 2 or binomial_variance == 0:
        return None
    residuals = (activations - rate * completions).tolist()
    clustered_variance = prompts / (prompts - 1) * math.fsum(r * r for r in residuals) / total**2
    return clustered_variance / binomial_variance
