"""Batched LDA generation: prefill each prompt once, then decode both models step by step.

Every row of a batch is a (prompt, alpha, sample) triple; rows of one prompt share its prefill.
`generate_batch` reads top to bottom: `prefill`, then a loop of `next_tokens` (amplify and
sample, no model) and `decode_one_token` (one forward of the after and the before model).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from lda_core.amplify import amplified_logits
from lda_core.models import ModelPair
from lda_core.rng import row_key, row_uniforms
from lda_core.sampling import sample_tokens


@dataclass(frozen=True)
class Row:
    """One completion to generate. `prompt` is the exact text fed to the models (template applied)."""

    prompt_index: int
    prompt: str
    alpha: float
    sample_index: int


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 48
    temperature: float = 1.0  # 0 is greedy
    top_p: float = 1.0
    seed: int = 0
    stop_at_eos: bool = False  # stop the batch early once every row has produced EOS

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need max_new_tokens >= 1, temperature >= 0 and 0 < top_p <= 1; got {self}")


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

    @classmethod
    def failed(cls, prompt_index: int, alpha: float, sample_index: int, reason: str) -> Completion:
        """A row that could not run, stored as such so progress counts it and rates leave it out."""
        return cls(prompt_index, alpha, sample_index, "", 0, "error", (), reason)


def _cache_argument(model: PreTrainedModel) -> str:
    """The keyword that takes the KV cache: `cache` in newer transformers, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class _Decoder:
    """One model with its own KV cache, called with the batch's shared mask and positions."""

    def __init__(self, model: PreTrainedModel, context: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.model = model
        self.context = context
        self.cache = DynamicCache()
        self.cache_argument = _cache_argument(model)
        config = model.config
        # SDPA takes a ready boolean [batch, 1, query, key] mask as is, which spares transformers
        # rebuilding it on every decoding step; a sliding window would need more than "seen".
        self.takes_ready_mask = config._attn_implementation == "sdpa" and not getattr(config, "sliding_window", None)

    def logits(self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Next-token logits `[batch, vocab]` for the last position; extends the cache."""
        with self.context():
            output = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{self.cache_argument: self.cache},
            )
        return output.logits[:, -1, :]

    def decode_logits(self, tokens: torch.Tensor, seen: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits after one new token per row; `seen` `[batch, keys]` is True where a row may attend."""
        # A single query may attend to every key it has seen: causality adds nothing to `seen`.
        mask = seen[:, None, None, :] if self.takes_ready_mask else seen
        return self.logits(tokens[:, None], mask, positions)

    def expand(self, row_to_prefix: torch.Tensor) -> None:
        """Give each row a copy of its prompt's prefilled cache (rows share a prompt's prefill)."""
        self.cache.reorder_cache(row_to_prefix)


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
    step: int,
    settings: GenerationSettings,
) -> torch.Tensor:
    """Amplify and sample one token per row: logits `[rows, vocab]`, alphas `[rows, 1]` -> `[rows]`.

    No model and no cache: a row's token depends only on its logits, its alpha, its key and `step`,
    never on the batch around it.
    """
    amplified = amplified_logits(logits_after, logits_before, alphas)  # [rows, vocab], float32
    return sample_tokens(amplified, settings.temperature, settings.top_p, row_uniforms(row_keys, step))


def prefill(
    pair: ModelPair, rows: list[Row], after: _Decoder, before: _Decoder, max_new_tokens: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run each distinct prompt once through both models, then give every row its prompt's cache.

    Returns the after and before models' first logits `[rows, vocab]`, the attention mask for the whole
    generation `[rows, prompt_len + max_new_tokens]` (False on the left padding) and each row's next
    position `[rows, 1]`.
    """
    prompts = list(dict.fromkeys(row.prompt for row in rows))
    row_to_prefix = torch.tensor([prompts.index(row.prompt) for row in rows], device=pair.device)  # [rows]
    encoded = pair.tokenizer(prompts, return_tensors="pt", padding=True).to(pair.device)
    prompt_mask = encoded["attention_mask"].bool()  # [prompts, prompt_len]
    # Position ids from the mask: a left-padded row then computes what it computes alone.
    positions = (prompt_mask.cumsum(dim=-1) - 1).clamp(min=0)
    logits_after = after.logits(encoded["input_ids"], prompt_mask, positions)[row_to_prefix]
    after.expand(row_to_prefix)
    logits_before = before.logits(encoded["input_ids"], prompt_mask, positions)[row_to_prefix]
    before.expand(row_to_prefix)
    # The mask for every token still to come is all True: build it once, and let each step take a prefix.
    future = prompt_mask.new_ones(len(rows), max_new_tokens)
    mask = torch.cat([prompt_mask[row_to_prefix], future], dim=-1)
    return logits_after, logits_before, mask, positions[row_to_prefix, -1:] + 1


def decode_one_token(
    after: _Decoder, before: _Decoder, tokens: torch.Tensor, seen: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed one new token per row (`tokens` `[rows]`) to both models; returns `(logits_after, logits_before)`.

    `seen` `[rows, keys]` is True where a row may attend; `positions` `[rows, 1]` is the new token's position.
    """
    return after.decode_logits(tokens, seen, positions), before.decode_logits(tokens, seen, positions)


@torch.inference_mode()
def generate_batch(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> list[Completion]:
    """Generate one completion per row, in one batch of `len(rows)`."""
    device = pair.device
    after = _Decoder(pair.after, contextlib.nullcontext)
    before = _Decoder(pair.before, pair.before_context)
    logits_after, logits_before, mask, next_position = prefill(pair, rows, after, before, settings.max_new_tokens)
    prompt_length = mask.shape[1] - settings.max_new_tokens

    alphas = torch.tensor([[row.alpha] for row in rows], dtype=torch.float32, device=device)  # [rows, 1]
    keys = [row_key(settings.seed, r.prompt_index, r.alpha, r.sample_index) for r in rows]
    row_keys = torch.tensor(keys, dtype=torch.int64, device=device)  # [rows]
    eos_ids = eos_token_ids(pair)
    eos = torch.tensor(sorted(eos_ids), device=device)
    generated = torch.empty(len(rows), settings.max_new_tokens, dtype=torch.long, device=device)
    finished = torch.zeros(len(rows), dtype=torch.bool, device=device)
    for step in range(settings.max_new_tokens):
        tokens = next_tokens(logits_after, logits_before, alphas, row_keys, step, settings)  # [rows]
        generated[:, step] = tokens
        finished |= torch.isin(tokens, eos)
        steps_done = step + 1
        if steps_done == settings.max_new_tokens or (settings.stop_at_eos and bool(finished.all())):
            break
        seen = mask[:, : prompt_length + steps_done]  # the prompt and every token so far, this one included
        logits_after, logits_before = decode_one_token(after, before, tokens, seen, next_position + step)
    token_ids = generated[:, :steps_done].tolist()
    return [_cut_at_eos(pair, row, ids, eos_ids) for row, ids in zip(rows, token_ids, strict=True)]


def _cut_at_eos(pair: ModelPair, row: Row, token_ids: list[int], eos_ids: set[int]) -> Completion:
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
    )
