"""Engine commands: generate with a model pair in this process.

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

        generate_rows(pair, rows, settings, batch_size, on_completions=show)


COMMANDS = [generate]
