"""Passing the doorbell on: a woken worker rings once more for its pair while more work is queued than it
takes first, so an idle worker on another GPU joins in.

It rings at the start of a drain, on a thread of its own, while the model loads: the other worker then
loads its copy meanwhile too, and the first message through the broker from a fresh process (imports, the
transport's connection, about 90 ms holding the GIL on the embedded broker) is not paid beside the first batch.
"""

from __future__ import annotations

import logging
import threading

from ldaq import ledger
from worker.context import WorkerContext
from worker.priority import side_thread

log = logging.getLogger("ldaq.worker")


def pass_the_bell_on(context: WorkerContext, model_pair: str) -> threading.Thread:
    """Start ringing for `model_pair` if more than one of its chunks is queued (this worker takes the first
    itself); returns the thread, which ends once it has rung or found no reason to."""
    thread = side_thread(_ring_if_more, "ldaq-pass-the-bell", (context, model_pair))
    thread.start()
    return thread


def _ring_if_more(context: WorkerContext, model_pair: str) -> None:
    try:
        with context.database.read() as session:
            more = ledger.queued_chunks_remain(session, model_pair, beyond=1)
    except Exception:  # the sweeper rings for queued work again after LDAQ_REQUEUE_SECONDS
        log.warning("model_pair=%s outcome=bell_not_passed", model_pair, exc_info=True)
        return
    if more:
        context.doorbell.try_ring(model_pair)
