"""Stand-in pairs: a real model's architecture with random weights, for timing where its weights cannot go.

A device check runs on a machine that reaches no model hub and receives at most a few tens of
megabytes, so a real checkpoint (the smol base alone is 540 MB) cannot travel there. When every row
generates a fixed number of tokens, decoding time depends on the shapes (layers, widths, heads,
vocabulary, the adapter's rank and target modules) and not on the weights' values, so a random-init
model of the same architecture times the same. Its completions are noise: never use one for science.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lda_core.models import ModelPair, prepare_tokenizer

# Llama-3-8B's body (32 layers of width 4096, grouped-query attention with 8 KV heads, a 14336-wide MLP).
# The vocabulary stays the tokenizer's, so every id the stand-in samples decodes.
LLAMA3_8B_BODY = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class LoraShape:
    """What an adapter costs per token: its rank and the modules it wraps (its scale costs nothing)."""

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


@dataclass(frozen=True)
class StandinSpec:
    """The config and tokenizer of `base_dir`, with `overrides` applied, and a LoRA of `lora`'s shape."""

    base_dir: Path
    overrides: dict = field(default_factory=dict)
    lora: LoraShape = LoraShape()


def standin_pair(spec: StandinSpec, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelPair:
    """A base + LoRA pair, random-init directly on `device` (an 8B body never passes through host memory)."""
    from peft import LoraConfig, get_peft_model

    config = AutoConfig.from_pretrained(spec.base_dir)
    config.update(spec.overrides)
    torch.manual_seed(seed)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(config, dtype=dtype)
    lora = LoraConfig(r=spec.lora.rank, lora_alpha=spec.lora.alpha, target_modules=list(spec.lora.target_modules),
                      lora_dropout=0.0, init_lora_weights=False)  # nonzero B: the adapter changes the logits
    adapted = get_peft_model(base, lora).to(device=device, dtype=dtype).eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(spec.base_dir))
    return ModelPair(adapted, adapted, tokenizer, uses_adapter=True)


def parameter_count(pair: ModelPair) -> int:
    """Weights the pair holds (the base once, plus the adapter)."""
    return sum(parameter.numel() for parameter in pair.after.parameters())
