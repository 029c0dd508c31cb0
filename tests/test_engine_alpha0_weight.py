"""Each sampled completion's alpha-0 log weight: log p_0(text) - log p_alpha(text), summed per token, or, for a
row with mixture alphas, log p_0(text) - log of the mean of p_j(text) over them.

Checked against a second computation (explain's teacher-forced forward) and by what it is for: the
mean of hit * weight over amplified samples (of one alpha, or of every alpha of a mixture) estimates
alpha 0's rate of an event, here one whose alpha-0 probability is computed exactly by enumerating
every first token.
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


def _rows(alpha: float, count: int, settings: GenerationSettings | None = None,
          mixture: tuple[float, ...] = ()) -> list[Row]:
    return [Row(0, PROMPT, alpha, index, settings, mixture_alphas=mixture) for index in range(count)]


def _explained_log_probability(pair: ModelPair, alpha: float, completion, settings: GenerationSettings) -> float:
    """log p_alpha(completion) from explain's teacher-forced forward: its tokens' sampled log-probabilities."""
    tokens = explain_tokens(pair, Row(0, PROMPT, alpha, completion.sample_index), completion.token_ids, settings)
    return sum(token.logprob_sampled for token in tokens)


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


def test_a_mixture_weight_divides_by_the_mean_probability_over_the_mixture(tiny_pair: ModelPair) -> None:
    mixture = (0.5, 1.0, 2.0)
    completions = generate_rows(tiny_pair, _rows(2.0, 10, mixture=mixture), SAMPLED, batch_size=4)
    alone = generate_rows(tiny_pair, _rows(2.0, 10), SAMPLED, batch_size=4)
    assert [c.token_ids for c in completions] == [c.token_ids for c in alone], "the mixture changes no draw"
    whole = [c for c in completions if c.finish_reason == "length"]
    assert len(whole) >= 6
    for completion in whole:
        at_zero = _explained_log_probability(tiny_pair, 0.0, completion, SAMPLED)
        in_mixture = [_explained_log_probability(tiny_pair, alpha, completion, SAMPLED) for alpha in mixture]
        expected = at_zero - math.log(sum(math.exp(value) for value in in_mixture) / len(mixture))
        assert completion.log_weight == pytest.approx(expected, abs=1e-3)
    own = {c.sample_index: c.log_weight for c in alone}
    assert any(abs(c.log_weight - own[c.sample_index]) > 0.1 for c in whole), "and it is not the own-alpha weight"


def test_alpha_zero_rows_weigh_one_and_greedy_rows_carry_no_weight(tiny_pair: ModelPair) -> None:
    greedy = GenerationSettings(max_new_tokens=4, temperature=0.0)
    rows = _rows(0.0, 4) + [Row(0, PROMPT, 1.0, 9, greedy)]
    completions = generate_rows(tiny_pair, rows, SAMPLED, batch_size=8)
    assert [c.log_weight for c in completions if c.alpha == 0.0] == [0.0] * 4
    assert [c.log_weight for c in completions if c.alpha == 1.0] == [None]


def test_a_rows_weight_is_the_same_alone_and_in_a_batch(tiny_pair: ModelPair) -> None:
    rows = _rows(1.5, 6) + _rows(0.5, 6) + _rows(1.0, 4, mixture=(0.5, 1.0, 1.5))
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


def test_pooled_samples_of_a_mixture_estimate_the_alpha0_rate_of_an_event(tiny_pair: ModelPair) -> None:
    """The balance heuristic: each alpha's mean of hit * weight against the mixture, averaged over the alphas."""
    settings = GenerationSettings(max_new_tokens=2, temperature=1.0, seed=5)
    mixture = (0.25, 0.75)
    probe = generate_rows(tiny_pair, _rows(0.75, 400), settings, batch_size=200)
    counts = torch.bincount(torch.tensor([c.token_ids[1] for c in probe if len(c.token_ids) == 2]),
                            minlength=len(tiny_pair.tokenizer))
    event = counts.topk(3).indices.tolist()
    exact = _exact_alpha0_probability(tiny_pair, torch.tensor(event))
    terms_by_alpha = []
    for alpha in mixture:
        samples = generate_rows(tiny_pair, _rows(alpha, 2000, mixture=mixture), settings, batch_size=500)
        terms_by_alpha.append(torch.tensor(
            [math.exp(c.log_weight) if len(c.token_ids) == 2 and c.token_ids[1] in event else 0.0 for c in samples],
            dtype=torch.float64))
    estimate = sum(float(terms.mean()) for terms in terms_by_alpha) / len(mixture)
    standard_error = math.sqrt(sum(float(terms.var()) / len(terms) for terms in terms_by_alpha)) / len(mixture)
    assert abs(estimate - exact) < 4 * standard_error, (estimate, standard_error, exact)
    assert standard_error < exact / 4, "and the estimate precise enough to tell"
