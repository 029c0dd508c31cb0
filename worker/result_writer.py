"""Writes what the batch finished, on its own thread, off the generation path.

A chunk whose rows have all ended is committed once, in one transaction, by the record store's process
(`worker.record_store`: its detection and inserts never hold this process's GIL); a cancelled chunk is
marked so; a direct request is answered. A write that fails leaves the chunk's lease to run out, and
the sweeper requeues it: nothing is lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from ldaq import ledger
from ldaq.direct_generation import record_direct_generation
from worker.chunk_work import Work, direct_answer, explanation_answer, finished_chunk, is_explanation
from worker.context import WorkerContext
from worker.lease import LeaseKeeper

log = logging.getLogger("ldaq.worker")

_STOP = object()


class ResultWriter:
    """A queue of finished and cancelled works and the thread that stores them, releasing their leases."""

    def __init__(self, context: WorkerContext, leases: LeaseKeeper) -> None:
        self.context, self.leases = context, leases
        self.chunks_written = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ldaq-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Store everything queued, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def done(self, work: Work) -> None:
        """Store `work`'s completions (or answer its request)."""
        self._queue.put(("done", work))

    def cancelled(self, work: Work) -> None:
        """Mark `work`'s chunk cancelled: its experiment was."""
        self._queue.put(("cancel", work))

    def flush(self) -> None:
        """Wait until everything queued so far is stored."""
        self._queue.join()

    def failed(self, work: Work, reason: str) -> bool:
        """Now, on the caller's thread: `work` could not run. Its chunk goes back to the queue (or fails for
        good after its attempts), its request is answered with `reason`. Whether the chunk will be retried."""
        database = self.context.database
        if work.request is not None:
            database.when_answering(lambda session: record_direct_generation(session, work.tag[1], None, reason))
            return False
        chunk_id, max_attempts = work.claim.chunk_id, self.context.settings.max_attempts
        try:
            return database.when_answering(
                lambda session: ledger.release_for_retry(session, chunk_id, reason, max_attempts)
            )
        finally:
            self.leases.release(chunk_id)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            kind, work = item
            try:
                self._write(kind, work)
            except Exception:  # its lease runs out and the sweeper requeues it: nothing is lost
                log.exception("writing %s %s failed", kind, work.tag)
            finally:
                if work.claim is not None:
                    self.leases.release(work.claim.chunk_id)
                self._queue.task_done()

    def _write(self, kind: str, work: Work) -> None:
        database = self.context.database
        if work.request is not None:
            answer, error = explanation_answer(work) if is_explanation(work) else direct_answer(work)
            database.when_answering(lambda session: record_direct_generation(session, work.tag[1], answer, error))
            log.info("direct_generation_id=%s outcome=%s", work.tag[1], "failed" if error else "succeeded")
            return
        chunk_id = work.claim.chunk_id
        if kind == "cancel":
            database.when_answering(lambda session: ledger.cancel_chunk(session, chunk_id))
        else:
            self.context.records.commit(finished_chunk(work, time.perf_counter()))
            self.chunks_written += 1
        log.info("chunk_id=%s experiment_id=%s chunk_index=%s attempt=%s outcome=%s rows=%s",
                 chunk_id, work.claim.experiment_id, work.claim.chunk_index, work.claim.attempt,
                 "cancelled" if kind == "cancel" else "succeeded", len(work.done))
