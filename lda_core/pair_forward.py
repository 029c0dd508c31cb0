"""One forward step of a model pair: the after-model's and the before-model's next-token logits.

Two ways to get them. `TwoPasses` runs each model over the batch with its own KV cache. For a base
+ LoRA pair `OnePass` stacks the batch twice (after rows, then before rows) and runs the adapted
model once, with PEFT's mixed-adapter batches (`adapter_names`, the base for the second half): the
base weights are then read once per step instead of twice, which is what decoding on a GPU pays for.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable

import torch
from transformers import DynamicCache, PreTrainedModel

from lda_core.kv_cache import append_rows, drop_leading_columns, select_rows
from lda_core.models import ModelPair

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class PairCache:
    """The KV caches of a batch of `rows` rows: one per model, or one holding each row twice (`copies=2`:
    rows `0..rows-1` for the after-model, then the same rows again for the before-model)."""

    def __init__(self, caches: list[DynamicCache], copies: int) -> None:
        self.caches, self.copies, self.rows = caches, copies, 0

    def _stored(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        """The cache rows that hold batch rows `rows` in a batch of `batch`."""
        return torch.cat([rows + copy * batch for copy in range(self.copies)])

    def select(self, rows: torch.Tensor) -> None:
        """Keep batch rows `rows` (indices, possibly repeated: rows of one prompt share its prefill)."""
        for cache in self.caches:
            select_rows(cache, self._stored(rows, self.rows))
        self.rows = len(rows)

    def append(self, other: PairCache) -> None:
        """Add `other`'s rows after this cache's rows (left-padded to a common length)."""
        for cache, incoming in zip(self.caches, other.caches, strict=True):
            append_rows(cache, incoming)
        rows, incoming_rows = self.rows, other.rows
        if self.copies > 1 and rows:  # [ours..., theirs...] per copy, not [all ours, all theirs]
            ours = self._stored(torch.arange(rows), rows).view(self.copies, rows)
            theirs = self.copies * rows + other._stored(torch.arange(incoming_rows), incoming_rows)
            order = torch.cat([ours, theirs.view(self.copies, incoming_rows)], dim=1).flatten()
            for cache in self.caches:
                select_rows(cache, order)
        self.rows = rows + incoming_rows

    def drop_leading_columns(self, columns: int) -> None:
        for cache in self.caches:
            drop_leading_columns(cache, columns)


def _cache_argument(model: PreTrainedModel) -> str:
    """The keyword that takes the KV cache: `cache` in newer transformers, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _takes_ready_mask(model: PreTrainedModel) -> bool:
    # SDPA takes a ready boolean [batch, 1, query, key] mask as is, which spares transformers
    # rebuilding it on every decoding step; a sliding window would need more than "seen".
    config = model.config
    return config._attn_implementation == "sdpa" and not getattr(config, "sliding_window", None)


class _Model:
    """One model called with the batch's mask and positions, extending the cache it is given."""

    def __init__(self, model: PreTrainedModel, context: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.model, self.context = model, context
        self.device = model.device  # where the batch's tensors live: a sharded model's first device
        self.cache_argument = _cache_argument(model)
        self.takes_ready_mask = _takes_ready_mask(model)

    def logits(
        self, cache: DynamicCache, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, **extra
    ) -> torch.Tensor:
        """Next-token logits `[batch, vocab]` after `input_ids` `[batch, query]`; `mask` `[batch, keys]`."""
        if input_ids.shape[1] == 1 and self.takes_ready_mask:
            mask = mask[:, None, None, :]  # one query may attend to every key it has seen: nothing causal to add
        with self.context():
            output = self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{self.cache_argument: cache}, **extra,
            )
        return output.logits[:, -1, :].to(self.device)  # a sharded model's logits come off its last device


class TwoPasses:
    """The after-model, then the before-model, each over the batch with its own cache."""

    def __init__(self, pair: ModelPair) -> None:
        self.after = _Model(pair.after, contextlib.nullcontext)
        self.before = _Model(pair.before, pair.before_context)

    def new_cache(self) -> PairCache:
        return PairCache([DynamicCache(), DynamicCache()], copies=1)

    def logits(
        self, cache: PairCache, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        after_cache, before_cache = cache.caches
        return (
            self.after.logits(after_cache, input_ids, mask, positions),
            self.before.logits(before_cache, input_ids, mask, positions),
        )


class OnePass:
    """A base + LoRA pair in one forward: the batch's rows with the adapter, then again without."""

    def __init__(self, pair: ModelPair) -> None:
        self.model = _Model(pair.after, contextlib.nullcontext)
        self.adapter = pair.after.active_adapter

    def new_cache(self) -> PairCache:
        return PairCache([DynamicCache()], copies=2)

    def logits(
        self, cache: PairCache, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows = input_ids.shape[0]
        names = [self.adapter] * rows + [BASE_ADAPTER] * rows
        twice = [torch.cat([tensor, tensor]) for tensor in (input_ids, mask, positions)]
        logits = self.model.logits(cache.caches[0], *twice, adapter_names=names)
        return logits[:rows], logits[rows:]


def runs_in_one_pass(pair: ModelPair) -> bool:
    """A LoRA adapter without DoRA can share the base's forward (PEFT refuses mixed batches with DoRA)."""
    if not pair.uses_adapter:
        return False
    config = pair.after.peft_config[pair.after.active_adapter]
    return str(config.peft_type) in ("LORA", "PeftType.LORA") and not getattr(config, "use_dora", False)


def pair_forward(pair: ModelPair, one_pass: bool = True) -> TwoPasses | OnePass:
    """How this pair computes both logits: in one pass where it can and `one_pass` allows, else two."""
    return OnePass(pair) if one_pass and runs_in_one_pass(pair) else TwoPasses(pair)
