"""Sampling and amplification on plain tensors: shapes, top-p, greedy, and the NaN guard."""

import math

import pytest
import torch

from lda_core.amplify import amplified_logits
from lda_core.sampling import NoSampleableTokenError, sample_tokens, top_p_filter

INF = float("inf")


def test_batched_logits_give_one_token_per_row() -> None:
    logits = torch.randn(4, 32000)  # batch_size=4, vocab_size=32000
    tokens = sample_tokens(logits, temperature=1.0, top_p=1.0)
    assert tokens.shape == (4,)


def test_one_dimensional_logits_give_a_scalar_token() -> None:
    token = sample_tokens(torch.randn(50), temperature=1.0, top_p=0.9)
    assert token.shape == ()
    assert 0 <= int(token) < 50


def test_greedy_picks_the_largest_logit_of_each_row() -> None:
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    assert sample_tokens(logits, temperature=0).tolist() == [1, 0]


def test_top_p_on_a_batch_equals_top_p_row_by_row() -> None:
    torch.manual_seed(0)
    logits = torch.randn(8, 100) * torch.linspace(0.5, 6.0, 8)[:, None]  # flat to peaked rows
    batched = top_p_filter(logits, 0.8)
    row_by_row = torch.stack([top_p_filter(row, 0.8) for row in logits])
    assert torch.equal(batched, row_by_row)


@pytest.mark.parametrize(("top_p", "kept"), [(0.4, 1), (0.75, 2), (0.85, 3), (0.99, 4)])
def test_top_p_keeps_the_smallest_set_that_reaches_p(top_p: float, kept: int) -> None:
    logits = torch.tensor([0.15, 0.5, 0.05, 0.3]).log()
    by_falling_probability = [1, 3, 0, 2]
    filtered = top_p_filter(logits, top_p)
    assert set(torch.isfinite(filtered).nonzero().flatten().tolist()) == set(by_falling_probability[:kept])


@pytest.mark.parametrize("top_p", [0.0, 1e-6])
def test_top_p_always_keeps_the_most_likely_token(top_p: float) -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0], [9.0, 0.0, 8.0]])
    assert sample_tokens(logits, temperature=1.0, top_p=top_p, uniforms=torch.tensor([0.99, 0.99])).tolist() == [1, 0]


def test_sampling_inverts_the_cdf_at_the_given_uniforms() -> None:
    logits = torch.tensor([0.25, 0.25, 0.5]).log().expand(4, 3)
    uniforms = torch.tensor([0.1, 0.3, 0.6, 0.99])
    assert sample_tokens(logits, temperature=1.0, uniforms=uniforms).tolist() == [0, 1, 2, 2]


def test_sampling_never_picks_a_forbidden_token() -> None:
    logits = torch.tensor([-INF, 0.0, -INF, 1.0, -INF]).expand(6, 5)
    uniforms = torch.tensor([0.0, 1e-12, 0.3, 0.5, 0.9, 1 - 1e-12])
    assert set(sample_tokens(logits, temperature=0.7, uniforms=uniforms).tolist()) <= {1, 3}


def test_amplified_logits_follow_the_formula_with_one_alpha_per_row() -> None:
    after = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=torch.bfloat16)
    before = torch.tensor([[0.0, 4.0], [0.0, 4.0]], dtype=torch.bfloat16)
    amplified = amplified_logits(after, before, torch.tensor([[2.0], [-1.0]]))
    assert amplified.dtype == torch.float32
    assert amplified.tolist() == [[3.0, -2.0], [0.0, 4.0]]  # alpha -1 gives the before-model back


@pytest.mark.parametrize("alpha", [2.0, -1.0])
def test_token_both_models_forbid_stays_forbidden(alpha: float) -> None:
    after = torch.tensor([-INF, 1.0, 0.0])
    before = torch.tensor([-INF, 0.0, 1.0])
    amplified = amplified_logits(after, before, alpha)
    assert amplified[0] == -INF
    assert not amplified.isnan().any()


@pytest.mark.parametrize("alpha", [2.0, -1.0])
def test_token_one_model_forbids_gets_no_amplification(alpha: float) -> None:
    after = torch.tensor([-INF, 1.5, 0.0])
    before = torch.tensor([0.0, -INF, 1.0])
    amplified = amplified_logits(after, before, alpha)
    assert amplified[0] == -INF  # the after-model forbids it: stays forbidden
    assert amplified[1] == 1.5  # only the before-model forbids it: no ratio, the after logit as is
    assert amplified[2] == 0.0 + alpha * (0.0 - 1.0)


@pytest.mark.parametrize("alpha", [2.0, -1.0])
def test_nan_logits_never_reach_the_sampler(alpha: float) -> None:
    nan = float("nan")
    after = torch.tensor([nan, 1.0, INF, 0.5])
    before = torch.tensor([0.0, nan, 0.0, 0.5])
    amplified = amplified_logits(after, before, alpha)
    assert not amplified.isnan().any()
    assert amplified[0] == -INF and amplified[1] == 1.0 and math.isfinite(amplified[2])
    assert int(sample_tokens(amplified, temperature=1.0)) in {1, 2, 3}


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_sampler_refuses_a_row_with_nothing_to_sample(temperature: float) -> None:
    logits = torch.tensor([[0.0, 1.0], [-INF, -INF]])
    with pytest.raises(NoSampleableTokenError):
        sample_tokens(logits, temperature=temperature)
