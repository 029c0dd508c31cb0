"""How close a run came to the machine's limits: model FLOP/s against a large matmul's, and bytes/s
against a large copy's, both measured on the same machine in the same process.

A CPU is bound by arithmetic (MFU is its figure of merit); decoding on a GPU is bound by reading the
weights and the KV cache once per step (MBU). FLOPs count *useful* work only: the tokens the rows
needed and the keys each row really attends to; padding and rows that had ended are waste, not work.
Bytes count each model's weights once per decoding forward (an adapter pair run in two passes reads
its base twice per step, in one pass once) and each attended key's cache once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from lda_core.models import ModelPair

MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 2**28, "cuda": 2**31}


@dataclass(frozen=True)
class RunStats:
    """The useful work of a run: tokens in and out, keys attended to, and decoding steps taken."""

    decode_steps: int  # decoding forwards of the after-model (each reads its weights once)
    prefill_tokens: int
    decoded_tokens: int  # tokens fed back to the models (every generated token but a row's last)
    prefill_attended_keys: int  # causal: a prompt of P tokens attends to P(P+1)/2 keys
    attended_keys: int  # while decoding: the token at step s of a P-token prompt sees P + s keys

    @classmethod
    def of_rows(cls, prompt_tokens: list[int], generated_tokens: list[int], decode_steps: int) -> RunStats:
        """From each row's prompt length and tokens generated (its last one, EOS included, is never fed)."""
        fed = [max(0, g - 1) for g in generated_tokens]
        return cls(
            decode_steps=decode_steps,
            prefill_tokens=sum(prompt_tokens),
            decoded_tokens=sum(fed),
            prefill_attended_keys=sum(p * (p + 1) // 2 for p in prompt_tokens),
            attended_keys=sum(f * p + f * (f + 1) // 2 for p, f in zip(prompt_tokens, fed, strict=True)),
        )


@dataclass(frozen=True)
class ModelCost:
    """Per-token arithmetic and per-key cache size of one model (float counts, no device involved)."""

    linear_parameters: int  # weights a token multiplies through (every matrix but the embedding lookup)
    layers: int
    attention_width: int  # query heads x head size
    kv_bytes_per_key: int  # keys and values of one position across all layers
    weight_bytes: int


def text_config(model: torch.nn.Module):
    """The config of the model's language part (a multimodal config nests it)."""
    return model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config


def model_cost(model: torch.nn.Module) -> ModelCost:
    config = text_config(model)
    embedding = model.get_input_embeddings().weight
    parameters = list(model.parameters())
    heads = config.num_attention_heads
    head_size = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    element = embedding.element_size()
    return ModelCost(
        linear_parameters=sum(p.numel() for p in parameters if p.dim() >= 2) - embedding.numel()
        + (embedding.numel() if _output_is_tied(model) else 0),
        layers=config.num_hidden_layers,
        attention_width=heads * head_size,
        kv_bytes_per_key=2 * config.num_hidden_layers * kv_heads * head_size * element,
        weight_bytes=sum(p.numel() * p.element_size() for p in parameters),
    )


def _output_is_tied(model: torch.nn.Module) -> bool:
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def pair_costs(pair: ModelPair) -> list[ModelCost]:
    """One cost per model whose logits LDA needs. An adapter pair's one model is called once per decoding
    forward that `RunStats.decode_steps` counts, so its weight bytes are on the first cost only."""
    if pair.uses_adapter:
        cost = model_cost(pair.after)
        return [cost, replace(cost, weight_bytes=0)]
    return [model_cost(pair.after), model_cost(pair.before)]


def useful_flops(costs: list[ModelCost], stats: RunStats) -> float:
    """2 FLOPs per weight per token, plus QK^T and AV (4 x width per attended key per layer), both models."""
    tokens = stats.prefill_tokens + stats.decoded_tokens
    keys = stats.attended_keys + stats.prefill_attended_keys
    return sum(2.0 * c.linear_parameters * tokens + 4.0 * c.layers * c.attention_width * keys for c in costs)


def useful_bytes(costs: list[ModelCost], stats: RunStats) -> float:
    """Each model's weights once per decoding forward, and each attended key's cache once per model."""
    return sum(c.weight_bytes * stats.decode_steps + c.kv_bytes_per_key * stats.attended_keys for c in costs)


@dataclass
class MachinePeak:
    """The best FLOP/s of a large matmul and bytes/s of a large copy, measured here."""

    device: str
    dtype: str
    flops_per_second: float
    bytes_per_second: float
    detail: dict = field(default_factory=dict)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it rather than how fast it was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(device: torch.device, work: Callable[[], object], repeats: int, after_each: Callable[[], None] = lambda: None) -> float:
    """The fastest of `repeats` runs of `work`, finished on the device.

    The best run, not the mean: the first run pays one-off costs (kernel selection, allocator
    warm-up) and other processes only ever add time.
    """
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        work()
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
        after_each()
    return best


def _matmul_flops_per_second(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    left = torch.randn(size, size, device=device, dtype=dtype)
    right = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / best_seconds(device, lambda: left @ right, repeats)


def _copy_bytes_per_second(device: torch.device, size: int, repeats: int) -> float:
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    return 2 * size / best_seconds(device, lambda: target.copy_(source), repeats)  # read + write


def measure_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> MachinePeak:
    """A square matmul in `dtype` (2n^3 FLOPs) and a copy of a large buffer, best of `repeats` each."""
    size, copied = MATMUL_SIZE.get(device.type, 4096), COPY_BYTES.get(device.type, 2**28)
    return MachinePeak(
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        flops_per_second=_matmul_flops_per_second(device, dtype, size, repeats),
        bytes_per_second=_copy_bytes_per_second(device, copied, repeats),
        detail={"matmul_size": size, "copy_bytes": copied, "threads": torch.get_num_threads()},
    )


def utilisation(costs: list[ModelCost], stats: RunStats, seconds: float, peak: MachinePeak) -> dict:
    """Achieved FLOP/s and bytes/s of a run, and their shares of the peak (MFU, MBU)."""
    work = useful_flops(costs, stats)
    flops, moved = work / seconds, useful_bytes(costs, stats) / seconds
    return {
        "model_gflops": round(work / 1e9, 6),  # the run's useful arithmetic: the same rows are the same work
        "model_gflops_per_second": round(flops / 1e9, 2),
        "model_gbytes_per_second": round(moved / 1e9, 2),
        "mfu": round(flops / peak.flops_per_second, 3),
        "mbu": round(moved / peak.bytes_per_second, 3),
    }
