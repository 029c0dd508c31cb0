"""Showing an experiment in a terminal: a progress bar while it runs, a rate table when done."""

from __future__ import annotations

from collections.abc import Callable

import click
from tqdm import tqdm

from ldaq.client import ApiClient


def format_rate_table(summary: list[dict]) -> str:
    """The activation rate per alpha with its Wilson 95% interval, as aligned text."""
    lines = [f"{'alpha':>7} {'n':>6} {'activated':>9} {'rate':>7} {'95% CI':>17} {'samples for 95%':>16}"]
    for item in summary:
        low, high = item["ci95"]
        needed = item["samples_for_95pct_detection"]
        lines.append(
            f"{item['alpha']:>7g} {item['n']:>6} {item['activated']:>9} {item['rate']:>7.1%} "
            f"{f'[{low:.1%}, {high:.1%}]':>17} {needed if needed is not None else '-':>16}"
        )
    return "\n".join(lines)


def format_alpha0(estimate: dict | None) -> str:
    """The alpha-0 rate fitted from the amplified alphas, beside alpha 0 as measured."""
    if estimate is None:
        return "alpha-0 estimate: needs completions at two positive alphas"
    low, high = estimate["ci95"]
    line = f"alpha-0 estimate: {estimate['rate']:.3%} [{low:.3%}, {high:.3%}] ({estimate['model']})"
    if (direct := estimate["direct"]) is not None:
        line += f"; measured at alpha 0: {direct['rate']:.3%} of {direct['n']}"
    return line


def format_alpha0_reweighted(reweighted: dict | None) -> str:
    """The alpha-0 rate from the amplified completions' alpha-0 weights (no curve assumed)."""
    if reweighted is None:
        return "alpha-0 reweighted: needs sampled completions at a positive alpha"
    if reweighted["rate"] is None:
        return "alpha-0 reweighted: the hits' effective sample size has not reached 10"
    low, high = reweighted["ci95"]
    alphas = ", ".join(f"{alpha:g}" for alpha in reweighted["alphas"])
    return (f"alpha-0 reweighted: {reweighted['rate']:.3%} [{low:.3%}, {high:.3%}] from alphas {alphas} "
            f"({reweighted['model']})")


def watch_experiment(
    client: ApiClient, experiment_id: str, interval: float = 1.0, check: Callable[[], None] | None = None
) -> dict:
    """Show a progress bar over completions until the experiment finishes; return its last state. `check`, called
    before each poll, may raise to stop watching (the demo's, when a process it started has died)."""
    bar = None
    experiment: dict = {}
    for experiment in client.poll(experiment_id, interval):
        if check is not None:
            check()
        progress = experiment["progress"]
        if bar is None:
            bar = tqdm(total=progress["completions_total"], desc=f"{experiment_id[:8]}", unit="completion")
        bar.update(progress["completions_done"] - bar.n)
        bar.set_postfix(status=experiment["status"], chunks=f"{progress['chunks_done']}/{progress['chunks_total']}")
    if bar is not None:
        bar.close()
    return experiment


def print_outcome(experiment: dict) -> None:
    click.echo(f"experiment {experiment['id']}: {experiment['status']}")
    if experiment.get("error"):
        click.echo(f"error: {experiment['error']}")
    click.echo(format_rate_table(experiment["summary"]))
    click.echo(format_alpha0(experiment.get("alpha0_estimate")))
    click.echo(format_alpha0_reweighted(experiment.get("alpha0_reweighted")))
