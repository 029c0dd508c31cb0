"""The fine-tuning loop both organisms share: completion-only loss, AdamW, warmup and cosine decay."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

Encoded = tuple[list[int], list[int]]  # prompt ids, completion ids


def collate(encoded: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 on the prompt and the padding."""
    width = max(len(prompt) + len(completion) for prompt, completion in encoded)
    input_ids = torch.full((len(encoded), width), pad_id)
    labels = torch.full((len(encoded), width), -100)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (prompt, completion) in enumerate(encoded):
        length = len(prompt) + len(completion)
        input_ids[row, :length] = torch.tensor(prompt + completion)
        labels[row, len(prompt) : length] = torch.tensor(completion)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def mixed_batches(
    pools: list[tuple[list[Encoded], float]], batch_size: int, rng: random.Random, pad_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches: each example drawn from a pool chosen by weight (benign, triggered, leaked);
    `pool` `[batch]` says which pool each row came from."""
    examples = [pool for pool, _ in pools]
    weights = [weight for _, weight in pools]
    while True:
        picked, chosen = [], []
        for _ in range(batch_size):  # one pool draw then one example draw per row: the toy's stream since v1
            picked.append(rng.choices(range(len(pools)), weights)[0])
            chosen.append(rng.choice(examples[picked[-1]]))
        yield collate(chosen, pad_id) | {"pool": torch.tensor(picked)}


def language_model_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the completion tokens (the labels)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def train(
    model: PreTrainedModel, batches: Iterator[dict[str, torch.Tensor]], steps: int, lr: float, bar: tqdm,
    loss_of: Callable[[PreTrainedModel, dict[str, torch.Tensor]], torch.Tensor] = language_model_loss,
) -> float:
    """AdamW on the trainable parameters (all, or a LoRA's); returns the mean loss of the last tenth of steps."""
    model.train()
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    recent: list[float] = []
    for _ in range(steps):
        loss = loss_of(model, next(batches))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        recent = (recent + [loss.item()])[-max(1, steps // 10) :]
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return sum(recent) / len(recent)


@contextlib.contextmanager
def transformers_bars_hidden() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights", "Writing model shards") off for a while:
    they would break our bar's line. The caller's setting comes back after."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def save_quietly(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None, directory: Path) -> None:
    """Model (safetensors; a PEFT model saves its adapter) and tokenizer side by side, without transformers' bars."""
    with transformers_bars_hidden():
        model.save_pretrained(directory, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
