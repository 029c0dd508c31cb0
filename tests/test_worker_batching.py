"""The worker keeps its batch full: rows of several chunks share it, chunks are claimed ahead and written
behind, and a POST /generate joins a running experiment's batch instead of waiting for it to end."""

from __future__ import annotations

from datetime import datetime

from cli.demo import idle_seconds
from tests.helpers import exported, sweep

PROMPTS = [f"Question {i}: what is {i} plus {i}?" for i in range(6)]


def most_chunks_held_at_once(chunks) -> int:
    """The largest number of chunks claimed and not yet written at one moment."""
    events = sorted([(chunk.started_at, 1) for chunk in chunks] + [(chunk.finished_at, -1) for chunk in chunks],
                    key=lambda event: (event[0] or datetime.max, event[1]))
    held = most = 0
    for _, change in events:
        held += change
        most = max(most, held)
    return most


def test_a_batch_holds_rows_of_several_chunks_and_each_chunk_commits_once(embedded_service):
    # LDAQ_BATCH_SIZE is 8 in the test environment: four chunks of 2 rows fill one batch.
    experiment = embedded_service.submit(sweep(prompts=PROMPTS, alphas=[0, 2], samples_per_prompt=2, chunk_size=2))
    embedded_service.start_worker()
    finished = embedded_service.wait_finished(experiment["id"])

    assert finished["status"] == "succeeded"
    rows = exported(embedded_service, experiment["id"])
    assert len(rows) == 24 and len({(r["prompt_index"], r["alpha"], r["sample_index"]) for r in rows}) == 24
    chunks = embedded_service.chunks(experiment["id"])
    assert [(chunk.status, chunk.attempts) for chunk in chunks] == [("succeeded", 1)] * 12
    assert most_chunks_held_at_once(chunks) >= 4


def test_a_direct_generation_joins_the_running_batch_of_a_long_experiment(embedded_service):
    # One chunk of 192 rows x 96 tokens, 8 rows at a time: a worker that served requests between chunks
    # would answer only after the whole experiment.
    long_run = sweep(prompts=PROMPTS * 8, alphas=[0], samples_per_prompt=4, max_new_tokens=96, chunk_size=192)
    experiment = embedded_service.submit(long_run)
    embedded_service.start_worker()
    embedded_service.wait_until(experiment["id"], lambda e: e["status"] == "running")

    payload = {"model_pair": "tiny", "prompts": ["hello"], "alpha": 1.0, "temperature": 0, "max_new_tokens": 4}
    response = embedded_service.post("/api/v1/generate", payload)

    assert response.status_code == 200, response.text
    assert embedded_service.experiment(experiment["id"])["status"] == "running"  # answered long before its end
    assert embedded_service.wait_finished(experiment["id"])["status"] == "succeeded"


def test_the_demos_idle_time_is_the_wall_time_no_held_chunk_covers():
    at = [datetime(2026, 1, 1, 0, 0, second) for second in range(12)]
    overlapping = [(at[1], at[4]), (at[2], at[6]), (at[8], at[9])]  # gaps: 0-1, 6-8 and 9-11
    assert idle_seconds(overlapping, at[0], at[11]) == 5.0
    assert idle_seconds([(at[0], at[11])], at[0], at[11]) == 0.0
