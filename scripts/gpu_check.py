"""The engine's checks and benchmark on a CUDA device, written as one JSON report.

CI has no GPU, so this is run by hand where one is lent (`make gpu-check`). It needs only the
engine's dependencies (torch, transformers, tokenizers), not the service's:
  - float32: greedy batched LDA equals each row generated alone (mixed prompt lengths and alphas),
    and a seeded sampled row is the same alone and in a batch;
  - bfloat16: how many greedy rows differ from float32, reported, not hidden;
  - `ldaq bench`'s measurement of the toy pair in float32 and bfloat16.
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

from lda_core.bench import run_benchmark  # noqa: E402
from lda_core.generate import GenerationSettings, Row, generate_batch  # noqa: E402
from lda_core.models import ModelPair, load_model_pair  # noqa: E402
from lda_core.organism.train import ensure_toy_pair  # noqa: E402
from tests.tiny_models import build_tiny_pair_dirs  # noqa: E402

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
    return {
        "float32_greedy_batched_equals_alone": batched == reference,
        "float32_greedy_rows_differing": sum(a != b for a, b in zip(batched, reference, strict=True)),
        "float32_sampled_batched_equals_alone": sampled_batched == sampled_alone,
        "bfloat16_greedy_rows_differing_from_float32": sum(a != b for a, b in zip(bf16_batched, reference, strict=True)),
        "rows": len(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for gpu-check.json")
    parser.add_argument("--toy-pair", type=Path, help="A trained toy pair (default: train or reuse the cached one)")
    parser.add_argument("--device", default="cuda")
    arguments = parser.parse_args()
    started = time.perf_counter()
    report: dict = {"device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                    "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as scratch:
        report["engine"] = engine_checks(Path(scratch), arguments.device)
    toy_pair = ensure_toy_pair(arguments.toy_pair, progress=False)
    report["bench"] = {
        dtype_name: run_benchmark(toy_pair, batch_sizes=(1, 16, 64), max_new_tokens=32, progress=False,
                                  device=arguments.device, dtype=dtype)
        for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "gpu-check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    engine = report["engine"]
    return 0 if engine["float32_greedy_batched_equals_alone"] and engine["float32_sampled_batched_equals_alone"] else 1


if __name__ == "__main__":
    sys.exit(main())
