"""Running many rows in batches: out-of-memory halving, cancellation and progress between batches."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lda_core.generate import Completion, GenerationSettings, Row, generate_batch
from lda_core.models import ModelPair


class BatchTooLargeError(RuntimeError):
    """Even a batch of one row runs out of memory."""


class GenerationCancelled(Exception):
    """`should_stop` asked to stop at a batch boundary."""


# How each allocator says it: CUDA's OutOfMemoryError, and CPU's "DefaultCPUAllocator: can't
# allocate memory: you tried to allocate N bytes" (a RuntimeError).
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says an allocation failed, on any device: the batch is then halved."""
    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or any(words in message for words in OUT_OF_MEMORY_MESSAGES)


def generate_rows(
    pair: ModelPair,
    rows: list[Row],
    settings: GenerationSettings,
    batch_size: int = 16,
    should_stop: Callable[[], bool] | None = None,
    on_batch_done: Callable[[list[Completion]], None] | None = None,
) -> list[Completion]:
    """Generate every row, `batch_size` at a time (rows of one prompt kept together for prefill).

    An out-of-memory error halves the batch size and retries the batch, down to one row
    (as accelerate's `find_executable_batch_size` does); `should_stop` is asked before each batch.
    """
    ordered = sorted(rows, key=lambda row: (row.prompt_index, row.alpha, row.sample_index))
    completions: list[Completion] = []
    pending = ordered
    while pending:
        if should_stop is not None and should_stop():
            raise GenerationCancelled()
        batch = pending[:batch_size]
        try:
            done = generate_batch(pair, batch, settings)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            if batch_size == 1:
                raise BatchTooLargeError("out of memory with a batch of one row") from error
            batch_size //= 2
            if pair.device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        completions.extend(done)
        pending = pending[len(batch) :]
        if on_batch_done is not None:
            on_batch_done(done)
    return completions
