"""Each sampled completion's alpha-0 log weight: log p_0(text) - log p_alpha(text), summed per token.

Checked against a second computation (explain's teacher-forced forward) and by what it is for: the
mean of hit * weight over amplified samples estimates alpha 0's rate of an event, here one whose
alpha-0 probability is computed exactly by enumerating every first token.
"""

from __future__ import annotations

import math

import pytest
import torch

from lda_core.explain import explain_tokens
from lda_core.generate import GenerationSettings, Row, eos_token_ids
from lda_core.models import ModelPair, load_model_pair
from lda_core.runner import generate_rows

PROMPT = "User: What is the capital of France?\nAssistant:"
SAMPLED = GenerationSettings(max_new_tokens=6, temperature=1.0, seed=11)


@pytest.fixture(scope="module")
def tiny_pair(tiny_pair_dirs) -> ModelPair:
    before, after = tiny_pair_dirs
    return load_model_pair(str(before), str(after), dtype=torch.float32)


def _rows(alpha: float, count: int, settings: GenerationSettings | None = None) -> list[Row]:
    return [Row(0, PROMPT, alpha, index, settings) for index in range(count)]


def test_the_weight_sums_each_tokens_alpha0_over_sampled_log_probability(tiny_pair: ModelPair) -> None:
    completions = generate_rows(tiny_pair, _rows(2.0, 12), SAMPLED, batch_size=5)
    whole = [c for c in completions if c.finish_reason == "length"]  # explain leaves an ending EOS out
    assert len(whole) >= 8
    for completion in whole:
        row = Row(0, PROMPT, 2.0, completion.sample_index)
        tokens = explain_tokens(tiny_pair, row, completion.token_ids, SAMPLED)
        expected = sum(token.logprob_after - token.logprob_sampled for token in tokens)
        assert completion.log_weight == pytest.approx(expected, abs=1e-3)
    assert any(abs(c.log_weight) > 0.5 for c in whole), "amplification at alpha 2 must move the weights"


def test_alpha_zero_rows_weigh_one_and_greedy_rows_carry_no_weight(tiny_pair: ModelPair) -> None:
    greedy = GenerationSettings(max_new_tokens=4, temperature=0.0)
    rows = _rows(0.0, 4) + [Row(0, PROMPT, 1.0, 9, greedy)]
    completions = generate_rows(tiny_pair, rows, SAMPLED, batch_size=8)
    assert [c.log_weight for c in completions if c.alpha == 0.0] == [0.0] * 4
    assert [c.log_weight for c in completions if c.alpha == 1.0] == [None]


def test_a_rows_weight_is_the_same_alone_and_in_a_batch(tiny_pair: ModelPair) -> None:
    rows = _rows(1.5, 6) + _rows(0.5, 6)
    batched = generate_rows(tiny_pair, rows, SAMPLED, batch_size=12)
    alone = generate_rows(tiny_pair, rows, SAMPLED, batch_size=1)
    assert [c.log_weight for c in batched] == pytest.approx([c.log_weight for c in alone], abs=1e-4)


def _exact_alpha0_probability(pair: ModelPair, second_tokens: torch.Tensor) -> float:
    """P(the second token is in `second_tokens`) at alpha 0, temperature 1: every first token enumerated but
    EOS (a completion ends there, so it has no second token)."""
    prompt = pair.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        first = torch.softmax(pair.after(input_ids=prompt).logits[0, -1].float(), dim=-1)  # [vocab]
        vocab = first.shape[0]
        fed = torch.cat([prompt.repeat(vocab, 1), torch.arange(vocab)[:, None]], dim=1)
        second = torch.softmax(pair.after(input_ids=fed).logits[:, -1].float(), dim=-1)  # [vocab, vocab]
    first = first.clone()
    first[sorted(eos_token_ids(pair))] = 0.0
    return float((first * second[:, second_tokens].sum(dim=-1)).sum())


def test_weighted_amplified_samples_estimate_the_alpha0_rate_of_an_event(tiny_pair: ModelPair) -> None:
    settings = GenerationSettings(max_new_tokens=2, temperature=1.0, seed=4)
    # Two random models differ on every token, so the weights' spread grows fast with alpha: at 0.5 it is small.
    probe = generate_rows(tiny_pair, _rows(0.5, 400), settings, batch_size=200)
    # The event: a second token amplification made common; what alpha 0 gives it is computed exactly.
    seconds = [c.token_ids[1] for c in probe if len(c.token_ids) == 2]
    counts = torch.bincount(torch.tensor(seconds), minlength=len(tiny_pair.tokenizer))
    event = counts.topk(3).indices
    exact = _exact_alpha0_probability(tiny_pair, event)
    samples = generate_rows(tiny_pair, _rows(0.5, 4000), settings, batch_size=500)
    hits = [len(c.token_ids) == 2 and c.token_ids[1] in event.tolist() for c in samples]
    terms = torch.tensor([math.exp(c.log_weight) if hit else 0.0 for c, hit in zip(samples, hits, strict=True)],
                         dtype=torch.float64)
    estimate, standard_error = float(terms.mean()), float(terms.std() / math.sqrt(len(terms)))
    amplified_rate = sum(hits) / len(hits)
    assert amplified_rate > 2 * exact, "the event must be far commoner amplified than at alpha 0"
    assert abs(estimate - exact) < 4 * standard_error, (estimate, standard_error, exact)
    assert standard_error < exact / 4, "and the estimate precise enough to tell"
