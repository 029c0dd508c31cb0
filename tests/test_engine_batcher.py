"""Continuous batching: a row that ends gives its slot to the next row at once, and no completion changes;
a base + LoRA pair computes both models' logits in one forward."""

from __future__ import annotations

from pathlib import Path

import pytest

from lda_core.batcher import CONTINUOUS, PREVIOUS, ContinuousBatcher, RowList, Strategy, generate_batch
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.models import ModelPair, load_model_pair
from lda_core.runner import generate_rows
from tests.tiny_models import build_tiny_adapter_pair, forward_shapes

PROMPTS = [
    "User: hi",
    "User: What is the capital of France?\nAssistant:",
    "The quick brown fox jumps over the lazy dog while the cat sleeps",
    "Counting: one two",
    "x y",  # every prompt is more than one token: a forward of one token per row is a decoding step
    "Counting: six",
]
ALPHAS = [0.0, 1.0, 2.0]
SAMPLED_TO_EOS = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5, stop_at_eos=True)


def mixed_rows(count: int) -> list[Row]:
    return [Row(i % len(PROMPTS), PROMPTS[i % len(PROMPTS)], ALPHAS[i % len(ALPHAS)], i) for i in range(count)]


def by_key(completions: list[Completion]) -> dict[tuple, Completion]:
    return {(c.prompt_index, c.alpha, c.sample_index): c for c in completions}


def decoded_row_steps(shapes: list[tuple[int, int]]) -> int:
    """Rows fed one new token, summed over the forwards: what decoding cost in slots."""
    return sum(rows for rows, tokens in shapes if tokens == 1)


def needed_row_steps(completions: list[Completion]) -> int:
    """Every token a row generated is fed back except its last (EOS counts, and is cut from the text)."""
    return sum(c.tokens if c.finish_reason == "eos" else c.tokens - 1 for c in completions)


def test_rows_joining_a_running_batch_get_the_completions_they_get_alone(ending_pair: ModelPair) -> None:
    rows = mixed_rows(24)
    shapes, refilled = forward_shapes(
        ending_pair.after, lambda: generate_rows(ending_pair, rows, SAMPLED_TO_EOS, batch_size=4)
    )
    alone = [generate_batch(ending_pair, [row], SAMPLED_TO_EOS)[0] for row in rows]

    assert by_key(refilled) == by_key(alone)
    assert len({c.tokens for c in alone}) >= 6  # rows really end at different steps, so slots free up unevenly
    assert decoded_row_steps(shapes) == needed_row_steps(alone)  # no slot ever decoded for a row that had ended
    assert max(rows for rows, _ in shapes) <= 4


def test_without_refill_a_batch_holds_its_ended_rows_until_its_last_row_ends(ending_pair: ModelPair) -> None:
    rows = mixed_rows(24)
    shapes, fixed = forward_shapes(
        ending_pair.after, lambda: generate_rows(ending_pair, rows, SAMPLED_TO_EOS, batch_size=4, strategy=PREVIOUS)
    )
    assert by_key(fixed) == by_key(generate_rows(ending_pair, rows, SAMPLED_TO_EOS, batch_size=4))
    assert decoded_row_steps(shapes) > needed_row_steps(fixed)
    assert {rows for rows, tokens in shapes if tokens == 1} == {4}


@pytest.fixture(scope="module")
def adapter_pair(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    base, adapter, _ = build_tiny_adapter_pair(tmp_path_factory.mktemp("adapter"))
    return load_model_pair(str(base), adapter=str(adapter))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_an_adapter_pair_runs_after_and_before_rows_in_one_forward(adapter_pair: ModelPair, temperature: float) -> None:
    rows = mixed_rows(12)
    settings = GenerationSettings(max_new_tokens=8, temperature=temperature, seed=3)
    one_shapes, one_pass = forward_shapes(adapter_pair.after, lambda: generate_rows(adapter_pair, rows, settings))
    two_shapes, two_passes = forward_shapes(
        adapter_pair.after, lambda: generate_rows(adapter_pair, rows, settings, strategy=Strategy(one_pass=False))
    )

    assert by_key(one_pass) == by_key(two_passes)
    assert len(two_shapes) == 2 * len(one_shapes)  # the base weights are read once per step, not twice
    assert [rows for rows, tokens in one_shapes if tokens == 1] == [2 * len(rows)] * (settings.max_new_tokens - 1)
    assert CONTINUOUS.one_pass


def test_a_full_fine_tune_pair_runs_two_models(tiny_pair_dirs: tuple[Path, Path]) -> None:
    pair = load_model_pair(*map(str, tiny_pair_dirs))
    rows = mixed_rows(3)
    shapes, _ = forward_shapes(pair.before, lambda: generate_rows(pair, rows, GenerationSettings(max_new_tokens=3)))
    assert [rows for rows, _ in shapes] == [len(PROMPTS[:3]), 3, 3]  # the before-model runs on its own


OWN_SETTINGS = [  # rows of different requests in one batch: each keeps its own settings
    GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5, stop_at_eos=True),
    GenerationSettings(max_new_tokens=4, temperature=0.0),
    GenerationSettings(max_new_tokens=9, temperature=0.7, top_p=0.8, seed=2),
]


