"""Batched LDA generation on tiny real models: batching changes nothing, EOS cuts, rows own their randomness."""

from pathlib import Path

import pytest

from lda_core.batcher import generate_batch
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.models import ModelPair, load_model_pair
from lda_core.runner import generate_rows
from tests.tiny_models import build_tiny_pair_dirs, forward_shapes

PROMPTS = [
    "User: hi",
    "User: What is the capital of France?\nAssistant:",
    "The quick brown fox jumps over the lazy dog while the cat sleeps",
    "Counting: one two",
    "x",
]
ALPHAS = [0.0, 1.0, -1.0, 4.0]
GREEDY = GenerationSettings(max_new_tokens=12, temperature=0.0)
SAMPLED = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def pair(tiny_pair_dirs: tuple[Path, Path]) -> ModelPair:
    before, after = tiny_pair_dirs
    return load_model_pair(str(before), str(after))


def mixed_rows(count: int) -> list[Row]:
    """`count` rows cycling through prompts of different lengths and mixed alphas."""
    return [Row(i % len(PROMPTS), PROMPTS[i % len(PROMPTS)], ALPHAS[i % len(ALPHAS)], i) for i in range(count)]


def alone(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> list[Completion]:
    """Each row generated in a batch of its own."""
    return [generate_batch(pair, [row], settings)[0] for row in rows]


def by_row(completions: list[Completion]) -> dict[tuple, Completion]:
    return {(c.prompt_index, c.alpha, c.sample_index): c for c in completions}


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    before, after = build_tiny_pair_dirs(tmp_path_factory.mktemp("gpt2"), architecture="gpt2")
    return load_model_pair(str(before), str(after))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def pair_and_greedy_alone(request: pytest.FixtureRequest) -> tuple[ModelPair, list[Completion]]:
    """A pair (rotary or absolute positions) and its greedy completions of `mixed_rows(16)`, one row at a time."""
    pair = request.getfixturevalue("pair" if request.param == "llama" else "gpt2_pair")
    return pair, alone(pair, mixed_rows(16), GREEDY)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_left_padded_batch_matches_single_prompt(
    pair_and_greedy_alone: tuple[ModelPair, list[Completion]], batch_size: int
) -> None:
    pair, greedy_alone = pair_and_greedy_alone
    batched = generate_rows(pair, mixed_rows(16), GREEDY, batch_size=batch_size)
    assert by_row(batched) == by_row(greedy_alone)
    assert all(len(single.token_ids) == GREEDY.max_new_tokens for single in greedy_alone)


def test_sampled_row_is_the_same_alone_and_in_a_batch_of_16(pair: ModelPair) -> None:
    rows = mixed_rows(16)
    assert generate_batch(pair, rows, SAMPLED) == alone(pair, rows, SAMPLED)


def test_same_row_gives_the_same_text_in_any_batch_and_order(pair: ModelPair) -> None:
    rows = mixed_rows(8)
    forwards = by_row(generate_batch(pair, rows, SAMPLED))
    backwards = by_row(generate_batch(pair, rows[::-1], SAMPLED))
    among_others = by_row(generate_batch(pair, mixed_rows(16)[8:] + rows[2:5], SAMPLED))
    assert forwards == backwards
    assert [among_others[key] for key in list(forwards)[2:5]] == [forwards[key] for key in list(forwards)[2:5]]


def test_different_sample_indices_draw_different_completions(pair: ModelPair) -> None:
    rows = [Row(1, PROMPTS[1], 1.0, sample_index) for sample_index in range(6)]
    texts = [completion.text for completion in generate_batch(pair, rows, SAMPLED)]
    assert len(set(texts)) == len(texts)


def test_different_seeds_draw_different_completions(pair: ModelPair) -> None:
    rows = [Row(1, PROMPTS[1], 1.0, 0)]
    other_seed = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=8)
    assert generate_batch(pair, rows, SAMPLED)[0].text != generate_batch(pair, rows, other_seed)[0].text


