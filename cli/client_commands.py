"""Client commands: submit an experiment file, watch one, export its completions (and a plot)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import yaml

from cli.reporting import print_outcome, watch_experiment
from ldaq.client import ApiClient, ApiError
from ldaq.settings import SETTINGS

url_option = click.option("--url", envvar="LDAQ_URL", default=SETTINGS["LDAQ_URL"].default, show_default=True, help="API address (LDAQ_URL)")
token_option = click.option("--token", envvar="LDAQ_API_TOKEN", default="", help="API token (LDAQ_API_TOKEN)")


def _client(url: str, token: str) -> ApiClient:
    return ApiClient(url, token)


@contextmanager
def api_errors_as_exit() -> Iterator[None]:
    """An API refusal ends the command with its code and message, not a traceback."""
    try:
        yield
    except ApiError as error:
        raise click.ClickException(str(error)) from error


def _read_experiment_file(path: Path) -> dict:
    text = path.read_text()
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise click.ClickException(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}") from error
    if not isinstance(loaded, dict):
        raise click.ClickException(f"{path}: an experiment file holds one mapping (see README)")
    return loaded


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@url_option
@token_option
@click.option("--watch", "then_watch", is_flag=True, help="Show progress until the experiment finishes.")
def submit(file: Path, url: str, token: str, then_watch: bool) -> None:
    """Submit the experiment in FILE (YAML or JSON) and print its id."""
    client = _client(url, token)
    with api_errors_as_exit():
        experiment = client.submit(_read_experiment_file(file))
        click.echo(experiment["id"])
        if then_watch:
            print_outcome(watch_experiment(client, experiment["id"]))


@click.command()
@click.argument("experiment_id")
@url_option
@token_option
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
def watch(experiment_id: str, url: str, token: str, interval: float) -> None:
    """Show a progress bar until EXPERIMENT_ID finishes, then its rate table."""
    with api_errors_as_exit():
        print_outcome(watch_experiment(_client(url, token), experiment_id, interval))


@click.command()
@click.argument("experiment_id")
@url_option
@token_option
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rate-against-alpha chart (PNG).")
def export(experiment_id: str, url: str, token: str, export_format: str, output: Path | None, plot: Path | None) -> None:
    """Export every completion of EXPERIMENT_ID (and optionally its chart)."""
    client = _client(url, token)
    with api_errors_as_exit():
        if plot is not None:
            from ldaq.plots import plot_rates

            experiment = client.experiment(experiment_id)
            plot_rates(experiment["summary"], str(plot), title=experiment.get("name") or experiment_id)
            click.echo(f"wrote {plot}", err=True)
        if output is not None or plot is None:
            sink = output.open("wb") if output else sys.stdout.buffer
            for block in client.export(experiment_id, export_format):
                sink.write(block)
            sink.flush()


COMMANDS = [submit, watch, export]
