"""Continuous batching: a batch of up to `batch_size` rows in which a row that ends gives its slot to the
next row at once, prefilled and appended to the running batch.

A row's tokens depend only on its own prompt, alpha and random stream (`row_key` mixed with the row's
own step counter), never on when it joined or who ran beside it; left padding is masked out. So a
run with refill gives the completions of a run without, while the slowest row of a batch no longer
holds every other slot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from lda_core.generate import (
    Completion,
    GenerationSettings,
    Row,
    RowSampling,
    completion_of,
    eos_token_ids,
    mixture_log_weight,
    next_tokens,
    next_tokens_weighed,
)
from lda_core.models import ModelPair
from lda_core.pair_forward import PairCache, pair_forward
from lda_core.refill import RefillPolicy
from lda_core.rng import row_key

CANCEL_CHECK_STEPS = 8  # ask the source which rows were cancelled every this many decoding steps


class GenerationCancelled(Exception):
    """`should_stop` asked to stop."""


class RowSource(Protocol):
    """Where a continuous batch gets its rows and sends its completions.

    A fixed list (`RowList`) for one call, or the worker's ledger: rows of several chunks and
    requests, each with its own settings, joining as they are claimed.
    """

    def take(self, count: int) -> list[Row]:
        """Up to `count` rows to start now, without waiting; [] when none is ready (the run ends once
        its batch is empty and the source has none)."""

    def finished(self, completions: list[Completion]) -> None:
        """Rows that ended."""

    def cancelled(self, rows: list[Row]) -> list[bool]:
        """Which of the running `rows` to drop now, unfinished (their request was cancelled)."""

    def urgent(self) -> bool:
        """Whether rows wait that must join at the next step, however few slots are free (a client waits)."""


class RowList:
    """A list of rows as a source: taken in order; `should_stop` cancels the whole run."""

    def __init__(
        self,
        rows: list[Row],
        on_completions: Callable[[list[Completion]], None],
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.pending, self.on_completions, self.should_stop = list(rows), on_completions, should_stop

    def take(self, count: int) -> list[Row]:
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    def finished(self, completions: list[Completion]) -> None:
        if completions:
            self.on_completions(completions)

    def cancelled(self, rows: list[Row]) -> list[bool]:
        if self.should_stop is not None and self.should_stop():
            raise GenerationCancelled()
        return [False] * len(rows)

    def urgent(self) -> bool:
        return False


@dataclass(frozen=True)
class Strategy:
    """How rows are scheduled; `PREVIOUS` is how ldaq ran before continuous batching, for benchmarks."""

    refill: bool = True  # an ended row's slot takes the next row; else a batch runs until its last row ends
    one_pass: bool = True  # base + LoRA pairs compute both logits in one forward


CONTINUOUS = Strategy()
PREVIOUS = Strategy(refill=False, one_pass=False)


@dataclass
class _Batch:
    """The rows in the batch and everything each needs for its next step, row-aligned."""

    rows: list[Row]
    cache: PairCache
    settings: list[GenerationSettings]
    keys: torch.Tensor  # [rows] int64: each row's random stream
    alphas: torch.Tensor  # [rows, 1]
    temperatures: torch.Tensor  # [rows]
    top_ps: torch.Tensor  # [rows]
    steps: torch.Tensor  # [rows] int64: tokens generated so far
    positions: torch.Tensor  # [rows, 1]: the next token's position
    seen: torch.Tensor  # [rows, keys] bool: which cached keys each row attends to
    logits_after: torch.Tensor  # [rows, vocab]: next-token logits
    logits_before: torch.Tensor
    mixtures: torch.Tensor  # [rows, M]: the other alphas of each row's mixture, padded with its own (never read)
    log_probs: torch.Tensor  # [rows, 2 + M] float64: its tokens' summed log-probabilities so far (`next_tokens_weighed`)
    weighing: torch.Tensor  # [rows] bool: the row has not sampled an EOS yet (its weight still grows)
    tokens: list[list[int]]  # generated so far, per row
    ended: list[bool]  # a row has ended (EOS with stop_at_eos, or max_new_tokens) but may still hold its slot

    def keep(self, kept: list[int]) -> None:
        index = torch.tensor(kept, dtype=torch.long, device=self.keys.device)
        self.cache.select(index)
        self.rows, self.settings = [self.rows[i] for i in kept], [self.settings[i] for i in kept]
        self.tokens, self.ended = [self.tokens[i] for i in kept], [self.ended[i] for i in kept]
        for name in ("keys", "alphas", "temperatures", "top_ps", "steps", "positions", "seen", "logits_after",
                     "logits_before", "mixtures", "log_probs", "weighing"):
            setattr(self, name, getattr(self, name)[index])
        self._drop_unattended_columns()

    def extend(self, other: _Batch) -> None:
        width = max(self.seen.shape[1], other.seen.shape[1])
        self.seen = torch.cat([_pad_left(self.seen, width), _pad_left(other.seen, width)])
        self.cache.append(other.cache)
        self.rows, self.settings = self.rows + other.rows, self.settings + other.settings
        self.tokens, self.ended = self.tokens + other.tokens, self.ended + other.ended
        mixture_width = max(self.mixtures.shape[1], other.mixtures.shape[1])
        for batch in (self, other):
            batch.mixtures = _widen_mixtures(batch.mixtures, batch.alphas, mixture_width)
            batch.log_probs = F.pad(batch.log_probs, (0, 2 + mixture_width - batch.log_probs.shape[1]))
        for name in ("keys", "alphas", "temperatures", "top_ps", "steps", "positions", "logits_after", "logits_before",
                     "mixtures", "log_probs", "weighing"):
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))

    def sampling(self) -> GenerationSettings | RowSampling:
        """The rows' temperature and top-p: one setting when they share it (the common, faster case)."""
        first = self.settings[0]
        if all((s.temperature, s.top_p) == (first.temperature, first.top_p) for s in self.settings):
            return first
        return RowSampling(self.temperatures, self.top_ps)

    def _drop_unattended_columns(self) -> None:
        """Cut the left padding that only departed rows needed."""
        if not self.rows:
            return
        first_used = int(self.seen.any(dim=0).int().argmax())
        if first_used:
            self.seen = self.seen[:, first_used:]
            self.cache.drop_leading_columns(first_used)


