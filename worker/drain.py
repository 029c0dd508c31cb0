"""What a woken worker does: keep one continuous batch running over its pair's queued work until none
is left.

The broker's message only wakes the worker; which work to do comes from the ledger, through
`LedgerRowSource`: chunks claimed ahead, rows of several chunks in one batch, POST /generate
requests joining the running batch within a poll.
"""

from __future__ import annotations

import logging

import torch

from lda_core.batch_sizing import BatchSizer
from lda_core.batcher import ContinuousBatcher
from lda_core.generate import GenerationSettings
from lda_core.models import ModelPair
from lda_core.runner import OUT_OF_MEMORY_ALONE, is_out_of_memory, release_cached_memory
from ldaq import ledger
from ldaq.direct_generation import claim_next_direct_generation, record_direct_generation
from worker.bell import pass_the_bell_on
from worker.context import WorkerContext
from worker.retry import RetryLater
from worker.row_source import LedgerRowSource

log = logging.getLogger("ldaq.worker")
UNUSED_DEFAULTS = GenerationSettings()  # every row the source gives carries its own settings


def drain(context: WorkerContext, model_pair: str) -> int:
    """Run the pair's direct generations and queued chunks until none is left; returns the chunks written."""
    context.records.start()  # started with the pool's child already; again here if it died since
    pass_the_bell_on(context, model_pair)
    try:
        pair = context.models.get(model_pair)
    except Exception as error:  # weights missing, a mismatched adapter, no memory for the model
        _cannot_load(context, model_pair, f"{type(error).__name__}: {error}")
        return 0
    sizer = context.models.batch_sizer(model_pair)
    with LedgerRowSource(context, model_pair, pair) as source:
        _run(pair, sizer, source)
        source.stop_polling()
        _run(pair, sizer, source)  # a request the poller took in as the last batch ended
    return source.chunks_written


def _run(pair: ModelPair, sizer: BatchSizer, source: LedgerRowSource) -> None:
    """Continuous batches until the source runs dry; out of memory halves the batch (rows in flight start
    again), a row that does not fit alone is an error row, any other error releases every chunk held."""
    size = None
    while source.has_work():
        size = size or sizer.size_for(*source.shape())
        source.target_rows = size
        source.fill()  # the first step runs a full batch, not one chunk's rows while the rest are claimed
        try:
            ContinuousBatcher(pair, UNUSED_DEFAULTS, size).run(source)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                _give_up(source, error)
                return
            release_cached_memory(pair)
            if size > 1:
                source.requeue_in_flight()
                size = sizer.out_of_memory(size)
            else:
                source.fail_in_flight(OUT_OF_MEMORY_ALONE)
        except Exception as error:
            _give_up(source, error)
            return


def _cannot_load(context: WorkerContext, model_pair: str, reason: str) -> None:
    """The pair would not load: waiting direct requests get the reason, and the next chunk uses up one
    attempt with it (as any failed run does), so an experiment on a pair that never loads ends failed."""
    log.error("cannot load model pair %s: %s", model_pair, reason)
    database, settings = context.database, context.settings
    while (claimed := database.when_answering(lambda session: claim_next_direct_generation(session, model_pair))):
        database.when_answering(lambda session, request_id=claimed[0]: record_direct_generation(
            session, request_id, None, reason))
    claim = database.when_answering(lambda session: ledger.claim_next_chunk(
        session, model_pair, context.owner, settings.lease_seconds, settings.max_attempts))
    if claim is not None and database.when_answering(
        lambda session: ledger.release_for_retry(session, claim.chunk_id, reason, settings.max_attempts)
    ):
        raise RetryLater(reason)


def _give_up(source: LedgerRowSource, error: BaseException) -> None:
    """Every chunk held goes back to the queue; while any has attempts left, the wake is retried with backoff."""
    log.exception("the batch failed: %s", error)
    if source.fail_all(f"{type(error).__name__}: {error}"):
        raise RetryLater(str(error)) from error
