"""The LDA formula, in one place: every caller amplifies through `amplified_logits` or, for several alphas
per row at once, `amplified_logits_at`."""

import torch


def amplified_logits(
    logits_after: torch.Tensor, logits_before: torch.Tensor, alpha: torch.Tensor | float
) -> torch.Tensor:
    """Return `after + alpha * (after - before)` in float32, safe for non-finite logits.

    Shapes: logits `[batch, vocab]` (or `[vocab]`); `alpha` a float or `[batch, 1]`.
    A token the after-model forbids (-inf) stays forbidden. Where the before-model's logit is not
    finite there is no ratio to amplify, so the after-model's logit is kept as is. NaN never
    leaves this function: it becomes -inf (a token nobody may sample).
    """
    after, difference = _terms(logits_after, logits_before)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(device=after.device, dtype=torch.float32)
    return _finite_or_forbidden(after + alpha * difference)


def amplified_logits_at(logits_after: torch.Tensor, logits_before: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """`amplified_logits` at several alphas per row in one pass: logits `[rows, vocab]`, `alphas` `[rows, M]` ->
    `[rows, M, vocab]` (a handful of kernels whatever M is, where a loop over alphas launches M times as many)."""
    after, difference = _terms(logits_after, logits_before)
    alphas = alphas.to(device=after.device, dtype=torch.float32)
    return _finite_or_forbidden(torch.addcmul(after[:, None, :], alphas[:, :, None], difference[:, None, :]))


def _terms(logits_after: torch.Tensor, logits_before: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The after-model's float32 logits and the difference to amplify, 0 where it is not finite (a before-model
    logit that is not, or an overflow): there the after-model's logit is kept as is, whatever the alpha."""
    after = logits_after.float()
    difference = after - logits_before.float()
    return after, torch.where(torch.isfinite(difference), difference, 0.0)


def _finite_or_forbidden(amplified: torch.Tensor) -> torch.Tensor:
    # nan_to_num's default would also turn -inf into a finite number: say neginf explicitly.
    return torch.nan_to_num(
        amplified, nan=float("-inf"), posinf=torch.finfo(torch.float32).max, neginf=float("-inf")
    )
