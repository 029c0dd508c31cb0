"""How often the reweighted alpha-0 interval holds the true rate: simulated experiments on a token model
whose alpha-0 rate is known exactly.

Each prompt is a next-token distribution over a small vocabulary, the same at every one of `steps`
steps (so a completion's probability is a product and the rate of "the behaviour token appears at
least once" is 1 - (1 - p)^steps, exact). Fine-tuning moved the behaviour token's logit by a
prompt's own boost (prompts differ in how susceptible they are) and every other token's by a little
noise, which is what makes the weights spread as alpha grows. An experiment samples `samples`
completions per prompt at each alpha, exactly as the engine does (amplified logits, one weight per
completion against the mixture of the scenario's alphas), and `reweighted_alpha0` estimates the rate of the prompt population, whose true value
is computed once per scenario from many prompts.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch

from lda_core.reweight import AlphaWeights, PromptWeights, reweighted_alpha0

TRUTH_PROMPTS = 200_000


@dataclass(frozen=True)
class TokenScenario:
    name: str
    behaviour_logit: float  # the after-model's logit of the behaviour token (others ~ N(0, 1)), its mean ...
    behaviour_logit_spread: float  # ... and spread over prompts
    boost: float  # after minus before on the behaviour token, mean over prompts ...
    boost_spread: float  # ... and spread
    noise: float  # sd of after minus before on every other token
    alphas: tuple[float, ...]
    prompts: int = 60
    samples: int = 16
    steps: int = 16
    vocabulary: int = 32
    # False where the estimate's assumptions fail: weights that spread over orders of magnitude (fine-tuning moved
    # every token), or too few prompts for a clustered variance
    model_holds: bool = True


SCENARIOS = (
    TokenScenario("moderate, alphas 1,2,4", -3.5, 0.5, 1.5, 0.5, 0.1, (1.0, 2.0, 4.0)),
    TokenScenario("susceptible few, alphas 1,2,4", -4.0, 1.0, 2.0, 1.0, 0.1, (1.0, 2.0, 4.0)),
    TokenScenario("rare (6e-4), alphas 1,2,4", -6.5, 0.5, 2.5, 0.5, 0.1, (1.0, 2.0, 4.0)),
    TokenScenario("noisy fine-tune, alphas 1,2,4", -3.5, 0.5, 1.5, 0.5, 0.4, (1.0, 2.0, 4.0), model_holds=False),
    TokenScenario("moderate, alphas 0.25-1", -3.5, 0.5, 1.5, 0.5, 0.1, (0.25, 0.5, 0.75, 1.0)),
    TokenScenario("few prompts (10 x 96)", -3.5, 1.0, 1.5, 0.5, 0.1, (1.0, 2.0, 4.0), prompts=10, samples=96,
                  model_holds=False),
)


@dataclass(frozen=True)
class ReweightCoverage:
    scenario: str
    model_holds: bool
    true_rate: float
    experiments: int
    coverage: float  # of the experiments with an estimate
    estimated: float  # share of experiments with an estimate (some alpha qualified)
    median_estimate: float
    median_relative_width: float  # (high - low) / true rate
    median_effective_hits: float


def _prompt_logits(scenario: TokenScenario, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`[count, vocabulary]` after- and before-model logits; token 0 is the behaviour."""
    after = torch.randn(count, scenario.vocabulary, generator=generator, dtype=torch.float64)
    after[:, 0] = scenario.behaviour_logit + scenario.behaviour_logit_spread * torch.randn(
        count, generator=generator, dtype=torch.float64)
    shift = scenario.noise * torch.randn(count, scenario.vocabulary, generator=generator, dtype=torch.float64)
    shift[:, 0] = scenario.boost + scenario.boost_spread * torch.randn(count, generator=generator, dtype=torch.float64)
    return after, after - shift


def true_rate(scenario: TokenScenario, seed: int = 12345) -> float:
    """The prompt population's alpha-0 rate, exactly per prompt, averaged over TRUTH_PROMPTS prompts."""
    after, _ = _prompt_logits(scenario, TRUTH_PROMPTS, torch.Generator().manual_seed(seed))
    per_step = torch.softmax(after, dim=-1)[:, 0]
    return float((1 - (1 - per_step) ** scenario.steps).mean())


def _experiment_cells(scenario: TokenScenario, after: torch.Tensor, before: torch.Tensor,
                      generator: torch.Generator) -> list[AlphaWeights]:
    """Every alpha's samples, each weighed as the worker weighs it: p_0(text) / mean_j p_j(text) over the alphas."""
    log_p0 = torch.log_softmax(after, dim=-1)
    log_mixture = [torch.log_softmax(after + alpha * (after - before), dim=-1) for alpha in scenario.alphas]
    cells = []
    for alpha, log_q in zip(scenario.alphas, log_mixture, strict=True):
        tokens = torch.multinomial(log_q.exp(), scenario.samples * scenario.steps, replacement=True,
                                   generator=generator).view(scenario.prompts, scenario.samples, scenario.steps)

        def text_log_prob(log_probs: torch.Tensor, tokens: torch.Tensor = tokens) -> torch.Tensor:
            return log_probs[:, None, :].expand(-1, scenario.samples, -1).gather(-1, tokens).sum(dim=-1)

        in_mixture = torch.stack([text_log_prob(log_p) for log_p in log_mixture])  # [alphas, prompts, samples]
        weights = (text_log_prob(log_p0) - torch.logsumexp(in_mixture, dim=0) + math.log(len(log_mixture))).exp()
        hits = (tokens == 0).any(dim=-1)
        hit_weights = torch.where(hits, weights, 0.0)
        prompts = [PromptWeights(index, scenario.samples, float(w)) for index, w in enumerate(hit_weights.sum(dim=-1))]
        cells.append(AlphaWeights(alpha, prompts, int(hits.sum()), float(hit_weights.sum()),
                                  float((hit_weights**2).sum())))
    return cells


def simulate_reweight_coverage(scenario: TokenScenario, experiments: int, seed: int = 0) -> ReweightCoverage:
    truth = true_rate(scenario)
    generator = torch.Generator().manual_seed(seed)
    covered, estimates, widths, effective = 0, [], [], []
    for _ in range(experiments):
        after, before = _prompt_logits(scenario, scenario.prompts, generator)
        estimate = reweighted_alpha0(_experiment_cells(scenario, after, before, generator))
        if estimate.rate is None or estimate.ci95 is None:
            continue
        low, high = estimate.ci95
        covered += low <= truth <= high
        estimates.append(estimate.rate)
        widths.append((high - low) / truth)
        effective.append(estimate.effective_hits)
    done = len(estimates)
    return ReweightCoverage(
        scenario=scenario.name, model_holds=scenario.model_holds, true_rate=truth, experiments=experiments,
        coverage=covered / done if done else math.nan, estimated=done / experiments,
        median_estimate=statistics.median(estimates) if done else math.nan,
        median_relative_width=statistics.median(widths) if done else math.nan,
        median_effective_hits=statistics.median(effective) if done else math.nan,
    )