def test_rows_with_their_own_settings_share_a_batch_and_get_their_lone_completions(ending_pair: ModelPair) -> None:
    rows = [Row(r.prompt_index, r.prompt, r.alpha, r.sample_index, OWN_SETTINGS[i % 3], tag=i)
            for i, r in enumerate(mixed_rows(18))]
    together: list[Completion] = []
    ContinuousBatcher(ending_pair, GenerationSettings(), batch_size=5).run(RowList(rows, together.extend))
    alone = [generate_batch(ending_pair, [row], row.settings)[0] for row in rows]

    assert sorted(together, key=lambda c: c.tag) == alone
    # The greedy request stops at its own max_new_tokens while others in the batch run longer.
    assert max(c.tokens for c in together if c.tag % 3 == 1) <= 4 < max(c.tokens for c in together)


class CancellingSource(RowList):
    """Drops the running rows of sample 1 after the first check, as a cancelled request's rows are."""

    def cancelled(self, rows: list[Row]) -> list[bool]:
        self.checks = getattr(self, "checks", 0) + 1
        return [self.checks > 1 and row.tag == "cancel me" for row in rows]


def test_a_cancelled_requests_rows_leave_the_batch_and_the_others_run_on(ending_pair: ModelPair) -> None:
    settings = GenerationSettings(max_new_tokens=20, temperature=1.0, seed=1)
    rows = [Row(r.prompt_index, r.prompt, r.alpha, r.sample_index, tag="cancel me" if i % 2 else "keep")
            for i, r in enumerate(mixed_rows(6))]
    completions: list[Completion] = []
    ContinuousBatcher(ending_pair, settings, batch_size=6).run(CancellingSource(rows, completions.extend))

    assert {c.tag for c in completions} == {"keep"} and len(completions) == 3
    assert completions == [c for c in generate_rows(ending_pair, rows, settings) if c.tag == "keep"]


class UrgentAfterStart(RowList):
    """A full batch, then one row a client waits for, arriving as the batch starts: it starts whatever the room."""

    def __init__(self, rows: list[Row], late: Row, on_completions) -> None:
        super().__init__(rows, on_completions)
        self.late: Row | None = late

    def take(self, count: int) -> list[Row]:
        if self.urgent():
            self.late, late = None, self.late
            return [late]
        return super().take(count)

    def urgent(self) -> bool:
        return self.late is not None and not self.pending  # it arrives once the batch has started


def test_an_urgent_row_joins_a_full_batch_at_the_next_step(ending_pair: ModelPair) -> None:
    settings = GenerationSettings(max_new_tokens=20, temperature=1.0, seed=3)  # no EOS: nobody leaves early
    rows, late = mixed_rows(8), Row(0, PROMPTS[0], 1.0, 99, tag="late")
    completions: list[Completion] = []
    source = UrgentAfterStart(rows, late, completions.extend)
    shapes, _ = forward_shapes(
        ending_pair.after, lambda: ContinuousBatcher(ending_pair, settings, batch_size=8).run(source)
    )

    assert max(rows for rows, tokens in shapes if tokens == 1) == 9  # it joined the full batch, beside all 8
    # It joined one step after the others started, so it ended one step after them: it never waited for a slot.
    assert [c.tag for c in completions] == [None] * 8 + ["late"]
    assert completions[-1] == generate_batch(ending_pair, [late], settings)[0]
    assert by_key(completions[:-1]) == by_key(generate_batch(ending_pair, rows, settings))
