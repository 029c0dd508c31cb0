"""Why did this completion come out? Per token: how likely each model found it, how likely the amplified
distribution that was actually sampled made it, and how far fine-tuning moved its logit.

The completion is generated first, as any row is (same prompt, alpha and per-row random stream, so it
is the stored one); then one teacher-forced forward of each model over the prompt and the tokens
gives the logits at every step at once, instead of carrying them through the decoding loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lda_core.amplify import amplified_logits
from lda_core.generate import GenerationSettings, Row
from lda_core.models import ModelPair
from lda_core.sampling import logits_to_probs


@dataclass(frozen=True)
class TokenExplanation:
    token: str  # the token's own text (decoded alone)
    token_id: int
    logprob_before: float  # log-probability under the before-model (temperature 1, no top-p)
    logprob_after: float  # under the after-model
    # Under the distribution the token was drawn from (amplified, temperature, top-p); None where float noise
    # between the replay's forward and the decoding loop's puts the token just outside it (a greedy near-tie).
    logprob_sampled: float | None
    logit_difference: float  # after-minus-before logit of this token: what amplification multiplies


@torch.inference_mode()
def explain_tokens(
    pair: ModelPair, row: Row, token_ids: tuple[int, ...], settings: GenerationSettings
) -> list[TokenExplanation]:
    """Explain each of `token_ids`, the tokens `row` generated (its EOS, if it ended on one, excluded)."""
    if not token_ids:
        return []
    prompt = pair.tokenizer(row.prompt, return_tensors="pt")["input_ids"].to(pair.device)
    fed = torch.cat([prompt, torch.tensor([token_ids[:-1]], dtype=prompt.dtype, device=pair.device)], dim=1)
    first = prompt.shape[1] - 1  # the logits at the prompt's last position chose the first token
    after = pair.after(input_ids=fed).logits[0, first:].float()
    with pair.before_context():
        before = pair.before(input_ids=fed).logits[0, first:].float()
    chosen = torch.tensor(token_ids, device=pair.device)[:, None]
    sampled = logits_to_probs(amplified_logits(after, before, row.alpha), settings.temperature, settings.top_p)

    def of(values: torch.Tensor) -> list[float | None]:
        return [value if math.isfinite(value) else None for value in values.gather(-1, chosen)[:, 0].tolist()]

    columns = zip(
        of(torch.log_softmax(before, dim=-1)), of(torch.log_softmax(after, dim=-1)),
        of(torch.log(sampled)), of(after - before), strict=True,
    )
    return [
        TokenExplanation(pair.tokenizer.decode([token_id]), token_id, *values)
        for token_id, values in zip(token_ids, columns, strict=True)
    ]
