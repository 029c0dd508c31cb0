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
    difference = after - logits_before.float()
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(device=after.device, dtype=torch.float32)
    # The difference is finite exactly where both logits are (and it did not overflow).
    amplified = torch.where(torch.isfinite(difference), after + alpha * difference, after)
    # nan_to_num's default would also turn -inf into a finite number: say neginf explicitly.
    return torch.nan_to_num(
        amplified, nan=float("-inf"), posinf=torch.finfo(torch.float32).max, neginf=float("-inf")
    )
