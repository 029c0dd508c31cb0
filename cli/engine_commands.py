"""Engine commands: generate with a model pair in this process, train the toy pair, benchmark the engine.

No API, queue or database here: these call lda_core directly. torch and transformers are imported
inside each command, so `ldaq --help` and the service commands start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lda_core.generate import Completion

DTYPES = ["float32", "bfloat16", "float16"]


def read_prompts(path: Path) -> list[str]:
    """One prompt per non-blank line, or JSONL with a "prompt" field (a .jsonl file, or lines starting with '{')."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl" and not (lines and lines[0].lstrip().startswith("{")):
        return lines
    prompts = []
    for number, line in enumerate(lines, start=1):
        try:
            prompts.append(str(json.loads(line)["prompt"]))
        except (ValueError, KeyError, TypeError) as error:
            raise click.BadParameter(f'line {number}: expected a JSON object with a "prompt" field') from error
    return prompts


def quiet_transformers() -> None:
    """Our own progress bar is enough: hide transformers' per-checkpoint "Loading weights" bars."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _print_completion(completion: Completion, as_json: bool) -> None:
    fields = {
        "prompt_index": completion.prompt_index,
        "alpha": completion.alpha,
        "sample_index": completion.sample_index,
        "text": completion.text,
        "tokens": completion.tokens,
        "finish_reason": completion.finish_reason,
        "error": completion.error,
    }
    if as_json:
        click.echo(json.dumps(fields))
        return
    click.echo(
        f"[prompt {completion.prompt_index}, alpha {completion.alpha:g}, sample {completion.sample_index}] "
        f"{completion.tokens} tokens, {completion.finish_reason}"
    )
    click.echo(f"  {completion.error if completion.error else repr(completion.text)}")


@click.command()
@click.option("--before", required=True, help="Before-model: a local directory or a hub id.")
@click.option("--after", help="After-model (a full model): a local directory or a hub id.")
@click.option("--adapter", help="Instead of --after: a PEFT adapter on top of --before.")
@click.option(
    "--prompts-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='One prompt a line, or JSONL with a "prompt" field.',
)
@click.option("--template", help=r"Wrap each prompt: '{prompt}' is replaced by it, '\n' by a newline.")
@click.option("--chat-template", "chat_template", is_flag=True,
              help="Send each prompt as a user turn through the tokenizer's chat template (not with --template).")
@click.option("--alpha", "alphas", multiple=True, type=float, default=(1.0,), show_default=True,
              help="Amplification; repeat for several.")
@click.option("--temperature", default=1.0, show_default=True, help="0 is greedy.")
@click.option("--top-p", default=1.0, show_default=True)
@click.option("--max-new-tokens", default=48, show_default=True)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Rows per forward batch (halved on out-of-memory).")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(min=1),
              help="Completions per prompt and alpha.")
@click.option("--seed", default=0, show_default=True)
@click.option("--stop-at-eos", is_flag=True, help="End a batch early once every row has produced EOS.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per completion, one a line.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps, ...")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES))
@click.option("--allow-pickle", is_flag=True, help="Allow non-safetensors weights (a pickle can run code).")
def generate(
    before: str, after: str | None, adapter: str | None, prompts_file: Path, template: str | None,
    chat_template: bool, alphas: tuple[float, ...], temperature: float, top_p: float, max_new_tokens: int, batch_size: int,
    samples: int, seed: int, stop_at_eos: bool, as_json: bool, device: str, dtype: str, allow_pickle: bool,
) -> None:
    """Run LDA on a model pair directly (no service) and print every completion, cut at its first EOS."""
    from tqdm import tqdm

    from lda_core.generate import GenerationSettings, Row
    from lda_core.models import load_model_pair, parse_dtype
    from lda_core.prompts import format_prompt
    from lda_core.runner import generate_rows

    if template and chat_template:
        raise click.UsageError("give --template or --chat-template, not both")
    prompts = read_prompts(prompts_file)
    quiet_transformers()
    try:
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed, stop_at_eos)
        pair = load_model_pair(before, after, adapter, device, parse_dtype(dtype), allow_pickle)
    except ValueError as error:  # a bad setting, --after and --adapter both or neither, two vocabularies
        raise click.UsageError(str(error)) from error
    if chat_template and not pair.tokenizer.chat_template:
        raise click.UsageError("this pair's tokenizer has no chat template; use --template instead")
    template = template.replace("\\n", "\n") if template else None
    rows = [
        Row(index, format_prompt(prompt, pair.tokenizer, template, chat_template), alpha, sample)
        for index, prompt in enumerate(prompts) for alpha in alphas for sample in range(samples)
    ]
    with tqdm(total=len(rows), unit="completion", file=sys.stderr, disable=None) as bar:

        def show(completions: list[Completion]) -> None:
            for completion in completions:
                _print_completion(completion, as_json)
            bar.update(len(completions))

        generate_rows(pair, rows, settings, batch_size, on_batch_done=show)


def format_benchmark(report: dict) -> str:
    """The benchmark report as an aligned table, ratios below it."""
    lines = [f"{'mode':<24} {'batch':>5} {'tokens/s':>9} {'seconds':>8} {'peak MB':>8}"]
    for result in report["results"]:
        lines.append(
            f"{result['mode']:<24} {result['batch_size']:>5} {result['tokens_per_second']:>9.1f} "
            f"{result['seconds']:>8.2f} {result['peak_memory_mb']:>8.0f}"
        )
    lines += [f"{name}: {ratio:.2f}x" for name, ratio in report["ratios"].items()]
    lines.append(
        f"{report['prompts']} prompts x {report['max_new_tokens']} new tokens on {report['device']} "
        f"({report['dtype']}, {report['torch_threads']} torch threads); peak memory: {report['peak_memory']}"
    )
    return "\n".join(lines)


@click.command()
@click.option("--pair-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A pair to measure (before/ and after/, or base/ and adapter/ inside); default: the toy pair, "
              "trained if needed. A tokenizer with a chat template gets the questions as chat turns.")
@click.option("--batch-size", "batch_sizes", multiple=True, type=int, default=(1, 4, 16), show_default=True,
              help="Batched LDA at these sizes; the largest is also compared with `generate`.")
@click.option("--prompts", "prompt_count", default=64, show_default=True, help="Toy evaluation prompts to decode (4 batches of 16 at the largest size).")
@click.option("--max-new-tokens", default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(DTYPES))
@click.option("--threads", type=int, help="torch CPU threads (default: torch's own choice).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench(
    pair_dir: Path | None, batch_sizes: tuple[int, ...], prompt_count: int, max_new_tokens: int, device: str,
    dtype: str, threads: int | None, as_json: bool,
) -> None:
    """Tokens/s of batched LDA against the one-prompt loop and against `transformers` `generate`."""
    import torch

    from lda_core.bench import default_questions, run_benchmark
    from lda_core.models import parse_dtype
    from lda_core.organism.train import ensure_toy_pair

    quiet_transformers()
    if threads is not None:
        torch.set_num_threads(threads)
    report = run_benchmark(
        pair_dir or ensure_toy_pair(), batch_sizes, default_questions(prompt_count), max_new_tokens, device=device,
        dtype=parse_dtype(dtype),
    )
    click.echo(json.dumps(report, indent=2) if as_json else format_benchmark(report))


COMMANDS = [generate, bench]
