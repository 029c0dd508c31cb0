"""What a generation is made of: rows to generate, settings, completions, and `next_tokens` (amplify
and sample one token per row, no model). `lda_core.batcher` runs the models around it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lda_core.amplify import amplified_logits, amplified_logits_at
from lda_core.models import ModelPair
from lda_core.rng import row_uniforms
from lda_core.sampling import sample_tokens, sample_tokens_with_log_probs, sampled_log_probs


@dataclass(frozen=True)
class Row:
    """One completion to generate. `prompt` is the exact text fed to the models (template applied).

    `settings` (None: the run's) lets rows of different requests share one batch; `tag` is the
    caller's, carried through untouched (the worker's chunk or request the row belongs to).
    `mixture_alphas` are the alphas sampled beside this one for the same estimate (an experiment's
    positive alphas): the row's alpha-0 weight is then taken against their equal mixture, to which its
    own alpha always belongs, so that every alpha's samples pool into one estimate (lda_core.reweight).
    Empty: against its own alpha alone.
    """

    prompt_index: int
    prompt: str
    alpha: float
    sample_index: int
    settings: GenerationSettings | None = None
    tag: object = None
    mixture_alphas: tuple[float, ...] = ()

    def other_mixture_alphas(self) -> list[float]:
        """The mixture's alphas but the row's own, each once: with its own, the distributions its weight divides by."""
        return [alpha for alpha in dict.fromkeys(self.mixture_alphas) if alpha != self.alpha]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 48
    temperature: float = 1.0  # 0 is greedy
    top_p: float = 1.0
    seed: int = 0
    stop_at_eos: bool = False  # a row ends at its first EOS (else it runs to max_new_tokens, cut at EOS after)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need max_new_tokens >= 1, temperature >= 0 and 0 < top_p <= 1; got {self}")


@dataclass(frozen=True)
class RowSampling:
    """Temperature and top-p of each row of a batch (`[rows]` tensors), for rows of different requests."""

    temperature: torch.Tensor
    top_p: torch.Tensor


@dataclass(frozen=True)
class Completion:
    """A generated answer, cut at its first EOS: what follows EOS is not the model's answer."""

    prompt_index: int
    alpha: float
    sample_index: int
    text: str
    tokens: int
    finish_reason: str  # "eos", "length", or "error" when the row could not run
    token_ids: tuple[int, ...]
    error: str | None = None  # why the row could not run: the rest of its batch runs on without it
    tag: object = None  # the row's `tag`
    # log p_0(text) - log mean_j p_j(text), up to and with the first EOS: alpha 0's probability of this very
    # completion over its mean probability under the row's mixture alphas (its own alpha alone by default: the
    # distribution it was sampled from; `next_tokens_weighed`, `mixture_log_weight`). None when greedy.
    # Left out of equality: a float whose last digits differ between a batch and a row alone, as logits do.
    log_weight: float | None = field(default=None, compare=False)

    @classmethod
    def failed(cls, row: Row, reason: str) -> Completion:
        """A row that could not run, stored as such so progress counts it and rates leave it out."""
        return cls(row.prompt_index, row.alpha, row.sample_index, "", 0, "error", (), reason, row.tag)


