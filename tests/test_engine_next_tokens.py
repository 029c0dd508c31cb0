"""`next_tokens` alone: amplify then sample one token per row, on hand-made logits and no model."""

import torch

from lda_core.generate import GenerationSettings, next_tokens

GREEDY = GenerationSettings(temperature=0.0)
SAMPLED = GenerationSettings(temperature=1.0)


def _alphas(*values: float) -> torch.Tensor:
    return torch.tensor([[value] for value in values], dtype=torch.float32)  # [rows, 1]


def _keys(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)  # [rows]


def test_greedy_takes_each_rows_own_alpha() -> None:
    # Token 0 wins for the after-model alone; token 1 grew from before to after, so amplifying flips it.
    after = torch.tensor([[1.0, 0.9]]).repeat(4, 1)
    before = torch.tensor([[1.0, 0.0]]).repeat(4, 1)
    tokens = next_tokens(after, before, _alphas(0.0, 1.0, 0.1, 2.0), _keys(1, 2, 3, 4), 0, GREEDY)
    assert tokens.dtype == torch.long
    assert tokens.tolist() == [0, 1, 0, 1]


def test_greedy_is_the_argmax_of_the_amplified_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    after, before = torch.randn(2, 6, 40, generator=generator)
    alpha_values = [0.0, 0.5, 1.0, 2.0, 4.0, -1.0]
    expected = [int((a + alpha * (a - b)).argmax()) for a, b, alpha in zip(after, before, alpha_values, strict=True)]
    tokens = next_tokens(after, before, _alphas(*alpha_values), _keys(*range(6)), 3, GREEDY)
    assert tokens.tolist() == expected
    assert tokens.tolist() != after.argmax(dim=-1).tolist(), "the alphas must change some choice"


def test_a_rows_draw_depends_only_on_its_key_and_step() -> None:
    generator = torch.Generator().manual_seed(1)
    after, before = torch.randn(2, 5, 30, generator=generator)
    alphas = _alphas(0.0, 1.0, 2.0, 1.0, 0.5)
    keys = _keys(11, 22, 33, 44, 55)
    batch = next_tokens(after, before, alphas, keys, 7, SAMPLED)

    order = torch.tensor([3, 0, 4, 1])  # another batch: fewer rows, in another order
    assert next_tokens(after[order], before[order], alphas[order], keys[order], 7, SAMPLED).tolist() == [
        batch[i] for i in order.tolist()
    ]
    for i in range(5):
        alone = next_tokens(after[i : i + 1], before[i : i + 1], alphas[i : i + 1], keys[i : i + 1], 7, SAMPLED)
        assert alone.tolist() == [batch[i]]


def test_keys_and_steps_give_different_draws() -> None:
    rows = 400
    flat = torch.zeros(rows, 8)  # every token equally likely, whatever alpha
    keys = torch.arange(rows, dtype=torch.int64) * 7919 + 5
    alphas = torch.ones(rows, 1)
    step0 = next_tokens(flat, flat, alphas, keys, 0, SAMPLED)
    step1 = next_tokens(flat, flat, alphas, keys, 1, SAMPLED)
    assert torch.equal(step0, next_tokens(flat, flat, alphas, keys, 0, SAMPLED))
    for tokens in (step0, step1):
        counts = torch.bincount(tokens, minlength=8)
        assert counts.min() >= 25, f"keys should spread over every token: {counts.tolist()}"
    # Independent draws agree for about 1 key in 8; the same draw twice would agree for all.
    assert (step0 == step1).float().mean() < 0.3


def test_a_token_both_models_forbid_is_never_chosen() -> None:
    rows, vocab = 300, 6
    generator = torch.Generator().manual_seed(2)
    after, before = torch.randn(2, rows, vocab, generator=generator)
    alphas = torch.tensor([0.0, 1.0, 4.0, -0.5]).repeat(rows // 4)[:, None]
    keys = torch.arange(rows, dtype=torch.int64)
    hot = GenerationSettings(temperature=50.0)  # nearly uniform: every allowed token gets drawn
    for forbidden in (0, vocab - 1):  # the first and the last token of the cumulative distribution
        assert (next_tokens(after, before, alphas, keys, 0, hot) == forbidden).any(), "allowed, it is drawn"
        after_f, before_f = after.clone(), before.clone()
        after_f[:, forbidden] = float("-inf")
        before_f[:, forbidden] = float("-inf")
        for settings in (SAMPLED, hot, GREEDY):
            tokens = next_tokens(after_f, before_f, alphas, keys, 0, settings)
            assert not (tokens == forbidden).any()
        assert next_tokens(after_f, before_f, alphas, keys, 0, hot).unique().numel() == vocab - 1
