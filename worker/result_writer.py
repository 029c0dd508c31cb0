"""Writes what the batch finished, on its own thread, off the generation path.

A chunk whose rows have all ended is committed once, by the record store's process (`worker.record_store`:
its detection and inserts never hold this process's GIL), in one transaction with the others that ended while
the last commit ran; a cancelled chunk is marked so; a direct request is answered. A write that fails leaves
the chunk's lease to run out, and the sweeper requeues it: nothing is lost.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from ldaq import ledger
from ldaq.direct_generation import record_direct_generation
from worker.chunk_work import Work, direct_answer, explanation_answer, finished_chunk, is_explanation
from worker.context import WorkerContext
from worker.lease import LeaseKeeper
from worker.priority import side_thread

log = logging.getLogger("ldaq.worker")

_STOP, _FLUSH = object(), object()  # queued markers: end the thread; write what is queued now
MAX_CHUNKS_PER_COMMIT = 32  # finished chunks one transaction stores at most: bounds how long it holds its locks
# How long a finished chunk waits for others to share its transaction. Chunks of one batch end a few steps apart;
# committing them together pays the transaction's fixed work, beside generation, once instead of once each.
COMMIT_LINGER_SECONDS = 0.25


class ResultWriter:
    """A queue of finished and cancelled works and the thread that stores them, releasing their leases."""

    def __init__(self, context: WorkerContext, leases: LeaseKeeper) -> None:
        self.context, self.leases = context, leases
        self.chunks_written = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread = side_thread(self._loop, "ldaq-writer")

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

    def write_now(self) -> None:
        """Store what is queued without waiting for more chunks to share its commit: none will end soon (the
        batch ran dry), and the last commit of a drain is on the way to its experiment's end."""
        self._queue.put(_FLUSH)

    def flush(self) -> None:
        """Wait until everything queued so far is stored."""
        self.write_now()
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
        while True:
            items = self._next_items()
            works = [item for item in items if isinstance(item, tuple)]
            try:
                self._write_all(works)
            finally:
                for _ in items:
                    self._queue.task_done()
            if _STOP in items:
                return

    def _next_items(self) -> list:
        """The next items to write, waiting for the first. Finished chunks wait up to COMMIT_LINGER_SECONDS for
        others to commit with; anything else ends the wait (a client waits on a direct request's answer, and a
        flush or stop on everything queued)."""
        items = [self._queue.get()]
        deadline = time.monotonic() + COMMIT_LINGER_SECONDS
        while len(items) < MAX_CHUNKS_PER_COMMIT and _is_chunk_commit(items[-1]):
            try:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return items

    def _write_all(self, items: list[tuple[str, Work]]) -> None:
        chunks: list[Work] = []
        others: list[tuple[str, Work]] = []
        for item in items:
            if _is_chunk_commit(item):
                chunks.append(item[1])
            else:
                others.append(item)
        if chunks:
            self._guarded("done", chunks, lambda: self._commit(chunks))
        for kind, work in others:
            self._guarded(kind, [work], lambda kind=kind, work=work: self._write(kind, work))

    def _guarded(self, kind: str, works: list[Work], write: Callable[[], None]) -> None:
        """Run `write`; whatever happens, the works' leases are no longer renewed. A write that failed leaves
        them to run out, and the sweeper requeues the chunks: nothing is lost."""
        try:
            write()
        except Exception:
            log.exception("writing %s %s failed", kind, [work.tag for work in works])
        finally:
            for work in works:
                if work.claim is not None:
                    self.leases.release(work.claim.chunk_id)

    def _commit(self, chunks: list[Work]) -> None:
        now = time.perf_counter()
        self.context.records.commit([finished_chunk(work, now) for work in chunks])
        self.chunks_written += len(chunks)
        for work in chunks:
            _log_chunk(work, "succeeded")

    def _write(self, kind: str, work: Work) -> None:
        """Answer a direct request, or mark a chunk cancelled."""
        database = self.context.database
        if work.request is not None:
            answer, error = explanation_answer(work) if is_explanation(work) else direct_answer(work)
            database.when_answering(lambda session: record_direct_generation(session, work.tag[1], answer, error))
            log.info("direct_generation_id=%s outcome=%s", work.tag[1], "failed" if error else "succeeded")
            return
        database.when_answering(lambda session: ledger.cancel_chunk(session, work.claim.chunk_id))
        _log_chunk(work, "cancelled")


def _is_chunk_commit(item: object) -> bool:
    return isinstance(item, tuple) and item[0] == "done" and item[1].request is None


def _log_chunk(work: Work, outcome: str) -> None:
    claim = work.claim
    log.info("chunk_id=%s experiment_id=%s chunk_index=%s attempt=%s outcome=%s rows=%s",
             claim.chunk_id, claim.experiment_id, claim.chunk_index, claim.attempt, outcome, len(work.done))
