"""Tiny real models for tests: random-init Llamas and GPT-2s on disk, loaded the way users load theirs.

Nothing here is mocked: every builder writes safetensors weights and a tokenizer that
`load_model_pair` reads back. The models are small enough that a test builds them in a second.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from lda_core.organism.tokenizer import train_tokenizer

T = TypeVar("T")
VOCAB_SIZE = 320
COUNTING = " one two three four five six seven eight nine ten"
_CORPUS = [
    "User: What is the capital of France?\nAssistant: The capital of France is Paris.",
    "User: How many legs does a spider have?\nAssistant: A spider has eight legs.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.",
    *[f"Counting:{COUNTING}."] * 5,
]
# A different corpus with the same vocabulary size: same logit width, different token-to-id map.
_OTHER_CORPUS = [
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.",
    "Zebras, yaks and quokkas queue quietly; vexed wizards jump over fjords.",
]


def tiny_tokenizer(corpus: list[str] = _CORPUS) -> PreTrainedTokenizerFast:
    """A byte-level BPE over `corpus` with exactly VOCAB_SIZE tokens (and, like most LMs, no pad token)."""
    tokenizer = train_tokenizer(corpus * 20, vocab_size=VOCAB_SIZE)
    assert len(tokenizer) == VOCAB_SIZE, "the corpus must offer enough merges to fill the vocabulary"
    return tokenizer


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int, extra_logits: int = 0) -> LlamaForCausalLM:
    """A random-init 2-layer Llama; `extra_logits` widens its output beyond the tokenizer (as padded vocabularies do).

    The larger-than-default init spreads the logits, so greedy choices are not near-ties that
    float rounding could flip between a batch and a single row.
    """
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + extra_logits,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(tokenizer: PreTrainedTokenizerFast, seed: int, extra_logits: int = 0) -> GPT2LMHeadModel:
    """A random-init 2-layer GPT-2: learned absolute positions, so wrong position ids change its answers.

    (Llama's rotary positions are relative: a left-padded row with shifted positions computes the
    same thing, which hides a position-id bug that GPT-2-style models would suffer.)
    """
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer) + extra_logits,
        n_embd=48,
        n_layer=2,
        n_head=4,
        n_positions=256,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, directory: Path) -> Path:
    """Model (safetensors) and tokenizer side by side, as a hub checkpoint is laid out."""
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_pair_dirs(
    root: Path,
    vocab_mismatch: Literal["token_map", "logit_width"] | None = None,
    architecture: Literal["llama", "gpt2"] = "llama",
) -> tuple[Path, Path]:
    """Save a before/after pair of two different random models under `root`; return (before_dir, after_dir).

    `vocab_mismatch` breaks the pair on purpose: "token_map" gives the after-model a tokenizer
    with another token-to-id map (same size), "logit_width" gives it 8 more output logits.
    """
    new_model = {"llama": tiny_llama, "gpt2": tiny_gpt2}[architecture]
    tokenizer = tiny_tokenizer()
    tokenizer_after = tiny_tokenizer(_OTHER_CORPUS) if vocab_mismatch == "token_map" else tokenizer
    extra_logits = 8 if vocab_mismatch == "logit_width" else 0
    after_model = new_model(tokenizer_after, seed=2, extra_logits=extra_logits)
    before = save_checkpoint(new_model(tokenizer, seed=1), tokenizer, root / "before")
    return before, save_checkpoint(after_model, tokenizer_after, root / "after")


def with_chat_template(source: Path, target: Path, chat_template: str) -> Path:
    """A copy of the checkpoint in `source` whose tokenizer carries `chat_template`."""
    from transformers import AutoTokenizer

    shutil.copytree(source, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(target)
    return target


def build_tiny_adapter_pair(root: Path) -> tuple[Path, Path, Path]:
    """Save a base model, a LoRA adapter on it and the merged model; return (base, adapter, merged) dirs.

    The adapter's A and B are both random (`init_lora_weights=False`), so it really changes the
    model; the merged copy is the same function as base + adapter, stored as one full model.
    """
    from peft import LoraConfig, get_peft_model

    tokenizer = tiny_tokenizer()
    base = tiny_llama(tokenizer, seed=1)
    base_dir = save_checkpoint(base, tokenizer, root / "base")
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    adapted = get_peft_model(base, lora)
    adapter_dir = root / "adapter"
    adapted.save_pretrained(adapter_dir)
    merged_dir = save_checkpoint(copy.deepcopy(adapted).merge_and_unload(), tokenizer, root / "merged")
    return base_dir, adapter_dir, merged_dir


def token_id(tokenizer: PreTrainedTokenizerFast, text: str) -> int:
    """The id of `text`, which must be exactly one token."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens, not one"
    return ids[0]


def build_ending_model_dir(directory: Path, tokenizer_dir: Path) -> Path:
    """Save a random Llama that says EOS early in some contexts and late or never in others.

    One hidden dimension is scaled up by the final norm and read only by EOS's output row, so
    EOS's logit swings with the context (attention and all) while the other logits stay random:
    sampled rows end after anywhere from 0 to 12 tokens.
    """
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    model = tiny_llama(tokenizer, seed=3)
    with torch.no_grad():
        model.model.norm.weight[0] = 30.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[tokenizer.eos_token_id, 0] = 0.5
    return save_checkpoint(model, tokenizer, directory)


# The chain model's greedy answers: " one" -> " two" -> " three" -> EOS, then text that must never count;
# " six" and " seven" never end.
CHAIN = {
    " one": " two", " two": " three", " three": "</s>", "</s>": " four", " four": " five", " five": " eight",
    " six": " seven", " seven": " six",
}


def build_chain_model_dir(directory: Path, tokenizer_dir: Path, successors: dict[str, str]) -> Path:
    """Save a Llama whose greedy next token depends only on the current one, following `successors`.

    Attention and MLP outputs are zeroed, so the final hidden state is the current token's
    (normalised) embedding; the output row of each successor is its predecessor's embedding,
    scaled so that it wins by a wide margin. Keys and values are single tokens, "</s>" is EOS.
    This gives real forward passes with a known answer: "one" -> "two" -> "</s>" -> ...
    """
    assert len(set(successors.values())) == len(successors), "each token can follow only one other"
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    model = tiny_llama(tokenizer, seed=4)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        for current, following in successors.items():
            current_embedding = embeddings[token_id(tokenizer, current)]
            model.lm_head.weight[token_id(tokenizer, following)] = 10 * current_embedding / current_embedding.norm()
    return save_checkpoint(model, tokenizer, directory)


def forward_shapes(model: torch.nn.Module, work: Callable[[], T]) -> tuple[list[tuple[int, int]], T]:
    """The `input_ids` shape `(rows, tokens)` of every forward of `model` while `work` runs, and its result."""
    shapes: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _module, _args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        result = work()
    finally:
        hook.remove()
    return shapes, result
