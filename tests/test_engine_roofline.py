"""The bench's FLOP and byte accounting, checked against torch's own FLOP counter on a real forward."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, DynamicCache

from lda_core.models import load_model_pair
from lda_core.roofline import RunStats, measure_peak, model_cost, useful_bytes, useful_flops


def test_run_stats_count_each_rows_tokens_and_the_keys_they_attend_to() -> None:
    stats = RunStats.of_rows(prompt_tokens=[3, 5], generated_tokens=[4, 1], decode_steps=3)
    assert (stats.prefill_tokens, stats.decoded_tokens) == (8, 3)  # a row's last token is never fed back
    assert stats.prefill_attended_keys == 6 + 15  # causal: 1 + 2 + 3, and 1 + ... + 5
    assert stats.attended_keys == 4 + 5 + 6  # the first row's fed tokens see 4, 5 and 6 keys


@torch.inference_mode()
def test_useful_flops_of_a_decoding_step_match_torchs_flop_counter(tiny_pair_dirs: tuple[Path, Path]) -> None:
    # Eager attention: its matmuls are ops the counter sees (it does not count CPU SDPA kernels).
    model = AutoModelForCausalLM.from_pretrained(tiny_pair_dirs[1], attn_implementation="eager").eval()
    prompt_length, rows = 9, 3
    cache = DynamicCache()
    prompt = torch.randint(0, 300, (rows, prompt_length))
    model(input_ids=prompt, cache=cache, use_cache=True)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(0, 300, (rows, 1)), cache=cache, use_cache=True)

    stats = RunStats(decode_steps=1, prefill_tokens=0, decoded_tokens=rows, prefill_attended_keys=0,
                     attended_keys=rows * (prompt_length + 1))
    counted = counter.get_total_flops()
    assert abs(useful_flops([model_cost(model)], stats) - counted) / counted < 0.01


def test_bytes_are_the_weights_once_per_step_and_the_cache_of_every_attended_key(tiny_pair_dirs) -> None:
    model = load_model_pair(*map(str, tiny_pair_dirs)).after
    cost = model_cost(model)
    config = model.config
    head_size = config.hidden_size // config.num_attention_heads
    assert cost.kv_bytes_per_key == 2 * config.num_hidden_layers * config.num_key_value_heads * head_size * 4
    assert cost.weight_bytes == 4 * sum(p.numel() for p in model.parameters())
    stats = RunStats(decode_steps=2, prefill_tokens=0, decoded_tokens=2, prefill_attended_keys=0, attended_keys=7)
    assert useful_bytes([cost], stats) == 2 * cost.weight_bytes + 7 * cost.kv_bytes_per_key


def test_the_machine_peak_is_measured_not_assumed() -> None:
    peak = measure_peak(torch.device("cpu"), torch.float32, repeats=1)
    assert peak.flops_per_second > 1e8 and peak.bytes_per_second > 1e7