def _pad_left(mask: torch.Tensor, width: int) -> torch.Tensor:
    return F.pad(mask, (width - mask.shape[1], 0), value=False)


def _widen_mixtures(mixtures: torch.Tensor, alphas: torch.Tensor, width: int) -> torch.Tensor:
    """`[rows, M]` other mixture alphas padded to `width` columns with each row's own alpha (`alphas`, `[rows, 1]`).
    No weight reads a padding column (`mixture_log_weight` takes the row's own count); its own alpha, where its
    token was drawn, is one whose log-probability is always finite."""
    missing = width - mixtures.shape[1]
    return torch.cat([mixtures, alphas.expand(-1, missing)], dim=1) if missing > 0 else mixtures


class ContinuousBatcher:
    """Generates rows `batch_size` at a time, refilling slots as rows end (see `Strategy`). A row runs
    with its own settings where it has them (`Row.settings`), else with the batcher's."""

    def __init__(
        self, pair: ModelPair, settings: GenerationSettings, batch_size: int, strategy: Strategy = CONTINUOUS
    ) -> None:
        self.pair, self.settings, self.batch_size, self.strategy = pair, settings, batch_size, strategy
        self.forward = pair_forward(pair, strategy.one_pass)
        self.eos_ids = eos_token_ids(pair)
        self.eos_tensor = torch.tensor(sorted(self.eos_ids), dtype=torch.int64, device=pair.device)
        # Refilling one slot at a time would prefill once per ended row: wait for enough free slots.
        self.refill = RefillPolicy(batch_size)

    @torch.inference_mode()
    def run(self, source: RowSource) -> None:
        """Generate rows from `source` until its batch is empty and it has no more, reporting rows as they end."""
        batch, steps = None, 0
        while True:
            started, admitted = time.perf_counter(), False
            if batch is not None and batch.rows and steps % CANCEL_CHECK_STEPS == 0:
                self._drop_cancelled(batch, source)
            if self._has_room(batch, source):
                incoming = source.take(self._room(batch))
                if incoming:
                    batch, admitted = self._admit(batch, incoming), True
            if batch is None or not batch.rows:
                return
            done = self._step(batch)  # waits for the step's tokens: the time is the device's too
            self.refill.observe(time.perf_counter() - started, admitted, len(done))
            source.finished(done)
            steps += 1

    def _room(self, batch: _Batch | None) -> int:
        return self.batch_size - (len(batch.rows) if batch is not None else 0)

    def _has_room(self, batch: _Batch | None, source: RowSource) -> bool:
        if batch is None or not batch.rows:
            return True
        return self.strategy.refill and (self._room(batch) >= self.refill.threshold() or source.urgent())

    def _drop_cancelled(self, batch: _Batch, source: RowSource) -> None:
        dropped = source.cancelled(batch.rows)
        if any(dropped):
            batch.keep([i for i, drop in enumerate(dropped) if not drop])

    def _step(self, batch: _Batch) -> list[Completion]:
        """Sample one token per row, let ended rows leave, and feed the others' tokens to the models."""
        sampled = self._sample(batch)
        for index, token in enumerate(sampled.tolist()):
            batch.tokens[index].append(token)
            batch.ended[index] = batch.ended[index] or self._ends(batch.settings[index], batch.tokens[index], token)
        ended = batch.ended
        leaving = ended if self.strategy.refill or all(ended) else [False] * len(ended)
        log_probs = batch.log_probs.tolist() if any(leaving) else []
        done = [completion_of(self.pair, batch.rows[i], batch.tokens[i], self.eos_ids,
                              None if batch.settings[i].temperature == 0 else
                              mixture_log_weight(log_probs[i], 1 + len(batch.rows[i].other_mixture_alphas())))
                for i, leaves in enumerate(leaving) if leaves]
        if any(leaving):
            kept = [i for i, leaves in enumerate(leaving) if not leaves]
            sampled = sampled[kept]
            batch.keep(kept)
        if batch.rows:
            self._decode(batch, sampled)
        return done

    def _sample(self, batch: _Batch) -> torch.Tensor:
        """Amplify and sample each row's token, adding its log-probabilities (alpha 0's, the row's mixture's) to the
        row's sums up to and with its first EOS (what follows is cut from the completion, so it is no part of the
        event weighed)."""
        inputs = (batch.logits_after, batch.logits_before, batch.alphas, batch.keys, batch.steps, batch.sampling())
        if all(own.temperature == 0 for own in batch.settings):
            return next_tokens(*inputs)  # greedy: no weight to give
        sampled, log_probs = next_tokens_weighed(*inputs, batch.mixtures if batch.mixtures.shape[1] else None)
        batch.log_probs = batch.log_probs + torch.where(batch.weighing[:, None], log_probs.double(), 0.0)
        batch.weighing = batch.weighing & ~torch.isin(sampled, self.eos_tensor)
        return sampled

    def _ends(self, settings: GenerationSettings, tokens: list[int], token: int) -> bool:
        """Whether the row ends with `token`, the latest of its `tokens`."""
        return len(tokens) >= settings.max_new_tokens or (settings.stop_at_eos and token in self.eos_ids)

    def _decode(self, batch: _Batch, tokens: torch.Tensor) -> None:
        batch.seen = F.pad(batch.seen, (0, 1), value=True)  # each row attends to its new token too
        batch.logits_after, batch.logits_before = self.forward.logits(
            batch.cache, tokens[:, None], batch.seen, batch.positions
        )
        batch.positions = batch.positions + 1
        batch.steps = batch.steps + 1

    def _admit(self, batch: _Batch | None, rows: list[Row]) -> _Batch:
        """Prefill `rows` (each distinct prompt once) and add them to the running batch."""
        incoming = self._prefill(rows)
        if batch is None or not batch.rows:
            return incoming
        batch.extend(incoming)
        return batch

    def _prefill(self, rows: list[Row]) -> _Batch:
        device = self.pair.device
        settings = [row.settings or self.settings for row in rows]
        prompts = list(dict.fromkeys(row.prompt for row in rows))
        row_to_prompt = torch.tensor([prompts.index(row.prompt) for row in rows], device=device)  # [rows]
        encoded = self.pair.tokenizer(prompts, return_tensors="pt", padding=True).to(device)
        prompt_mask = encoded["attention_mask"].bool()  # [prompts, prompt_len]
        # Position ids from the mask: a left-padded row then computes what it computes alone.
        positions = (prompt_mask.cumsum(dim=-1) - 1).clamp(min=0)
        cache = self.forward.new_cache()
        logits_after, logits_before = self.forward.logits(cache, encoded["input_ids"], prompt_mask, positions)
        cache.rows = len(prompts)  # what the forward just cached: one row per distinct prompt
        cache.select(row_to_prompt)  # every row gets its prompt's cache
        keys = [row_key(own.seed, row.prompt_index, row.alpha, row.sample_index)
                for row, own in zip(rows, settings, strict=True)]
        others = [row.other_mixture_alphas() for row in rows]
        mixture_width = max(len(alphas) for alphas in others)
        mixtures = [alphas + [row.alpha] * (mixture_width - len(alphas)) for row, alphas in zip(rows, others, strict=True)]
        return _Batch(
            rows=list(rows),
            cache=cache,
            settings=settings,
            keys=torch.tensor(keys, dtype=torch.int64, device=device),
            alphas=torch.tensor([[row.alpha] for row in rows], dtype=torch.float32, device=device),
            temperatures=torch.tensor([own.temperature for own in settings], dtype=torch.float32, device=device),
            top_ps=torch.tensor([own.top_p for own in settings], dtype=torch.float32, device=device),
            steps=torch.zeros(len(rows), dtype=torch.int64, device=device),
            positions=positions[row_to_prompt, -1:] + 1,
            seen=prompt_mask[row_to_prompt],
            logits_after=logits_after[row_to_prompt],
            logits_before=logits_before[row_to_prompt],
            mixtures=torch.tensor(mixtures, dtype=torch.float32, device=device).reshape(len(rows), mixture_width),
            log_probs=torch.zeros(len(rows), 2 + mixture_width, dtype=torch.float64, device=device),
            weighing=torch.ones(len(rows), dtype=torch.bool, device=device),
            tokens=[[] for _ in rows],
            ended=[False] * len(rows),
        )


def generate_batch(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> list[Completion]:
    """Generate one completion per row, all in one batch of `len(rows)`, in the order of `rows`."""
    completions: list[Completion] = []
    ContinuousBatcher(pair, settings, max(1, len(rows)), Strategy(refill=False)).run(RowList(rows, completions.extend))
    return completions
