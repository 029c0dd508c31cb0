"""Turning logits into tokens: temperature, top-p, greedy. Works on `[vocab]` and `[batch, vocab]`."""

import torch


class NoSampleableTokenError(ValueError):
    """Every logit of a row is -inf (or NaN): there is nothing to sample."""


def _per_row(value: float | torch.Tensor, logits: torch.Tensor) -> float | torch.Tensor:
    """A setting as is, or a `[rows]` tensor of one per row shaped to broadcast over `[rows, vocab]`."""
    return value[:, None].to(logits) if isinstance(value, torch.Tensor) else value


def top_p_filter(logits: torch.Tensor, top_p: float | torch.Tensor) -> torch.Tensor:
    """Set to -inf every logit outside the smallest set whose probability reaches `top_p` (a float, or `[rows]`).

    The most likely token is always kept, so a row never loses all its tokens.
    """
    if bool((torch.as_tensor(top_p) >= 1.0).all()):
        return logits
    top_p = _per_row(top_p, logits)
    sorted_logits, sorted_indices = torch.sort(logits, descending=True, dim=-1)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    # Drop a token once the tokens before it already reach top_p (never the first: top_p 0 is greedy).
    drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, sorted_indices, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampleable_logits(logits: torch.Tensor) -> torch.Tensor:
    """Float32 logits with NaN forbidden (-inf); refuses a row where no token is left to pick."""
    # nan_to_num would also turn -inf into a finite number: keep forbidden tokens forbidden.
    logits = torch.nan_to_num(logits.float(), nan=float("-inf"), neginf=float("-inf"))
    if not torch.isfinite(logits.amax(dim=-1)).all():
        raise NoSampleableTokenError("a row of logits has no finite value to sample from")
    return logits


def sampling_logits(
    logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, top_p: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Logits after temperature and top-p (floats, or `[rows]` tensors), in float32: a softmax of them is
    the distribution sampled. Refuses rows with nothing to sample."""
    logits = sampleable_logits(logits)
    temperature = _per_row(temperature.clamp(min=1e-5), logits) if isinstance(temperature, torch.Tensor) else max(
        temperature, 1e-5
    )
    # Shifting each row's maximum to 0 first keeps a huge logit from overflowing to inf at low temperature.
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    return top_p_filter(logits, top_p)


def logits_to_probs(
    logits: torch.Tensor, temperature: float | torch.Tensor = 1.0, top_p: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """Probabilities after temperature and top-p (floats, or `[rows]` tensors), in float32."""
    return torch.softmax(sampling_logits(logits, temperature, top_p), dim=-1)


def sampled_log_probs(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float | torch.Tensor = 1.0,
    top_p: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """`[rows]`: each row's log-probability of its token in `tokens` under the distribution that
    temperature and top-p make of its logits (-inf for a token top-p leaves out)."""
    return _log_probs_of(sampling_logits(logits, temperature, top_p), tokens)


def _log_probs_of(shaped: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    # A gather and a logsumexp, not a log_softmax: no second [rows, vocab] tensor per decoding step.
    return shaped.gather(-1, tokens.reshape(-1, 1)).squeeze(-1) - torch.logsumexp(shaped, dim=-1)


def sample_from_uniforms(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: row i takes the first token whose cumulative probability exceeds u_i.

    The target is kept strictly below the total, so even u = 1 (or a product rounded up to the
    total) lands on a token with non-zero probability, never on a forbidden one at the end.
    """
    cdf = probs.double().cumsum(dim=-1)  # [batch, vocab]
    total = cdf[..., -1:]  # [batch, 1]
    below_total = torch.nextafter(total, torch.zeros_like(total))
    targets = torch.minimum(uniforms.to(cdf).unsqueeze(-1) * total, below_total)  # [batch, 1]
    return torch.searchsorted(cdf, targets, right=True).squeeze(-1)


def sample_tokens(
    logits: torch.Tensor,
    temperature: float | torch.Tensor = 1.0,
    top_p: float | torch.Tensor = 1.0,
    uniforms: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample one token per row: `[batch, vocab]` -> `[batch]`, `[vocab]` -> a 0-d tensor.

    Temperature 0 is greedy. `temperature` and `top_p` are one value for every row or `[batch]`
    tensors (rows of different requests in one batch). `uniforms` (`[batch]`, in [0, 1)) makes the
    draw a pure function of the caller's random numbers; without it, `generator` (or torch's global
    one) supplies them.
    """
    batched = logits.unsqueeze(0) if logits.dim() == 1 else logits
    tokens, _ = _draw(batched, temperature, top_p, uniforms, generator)
    return tokens[0] if logits.dim() == 1 else tokens


def sample_tokens_with_log_probs(
    logits: torch.Tensor, temperature: float | torch.Tensor, top_p: float | torch.Tensor, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sample_tokens` of `[rows, vocab]` logits, and each token's log-probability under the distribution it
    was drawn from (what `sampled_log_probs` gives, from the same shaped logits rather than shaping them again;
    meaningless for a greedy row)."""
    tokens, shaped = _draw(logits, temperature, top_p, uniforms, None)
    if shaped is None:  # every row greedy
        shaped = sampling_logits(logits, temperature, top_p)
    return tokens, _log_probs_of(shaped, tokens)


def _draw(
    batched: torch.Tensor, temperature: float | torch.Tensor, top_p: float | torch.Tensor,
    uniforms: torch.Tensor | None, generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One token per row of `[rows, vocab]`, and the shaped logits it was drawn from (None when every row is greedy)."""
    greedy = torch.as_tensor(temperature, device=batched.device) == 0
    if bool(greedy.all()):
        return sampleable_logits(batched).argmax(dim=-1), None
    shaped = sampling_logits(batched, temperature, top_p)
    probs = torch.softmax(shaped, dim=-1)
    if uniforms is None:
        uniforms = torch.rand(probs.shape[0], generator=generator, device=probs.device)
    tokens = sample_from_uniforms(probs, uniforms.reshape(-1))
    if bool(greedy.any()):  # some rows of the batch are greedy
        tokens = torch.where(greedy, sampleable_logits(batched).argmax(dim=-1), tokens)
    return tokens, shaped
