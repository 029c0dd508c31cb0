"""Turning logits into tokens: temperature, top-p, greedy. Works on `[vocab]` and `[batch, vocab]`."""

import torch


class NoSampleableTokenError(ValueError):
    """Every logit of a row is -inf (or NaN): there is nothing to sample."""


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the smallest set whose probability reaches `top_p`.

    The most likely token is always kept, so a row never loses all its tokens.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    # Drop a token once the tokens before it already reach top_p.
    drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
    drop = drop_sorted.scatter(-1, sorted_indices, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """Probabilities after temperature and top-p, in float32. Refuses rows with nothing to sample."""
    logits = torch.nan_to_num(logits.float(), nan=float("-inf"))
    if not torch.isfinite(logits.amax(dim=-1)).all():
        raise NoSampleableTokenError("a row of logits has no finite value to sample from")
    logits = top_p_filter(logits / max(temperature, 1e-5), top_p)
    return torch.softmax(logits, dim=-1)


def sample_from_uniforms(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: row i takes the first token whose cumulative probability exceeds u_i."""
    cdf = probs.double().cumsum(dim=-1)  # [batch, vocab]
    targets = (uniforms.to(cdf) * cdf[..., -1]).unsqueeze(-1)  # [batch, 1]
    tokens = torch.searchsorted(cdf, targets, right=True).squeeze(-1)
    return tokens.clamp_(max=probs.shape[-1] - 1)


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    uniforms: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one token per row: `[batch, vocab]` -> `[batch]`, `[vocab]` -> a 0-d tensor.

    Temperature 0 is greedy. `uniforms` (`[batch]`, in [0, 1)) makes the draw a pure function of
    the caller's random numbers; without it, `generator` (or torch's global one) supplies them.
    """
    batched = logits.unsqueeze(0) if logits.dim() == 1 else logits
    if temperature == 0:
        tokens = torch.nan_to_num(batched.float(), nan=float("-inf")).argmax(dim=-1)
    else:
        probs = logits_to_probs(batched, temperature, top_p)
        if uniforms is None:
            uniforms = torch.rand(probs.shape[0], generator=generator, device=probs.device)
        tokens = sample_from_uniforms(probs, uniforms.reshape(-1))
    return tokens[0] if logits.dim() == 1 else tokens