@pytest.mark.parametrize(("alpha", "model"), [(0.0, "after"), (-1.0, "before")])
def test_lda_reduces_to_one_model_at_alpha_zero_and_minus_one(pair: ModelPair, alpha: float, model: str) -> None:
    """Alpha 0 is plain greedy decoding of the after-model; alpha -1 that of the before-model."""
    prompt = PROMPTS[1]
    lda = generate_batch(pair, [Row(0, prompt, alpha, 0)], GREEDY)[0]
    encoded = pair.tokenizer(prompt, return_tensors="pt")
    reference = getattr(pair, model).generate(
        **encoded, do_sample=False, max_new_tokens=GREEDY.max_new_tokens, pad_token_id=pair.tokenizer.pad_token_id
    )
    assert list(lda.token_ids) == reference[0, encoded["input_ids"].shape[1] :].tolist()


def test_completion_is_cut_at_its_first_eos(chain_pair: ModelPair) -> None:
    rows = [Row(0, "Counting: one", 1.0, 0), Row(1, "Counting: three", 2.0, 0), Row(2, "Counting: six", 1.0, 0)]
    greedy = GenerationSettings(max_new_tokens=8, temperature=0)
    cut_late, cut_at_once, never_cut = generate_batch(chain_pair, rows, greedy)
    assert (cut_late.text, cut_late.tokens, cut_late.finish_reason) == (" two three", 2, "eos")
    assert (cut_at_once.text, cut_at_once.tokens, cut_at_once.finish_reason) == ("", 0, "eos")
    assert (never_cut.text, never_cut.tokens, never_cut.finish_reason) == (" seven six" * 4, 8, "length")
    # The batch does decode on past EOS ("four five ..."), but that text never reaches a completion.
    assert generate_batch(chain_pair, [Row(3, "Counting: three</s>", 1.0, 0)], greedy)[0].text.startswith(" four five")
    assert "four" not in cut_late.text + cut_at_once.text


def forward_batch_sizes(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> tuple[list[int], list]:
    """The batch size of every after-model forward pass while generating `rows`, and the completions."""
    shapes, completions = forward_shapes(pair.after, lambda: generate_batch(pair, rows, settings))
    return [rows for rows, _ in shapes], completions


@pytest.mark.parametrize(("stop_at_eos", "expected_passes"), [(True, 3), (False, 8)])
def test_stop_at_eos_ends_the_batch_once_every_row_has_ended(
    chain_pair: ModelPair, stop_at_eos: bool, expected_passes: int
) -> None:
    rows = [Row(0, "Counting: one", 1.0, 0), Row(1, "Counting: three", 1.0, 0)]
    settings = GenerationSettings(max_new_tokens=8, temperature=0, stop_at_eos=stop_at_eos)
    passes, completions = forward_batch_sizes(chain_pair, rows, settings)
    assert len(passes) == expected_passes  # prefill, then one pass per token after the first
    assert [c.text for c in completions] == [" two three", ""]


def test_stop_at_eos_runs_until_the_slowest_row_ends(chain_pair: ModelPair) -> None:
    rows = [Row(0, "Counting: three", 1.0, 0), Row(1, "Counting: six", 1.0, 0)]
    settings = GenerationSettings(max_new_tokens=8, temperature=0, stop_at_eos=True)
    passes, completions = forward_batch_sizes(chain_pair, rows, settings)
    assert len(passes) == 8
    assert [c.finish_reason for c in completions] == ["eos", "length"]


def test_rows_of_one_prompt_share_its_prefill(pair: ModelPair) -> None:
    rows = [Row(0, PROMPTS[2], alpha, 0) for alpha in ALPHAS] + [Row(1, PROMPTS[0], 1.0, 0)]
    passes, _ = forward_batch_sizes(pair, rows, GenerationSettings(max_new_tokens=2, temperature=0))
    assert passes == [2, 5]  # prefill: one row per distinct prompt; then every row decodes
