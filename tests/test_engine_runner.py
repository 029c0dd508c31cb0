"""Running many rows: out-of-memory halving, rows that cannot run, and cancellation between batches.

A CPU has no memory ceiling to hit, so a forward pre-hook on the real model stands in for a
device that fits only a few rows: it raises the same `torch.OutOfMemoryError` CUDA raises.
"""

from __future__ import annotations

import pytest
import torch

from lda_core.batch_sizing import SAFETY_MARGIN, BatchSizer, row_bytes
from lda_core.batcher import GenerationCancelled
from lda_core.generate import GenerationSettings, Row
from lda_core.models import load_model_pair
from lda_core.runner import OUT_OF_MEMORY_ALONE, generate_rows, is_out_of_memory, warm_up

GREEDY = GenerationSettings(max_new_tokens=5, temperature=0)
ROWS = [Row(i, f"User: question number {i}?\nAssistant:", 1.0, 0) for i in range(10)]


@pytest.fixture
def pair(tiny_pair_dirs):
    before, after = tiny_pair_dirs
    return load_model_pair(str(before), str(after))


def _device_that_fits(pair, rows: int, seen_batches: list[int], longest_prompt: int = 10**9):
    """A stand-in device: more than `rows` rows, or a prefill longer than `longest_prompt`, runs out of memory."""

    def refuse_larger_batches(_module, _args, kwargs):
        batch, length = kwargs["input_ids"].shape
        if batch > rows or length > longest_prompt:
            raise torch.OutOfMemoryError(f"CUDA out of memory (stand-in: this device fits {rows} rows)")
        seen_batches.append(batch)

    return pair.after.register_forward_pre_hook(refuse_larger_batches, with_kwargs=True)


def test_out_of_memory_halves_the_batch_and_loses_no_row(pair):
    expected = generate_rows(pair, ROWS, GREEDY, batch_size=16)
    seen_batches: list[int] = []
    handle = _device_that_fits(pair, 3, seen_batches)
    try:
        completions = generate_rows(pair, ROWS, GREEDY, batch_size=16)
    finally:
        handle.remove()

    assert [c.token_ids for c in completions] == [c.token_ids for c in expected]
    assert max(seen_batches) == 2  # 16 -> 8 -> 4 -> 2, the first size that fits


def _ran_alone(pair, rows: list[Row]) -> list[tuple[int, ...]]:
    return [generate_rows(pair, [row], GREEDY)[0].token_ids for row in rows]


def test_a_row_that_does_not_fit_even_alone_is_an_error_row_and_the_others_run(pair):
    long_row = Row(3, "User: " + "a long question, " * 5 + "?\nAssistant:", 1.0, 0)
    handle = _device_that_fits(pair, 16, [], longest_prompt=40)
    try:
        completions = generate_rows(pair, [*ROWS[:3], long_row, ROWS[4]], GREEDY, batch_size=4)
    finally:
        handle.remove()

    assert [c.prompt_index for c in completions] == [0, 1, 2, 3, 4]
    failed = completions[3]
    assert (failed.finish_reason, failed.error, failed.text, failed.tokens) == ("error", OUT_OF_MEMORY_ALONE, "", 0)
    ran = [c for c in completions if c.error is None]
    assert [c.token_ids for c in ran] == _ran_alone(pair, [*ROWS[:3], ROWS[4]])


def test_a_prompt_too_long_for_the_context_window_is_an_error_row_and_the_others_run(pair):
    window = pair.after.config.max_position_embeddings
    too_long = Row(1, "word " * window, 1.0, 0)
    settings = GenerationSettings(max_new_tokens=5, temperature=0)

    completions = generate_rows(pair, [ROWS[0], too_long, ROWS[2]], settings)

    assert [c.finish_reason == "error" for c in completions] == [False, True, False]
    assert f"context window of {window}" in completions[1].error
    assert [completions[0].token_ids, completions[2].token_ids] == _ran_alone(pair, [ROWS[0], ROWS[2]])


def test_cancellation_is_checked_every_few_steps(pair):
    rows_done: list[int] = []

    with pytest.raises(GenerationCancelled):
        generate_rows(
            pair, ROWS, GREEDY, batch_size=4,
            should_stop=lambda: sum(rows_done) >= 4,
            on_completions=lambda done: rows_done.append(len(done)),
        )
    # The first 4 rows end after 5 steps; the check at step 8 stops the run before the next 4 could end.
    assert rows_done == [4]


def test_cpu_and_cuda_allocation_failures_count_as_out_of_memory() -> None:
    with pytest.raises(RuntimeError) as cpu_failure:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: the CPU allocator refuses at once
    assert is_out_of_memory(cpu_failure.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_auto_batch_size_fills_the_memory_budget_and_keeps_the_size_that_worked(pair):
    rows = [Row(row.prompt_index, row.prompt, row.alpha, sample) for row in ROWS for sample in range(3)]
    longest = max(len(pair.tokenizer(row.prompt)["input_ids"]) for row in rows)
    budget = int(7 * row_bytes(pair, longest, GREEDY.max_new_tokens) / SAFETY_MARGIN) + 1  # room for 7 rows
    sizer = BatchSizer(pair, budget=budget)
    assert sizer.size_for(longest, GREEDY.max_new_tokens) == 7
    assert BatchSizer(pair, budget=2 * budget).size_for(longest, GREEDY.max_new_tokens) == 14

    tried: list[int] = []  # every batch a forward was asked to take, refused or not
    recorder = pair.after.register_forward_pre_hook(
        lambda _module, _args, kwargs: tried.append(kwargs["input_ids"].shape[0]), with_kwargs=True, prepend=True
    )
    handle = _device_that_fits(pair, 3, [])
    try:
        first = generate_rows(pair, rows, GREEDY, batch_size=sizer)  # 7 is refused, 3 fits
        tried_first, tried[:] = list(tried), []
        second = generate_rows(pair, rows, GREEDY, batch_size=sizer)
    finally:
        handle.remove()
        recorder.remove()
    assert max(tried_first) == 7 and sizer.ceiling == 3
    assert max(tried) == 3  # the second run starts at the size that worked
    assert first == second and len(first) == 30


def test_warm_up_changes_nothing_that_follows(pair):
    """The worker warms a pair up as it loads it: the completions after the warm-up are those of a pair that
    never ran, and torch's global random state is untouched."""
    settings = GenerationSettings(max_new_tokens=6, temperature=1.0, seed=3)
    rng_state = torch.get_rng_state()
    warm_up(pair)
    assert torch.equal(torch.get_rng_state(), rng_state)
    warmed = generate_rows(pair, ROWS, settings, batch_size=4)
    cold_pair = load_model_pair(str(pair.before.name_or_path), str(pair.after.name_or_path))
    assert generate_rows(cold_pair, ROWS, settings, batch_size=4) == warmed


def test_the_warm_up_batch_grows_toward_the_workers_batch_size_within_its_budget(pair):
    assert warm_up(pair, BatchSizer(pair, fixed=40), budget_seconds=3600) == 40  # 16, 32, then 40
    assert warm_up(pair, BatchSizer(pair, fixed=40), budget_seconds=0) == 16
    assert warm_up(pair, BatchSizer(pair, fixed=4)) == 4
    assert warm_up(pair) == 16
