"""What a woken worker does: run its pair's queued work from the ledger until none is left.

The broker's message only wakes the worker; which work to do comes from the ledger. Between
chunks the worker serves queued POST /generate requests first, so a client waiting on one never
waits behind the rest of a long experiment.
"""

from __future__ import annotations

from ldaq import ledger
from ldaq.direct_generation import claim_next_direct_generation
from worker.chunk_runner import run_claimed_chunk
from worker.context import WorkerContext
from worker.direct import answer_direct_generation


def drain(context: WorkerContext, model_pair: str) -> int:
    """Run the pair's direct generations and queued chunks until none is left; returns the chunks run."""
    chunks_run = 0
    while True:
        if _serve_direct_generation(context, model_pair):
            continue
        settings = context.settings
        with context.database.transaction() as session:
            claim = ledger.claim_next_chunk(session, model_pair, context.owner, settings.lease_seconds, settings.max_attempts)
        if claim is None:
            return chunks_run
        if chunks_run == 0:
            _wake_another_worker(context, model_pair)
        run_claimed_chunk(context, claim)
        chunks_run += 1


def _serve_direct_generation(context: WorkerContext, model_pair: str) -> bool:
    with context.database.transaction() as session:
        claimed = claim_next_direct_generation(session, model_pair)
    if claimed is None:
        return False
    answer_direct_generation(context, *claimed)
    return True


def _wake_another_worker(context: WorkerContext, model_pair: str) -> None:
    """Pass the bell on while work remains, so an idle worker on another GPU joins in.

    Each woken worker rings at most once per wake, so messages grow with workers, not chunks.
    """
    with context.database.read() as session:
        more = ledger.queued_chunks_remain(session, model_pair)
    if more:
        context.doorbell.try_ring(model_pair)
