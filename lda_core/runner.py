"""Running many rows in batches: out-of-memory halving, rows that cannot run, cancellation and
progress between batches."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lda_core.context_window import context_window
from lda_core.generate import Completion, GenerationSettings, Row, generate_batch
from lda_core.models import ModelPair


class GenerationCancelled(Exception):
    """`should_stop` asked to stop at a batch boundary."""


# How each allocator says it: CUDA's OutOfMemoryError, and CPU's "DefaultCPUAllocator: can't
# allocate memory: you tried to allocate N bytes" (a RuntimeError).
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
OUT_OF_MEMORY_ALONE = "out of memory with a batch of one row"


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says an allocation failed, on any device: the batch is then halved."""
    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or any(words in message for words in OUT_OF_MEMORY_MESSAGES)


def _key_order(row: Row | Completion) -> tuple[int, float, int]:
    return row.prompt_index, row.alpha, row.sample_index


def _failed_row(row: Row, reason: str) -> Completion:
    return Completion.failed(row.prompt_index, row.alpha, row.sample_index, reason)


def _too_long_reason(pair: ModelPair, prompt: str, max_new_tokens: int, window: int) -> str | None:
    """Why `prompt` cannot run (its tokens and the new ones exceed the context window), or None."""
    tokens = len(pair.tokenizer(prompt)["input_ids"])
    if tokens + max_new_tokens <= window:
        return None
    return f"prompt is {tokens} tokens; with max_new_tokens {max_new_tokens} it exceeds the context window of {window}"


def screen_rows(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> tuple[list[Row], list[Completion]]:
    """Split rows into those that can run and failed completions for those that cannot (checked once per prompt)."""
    window = context_window(pair.after.config.to_dict())
    if window is None:  # the config does not say: nothing to check against
        return rows, []
    prompts = {row.prompt for row in rows}
    reasons = {prompt: _too_long_reason(pair, prompt, settings.max_new_tokens, window) for prompt in prompts}
    runnable = [row for row in rows if reasons[row.prompt] is None]
    refused = [_failed_row(row, reasons[row.prompt]) for row in rows if reasons[row.prompt] is not None]
    return runnable, refused


def generate_rows(
    pair: ModelPair,
    rows: list[Row],
    settings: GenerationSettings,
    batch_size: int = 16,
    should_stop: Callable[[], bool] | None = None,
    on_batch_done: Callable[[list[Completion]], None] | None = None,
) -> list[Completion]:
    """Generate every row, `batch_size` at a time (rows of one prompt kept together for prefill), in key order.

    A row that cannot run (too long for the context window, or out of memory even alone) comes back
    as a `finish_reason="error"` completion and the others go on. An out-of-memory error halves the
    batch size and retries the batch, down to one row (as accelerate's `find_executable_batch_size`
    does); `should_stop` is asked before each batch.
    """
    runnable, completions = screen_rows(pair, rows, settings)
    pending = sorted(runnable, key=_key_order)
    while pending:
        if should_stop is not None and should_stop():
            raise GenerationCancelled()
        batch = pending[:batch_size]
        try:
            done = generate_batch(pair, batch, settings)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            _release_cached_memory(pair)
            if batch_size > 1:
                batch_size //= 2
                continue
            done = [_failed_row(batch[0], OUT_OF_MEMORY_ALONE)]
        completions.extend(done)
        pending = pending[len(batch) :]
        if on_batch_done is not None:
            on_batch_done(done)
    return sorted(completions, key=_key_order)


def _release_cached_memory(pair: ModelPair) -> None:
    if pair.device.type == "cuda":
        torch.cuda.empty_cache()
