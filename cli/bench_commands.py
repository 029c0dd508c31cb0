"""`ldaq bench`: the engine's speed and its distance to this machine's limits, in one process, no service."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.engine_commands import DTYPES, quiet_transformers

COLUMNS = (  # (heading, result field, width, format); the first column is left-aligned, the others right
    ("mode", "mode", 24, "s"), ("batch", "batch_size", 5, "d"), ("tokens/s", "tokens_per_second", 9, ".1f"),
    ("rows/s", "completions_per_second", 7, ".2f"), ("seconds", "seconds", 8, ".2f"),
    ("GFLOP/s", "model_gflops_per_second", 8, ".1f"), ("MFU", "mfu", 6, ".1%"),
    ("GB/s", "model_gbytes_per_second", 7, ".1f"), ("MBU", "mbu", 6, ".1%"), ("peak MB", "peak_memory_mb", 8, ".0f"),
)


def _line(cells: list[tuple[object, int, str]]) -> str:
    return " ".join(f"{value:{'<' if i == 0 else '>'}{width}{spec}}" for i, (value, width, spec) in enumerate(cells))


def format_benchmark(report: dict) -> str:
    """The benchmark report as an aligned table, the machine's peak and the ratios below it."""
    lines = [_line([(heading, width, "s") for heading, _, width, _ in COLUMNS])]
    lines += [_line([(result[field], width, spec) for _, field, width, spec in COLUMNS]) for result in report["results"]]
    peak = report["peak"]
    lines.append(
        f"peak here: {peak['gflops_per_second']:.1f} GFLOP/s ({peak['matmul_size']}^2 matmul), "
        f"{peak['gbytes_per_second']:.1f} GB/s (copy of {peak['copy_bytes'] / 2**20:.0f} MiB)"
    )
    lines += [f"{name}: {ratio:.2f}x" for name, ratio in report["ratios"].items()]
    lengths = next(result for result in report["results"] if result["mode"] == "lda_auto")["generated_tokens"]
    lines.append("tokens generated per row: " + ", ".join(f"{name} {value}" for name, value in lengths.items()))
    lines.append(
        f"{report['rows']} rows x {report['max_new_tokens']} new tokens (stop at EOS: {report['stop_at_eos']}) on "
        f"{report['device']} ({report['dtype']}, {report['torch_threads']} torch threads, one pass: "
        f"{report['one_pass']}); peak memory: {report['peak_memory']}"
    )
    return "\n".join(lines)


@click.command()
@click.option("--pair-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A pair to measure (before/ and after/, or base/ and adapter/ inside); default: the toy pair, "
              "trained if needed. A tokenizer with a chat template gets the questions as chat turns.")
@click.option("--batch-size", "batch_sizes", multiple=True, type=int, default=(1, 16, 64), show_default=True,
              help="LDA (and `generate`) at these sizes; the largest also runs the previous strategy.")
@click.option("--prompts", "prompt_count", default=64, show_default=True, help="Toy evaluation questions to decode.")
@click.option("--samples", default=1, show_default=True, help="Completions per question.")
@click.option("--alpha", default=1.0, show_default=True)
@click.option("--max-new-tokens", default=32, show_default=True)
@click.option("--stop-at-eos", is_flag=True, help="Rows end at EOS (continuous batching then refills their slots); "
              "`generate` is left out, as it cannot end rows the same way.")
@click.option("--repeats", default=3, show_default=True, help="Runs per mode; the fastest counts.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES))
@click.option("--threads", type=int, help="torch CPU threads (default: torch's own choice).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(
    pair_dir: Path | None, batch_sizes: tuple[int, ...], prompt_count: int, samples: int, alpha: float,
    max_new_tokens: int, stop_at_eos: bool, repeats: int, device: str, dtype: str, threads: int | None, as_json: bool,
) -> None:
    """Tokens/s, MFU and MBU of LDA, its previous strategy, the one-prompt loop and `transformers` `generate`."""
    import torch

    from lda_core.bench import default_questions, run_benchmark
    from lda_core.models import parse_dtype
    from lda_core.organism.train import ensure_toy_pair

    quiet_transformers()
    if threads is not None:
        torch.set_num_threads(threads)
    report = run_benchmark(
        pair_dir or ensure_toy_pair(), device=device, dtype=parse_dtype(dtype), batch_sizes=batch_sizes,
        questions=default_questions(prompt_count), max_new_tokens=max_new_tokens, repeats=repeats, samples=samples,
        alpha=alpha, stop_at_eos=stop_at_eos,
    )
    click.echo(json.dumps(report, indent=2) if as_json else format_benchmark(report))


COMMANDS = [bench]
