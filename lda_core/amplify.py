"""The LDA formula, in one place: every caller amplifies through `amplified_logits`."""

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
    after = logits_after.float()
    before = logits_before.float()
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(device=after.device, dtype=torch.float32)
    both_finite = torch.isfinite(after) & torch.isfinite(before)
    amplified = torch.where(both_finite, after + alpha * (after - before), after)
    return torch.nan_to_num(amplified, nan=float("-inf"), posinf=torch.finfo(torch.float32).max)