def eos_token_ids(pair: ModelPair) -> set[int]:
    """Every id that ends an answer: the tokenizer's eos and the generation config's."""
    ids = {pair.tokenizer.eos_token_id}
    configured = getattr(pair.after.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def next_tokens(
    logits_after: torch.Tensor,
    logits_before: torch.Tensor,
    alphas: torch.Tensor,
    row_keys: torch.Tensor,
    step: int | torch.Tensor,
    settings: GenerationSettings | RowSampling,
) -> torch.Tensor:
    """Amplify and sample one token per row: logits `[rows, vocab]`, alphas `[rows, 1]` -> `[rows]`.

    `step` is the rows' shared decoding step, or each row's own (int64 `[rows]`); `settings` gives
    every row the same temperature and top-p, or (`RowSampling`) each row its own.

    No model and no cache: a row's token depends only on its logits, its alpha, its key and `step`,
    never on the batch around it.
    """
    amplified = amplified_logits(logits_after, logits_before, alphas)  # [rows, vocab], float32
    return sample_tokens(amplified, settings.temperature, settings.top_p, row_uniforms(row_keys, step))


def next_tokens_weighed(
    logits_after: torch.Tensor,
    logits_before: torch.Tensor,
    alphas: torch.Tensor,
    row_keys: torch.Tensor,
    step: int | torch.Tensor,
    settings: GenerationSettings | RowSampling,
    other_alphas: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`next_tokens`, and each row's log-probability of its token under alpha 0, its own alpha and each of
    `other_alphas` (`[rows, M]`, the rest of its mixture), all after temperature and top-p: `[rows, 2 + M]`
    (meaningless for a greedy row).

    Summed over a completion's tokens, these give its alpha-0 importance weight (`mixture_log_weight`):
    the mean over amplified samples of `hit * weight` is an unbiased estimate of alpha 0's activation
    rate (exact where top-p cuts no token alpha 0 could sample). Amplification makes a behaviour's
    completions likelier, so their weights are small and the estimate's variance with them: this is why
    amplified samples measure a rare rate well.
    """
    amplified = amplified_logits(logits_after, logits_before, alphas)  # [rows, vocab], float32
    uniforms = row_uniforms(row_keys, step)
    width = 2 + (0 if other_alphas is None else other_alphas.shape[1])
    everyone_at_zero = not bool((alphas != 0).any()) and (other_alphas is None or not bool((other_alphas != 0).any()))
    if everyone_at_zero:  # alpha 0 is every distribution involved: every ratio is 1
        tokens = sample_tokens(amplified, settings.temperature, settings.top_p, uniforms)
        return tokens, torch.zeros(tokens.shape[0], width, dtype=torch.float32, device=tokens.device)
    tokens, at_alpha = sample_tokens_with_log_probs(amplified, settings.temperature, settings.top_p, uniforms)
    columns = [sampled_log_probs(logits_after, tokens, settings.temperature, settings.top_p)[:, None], at_alpha[:, None]]
    if other_alphas is not None:
        columns.append(_log_probs_at(logits_after, logits_before, other_alphas, tokens, settings))
    return tokens, torch.cat(columns, dim=1)


def _log_probs_at(
    logits_after: torch.Tensor, logits_before: torch.Tensor, alphas: torch.Tensor, tokens: torch.Tensor,
    settings: GenerationSettings | RowSampling,
) -> torch.Tensor:
    """`[rows, M]`: each row's token's log-probability at each of its `alphas` (`[rows, M]`), after temperature and
    top-p, all alphas shaped as one `[rows * M, vocab]` batch."""
    rows, width = alphas.shape
    shaped = amplified_logits_at(logits_after, logits_before, alphas).reshape(rows * width, -1)
    temperature, top_p = settings.temperature, settings.top_p
    if isinstance(settings, RowSampling):
        temperature, top_p = temperature.repeat_interleave(width), top_p.repeat_interleave(width)
    return sampled_log_probs(shaped, tokens.repeat_interleave(width), temperature, top_p).reshape(rows, width)


def mixture_log_weight(log_probs: list[float], mixture_size: int) -> float:
    """log p_0(text) - log mean_j p_j(text) from a completion's summed `next_tokens_weighed` columns: column 0 is
    alpha 0's, the next `mixture_size` its mixture's (its own alpha first, never -inf: it was sampled there)."""
    mixture = log_probs[1:1 + mixture_size]
    largest = max(mixture)
    log_mean = largest + math.log(math.fsum(math.exp(value - largest) for value in mixture) / mixture_size)
    return log_probs[0] - log_mean


def completion_of(
    pair: ModelPair, row: Row, token_ids: list[int], eos_ids: set[int], log_weight: float | None = None
) -> Completion:
    """The completion up to (not including) its first EOS; `eos_ids` is computed once per batch."""
    cut = next((i for i, token in enumerate(token_ids) if token in eos_ids), None)
    kept = token_ids if cut is None else token_ids[:cut]
    return Completion(
        prompt_index=row.prompt_index,
        alpha=row.alpha,
        sample_index=row.sample_index,
        text=pair.tokenizer.decode(kept, skip_special_tokens=True),
        tokens=len(kept),
        finish_reason="length" if cut is None else "eos",
        token_ids=tuple(kept),
        tag=row.tag,
        log_weight=log_weight,
    )
