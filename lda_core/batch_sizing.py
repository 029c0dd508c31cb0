"""How many rows one batch may hold: the most the device's free memory fits for the pair's KV caches
at the rows' prompt + new-token lengths, with a safety margin.

Decoding reads every weight once per step whatever the batch, so on a GPU a bigger batch is nearly
free throughput until the KV cache's size and reads take over; on a CPU a bigger batch makes bigger,
more efficient matrix products. An estimate can still be wrong (fragmentation, another process), so
an out-of-memory error halves the size, and the size that worked is remembered for the pair.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lda_core.host_memory import retained_free_bytes
from lda_core.models import ModelPair
from lda_core.roofline import pair_costs, text_config

SAFETY_MARGIN = 0.8  # of the memory the estimate may plan for
MAX_AUTO_BATCH = 256  # rows: past this a CPU gains little, and a batch's prefill keeps others waiting
CPU_SHARE_OF_AVAILABLE = 0.5  # without a budget, plan for half of the memory the OS says is available
FALLBACK_CPU_BUDGET = 4 * 2**30
LOGIT_COPIES = 6  # float32 [rows, vocab] tensors alive per step: two models' logits, amplified, probs, cdf (x2)


def row_bytes(pair: ModelPair, prompt_tokens: int, new_tokens: int) -> int:
    """Memory one row needs: both models' KV caches at full length, its logits, and its prefill's activations."""
    kv_per_token = sum(cost.kv_bytes_per_key for cost in pair_costs(pair))
    config = text_config(pair.after)
    element = next(pair.after.parameters()).element_size()
    vocab = pair.after.get_output_embeddings().weight.shape[0]
    intermediate = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    prefill = prompt_tokens * (2 * config.hidden_size + 3 * intermediate) * element
    attention_scores = config.num_attention_heads * prompt_tokens**2 * 4  # a math-kernel attention's scores
    return kv_per_token * (prompt_tokens + new_tokens) + LOGIT_COPIES * vocab * 4 + prefill + attention_scores


def _cpu_available_bytes() -> int:
    """MemAvailable from /proc/meminfo, where there is one."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 * FALLBACK_CPU_BUDGET


def free_bytes(device: torch.device, budget: int | None = None) -> int:
    """What a batch may use: CUDA's free memory (plus what torch holds unused), capped by `budget`; on a
    CPU the `budget`, or half of what the OS says is available plus what this process's heap holds free
    (`keep_freed_memory` keeps it from an earlier batch: the OS counts it as used)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return min(free, budget) if budget else free
    if budget:
        return budget
    return int((_cpu_available_bytes() + retained_free_bytes()) * CPU_SHARE_OF_AVAILABLE)


class BatchSizer:
    """Chooses each batch's size for one pair: `fixed` rows, or (None) the most that memory holds.

    After an out-of-memory error the halved size becomes a ceiling for this pair from then on.
    """

    def __init__(self, pair: ModelPair, fixed: int | None = None, budget: int | None = None) -> None:
        self.pair, self.fixed, self.budget = pair, fixed, budget
        self.ceiling: int | None = None

    def size_for(self, longest_prompt: int, new_tokens: int) -> int:
        """The batch size for rows whose longest prompt has `longest_prompt` tokens."""
        if self.fixed is not None:
            wanted = self.fixed
        else:
            plan = free_bytes(self.pair.device, self.budget) * SAFETY_MARGIN
            wanted = min(MAX_AUTO_BATCH, int(plan // row_bytes(self.pair, longest_prompt, new_tokens)))
        return max(1, min(wanted, self.ceiling or wanted))

    def out_of_memory(self, size: int) -> int:
        """A batch of `size` did not fit: the size to try next (and the pair's ceiling from now on)."""
        self.ceiling = max(1, size // 2)
        return self.ceiling
