"""The worker's rows, from the ledger: a `RowSource` that keeps the accelerator's batch full.

- Chunks are claimed ahead, on a background thread, while the batch runs: when rows end, the next
  rows are already claimed and tokenized. A batch holds rows of several chunks.
- A chunk whose rows have all ended is handed to the `ResultWriter`, which stores it on its own
  thread, off the generation path; each chunk is still committed once, in one transaction.
- A poller, every POLL_SECONDS, drops the rows of experiments a client cancelled and puts a waiting
  POST /generate request's rows at the front: they join the running batch at its next step.
- One heartbeat renews the lease of every chunk held (queued here, running, or being written).
A killed worker loses nothing: its leases expire and the sweeper requeues its chunks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from lda_core.explain import explain_tokens
from lda_core.generate import Completion, Row
from lda_core.models import ModelPair
from lda_core.runner import prompt_tokens
from ldaq import ledger
from worker.chunk_work import Work, is_explanation
from worker.claims import LedgerClaims
from worker.context import WorkerContext
from worker.lease import LeaseKeeper
from worker.on_demand import OnDemandThread
from worker.periodic import PeriodicThread
from worker.result_writer import ResultWriter

log = logging.getLogger("ldaq.worker")

POLL_SECONDS = 0.5


def _row_key(row: Row | Completion) -> tuple:
    return row.tag, row.prompt_index, row.alpha, row.sample_index


class LedgerRowSource:
    """Rows of the pair's queued chunks and direct requests, for `ContinuousBatcher.run`."""

    def __init__(self, context: WorkerContext, model_pair: str, pair: ModelPair) -> None:
        self.context, self.pair = context, pair
        self.target_rows = 1  # claim ahead once fewer rows wait (the batch size, set by the caller)
        self._lock = threading.Lock()
        self._ready: deque[Row] = deque()
        self._urgent: deque[Row] = deque()  # direct requests' rows: they start whatever the room
        self._works: dict[tuple, Work] = {}
        self._in_flight: dict[tuple, Row] = {}
        self._cancelled: set[str] = set()
        self._claim_ahead = OnDemandThread(self._claim_until_full, name="ldaq-claim-ahead")
        self._leases = LeaseKeeper(context.database, context.owner, context.settings.lease_seconds)
        self._claims = LedgerClaims(context, model_pair, pair, self._leases)
        self._writer = ResultWriter(context, self._leases)
        self._poller = PeriodicThread(POLL_SECONDS, self._poll, name="ldaq-poller")

    @property
    def chunks_written(self) -> int:
        return self._writer.chunks_written

    def __enter__(self) -> LedgerRowSource:
        self._leases.__enter__()
        self._claim_ahead.start()
        self._writer.start()
        self._poller.start()
        return self

    def stop_polling(self) -> None:
        """No more direct requests or cancel flags from now on; stopping twice is harmless."""
        self._poller.stop()

    def __exit__(self, *exc_info) -> None:
        self.stop_polling()
        self._claim_ahead.stop()
        self._writer.stop()
        self._leases.__exit__(*exc_info)

    # --- the RowSource protocol -------------------------------------------------------------------

    def take(self, count: int) -> list[Row]:
        """Waiting direct-request rows, then up to `count` claimed rows; claims now only when nothing runs."""
        if count and self._idle():
            self.has_work()
        if self._retried_chunk_is_next():
            self._writer.flush()  # what finished is stored before a chunk that may crash the worker starts
        with self._lock:
            if self._isolated() is None:
                taken = [*self._urgent, *self._take_ready(count)]
                self._urgent.clear()
            else:
                taken = self._take_ready(count)
            now = time.perf_counter()
            for row in taken:
                self._in_flight[_row_key(row)] = row
                work = self._works[row.tag]
                work.first_started_at = work.first_started_at or now
        return taken

    def _retried_chunk_is_next(self) -> bool:
        with self._lock:
            return bool(self._ready) and not self._in_flight and self._works[self._ready[0].tag].retried

    def _isolated(self) -> tuple | None:
        """(Locked.) The tag of a retried chunk running alone, if one is."""
        return next((row.tag for row in self._in_flight.values() if self._works[row.tag].retried), None)

    def _take_ready(self, count: int) -> list[Row]:
        """(Locked.) Up to `count` waiting rows in order. A retried chunk (a crash may have killed the worker
        it ran on) runs alone, so a row that kills its worker cannot take innocent chunks down with it."""
        taken: list[Row] = []
        isolated = self._isolated()
        while self._ready and len(taken) < count:
            row = self._ready[0]
            if isolated is not None and row.tag != isolated:
                break
            if isolated is None and self._works[row.tag].retried:
                if self._in_flight or taken:
                    break
                isolated = row.tag
            taken.append(self._ready.popleft())
        return taken

    def finished(self, completions: list[Completion]) -> None:
        now = time.perf_counter()
        self._explain_any(completions)
        with self._lock:
            for completion in completions:
                self._in_flight.pop(_row_key(completion), None)
                work = self._works.get(completion.tag)
                if work is None:  # its experiment was cancelled while the row ran its last step
                    continue
                work.done.append(completion)
                work.last_finished_at = now
                if work.complete:
                    del self._works[work.tag]
                    self._writer.done(work)
            if not (self._in_flight or self._ready or self._urgent):
                self._writer.write_now()
            short = len(self._ready) < self.target_rows
        if short:  # after the step, not before an admission's prefill, which it would slow
            self._start_claiming_ahead()

    def _explain_any(self, completions: list[Completion]) -> None:
        """An explain request's row has run: explain its tokens now, on the generation thread (one forward of
        each model over one sequence), outside the lock the poller and the claims take."""
        with self._lock:
            pending = [(self._works[c.tag], self._in_flight[_row_key(c)], c) for c in completions
                       if c.tag in self._works and _row_key(c) in self._in_flight and is_explanation(self._works[c.tag])]
        for work, row, completion in pending:
            self._explain(work, row, completion)

    def _explain(self, work: Work, row: Row, completion: Completion) -> None:
        if completion.error:
            return
        try:
            work.explanation = explain_tokens(self.pair, row, completion.token_ids, row.settings)
        except Exception as error:  # the request is answered with it; the batch runs on
            log.exception("explaining %s failed", work.tag)
            work.explanation_error = f"{type(error).__name__}: {error}"

    def cancelled(self, rows: list[Row]) -> list[bool]:
        with self._lock:
            self._drop_cancelled_works()
            return [row.tag not in self._works for row in rows]  # the poller may have dropped works already

    def urgent(self) -> bool:
        with self._lock:
            return bool(self._urgent) and self._isolated() is None

    # --- used by the drain loop ------------------------------------------------------------------

    def _idle(self) -> bool:
        with self._lock:
            return not (self._ready or self._urgent or self._in_flight)

    def has_work(self) -> bool:
        """Whether rows wait or run; claims the next work now (a direct request first) when none does."""
        self._wait_for_claiming_ahead()
        return not self._idle() or self._claim_direct_request() or self._claim_chunks(1)

    def fill(self) -> None:
        """Claim now, on this thread, until `target_rows` rows wait or the ledger has no more."""
        self._wait_for_claiming_ahead()
        self._claim_until_full()

    def shape(self) -> tuple[int, int]:
        """The longest waiting prompt in tokens and the most new tokens a waiting row asks for: what a
        batch of them needs memory for."""
        with self._lock:
            waiting = [*self._urgent, *self._ready]
        lengths = prompt_tokens(self.pair, waiting)
        return max(lengths.values(), default=1), max((row.settings.max_new_tokens for row in waiting), default=1)

    def requeue_in_flight(self) -> None:
        """After an out-of-memory error: every running row back to the front of the queue, in order."""
        with self._lock:
            rows = list(self._in_flight.values())
            self._in_flight.clear()
            self._ready.extendleft(reversed(rows))

    def fail_in_flight(self, reason: str) -> None:
        """After an out-of-memory error with a batch of one: the running row ends as an error row."""
        with self._lock:
            rows = list(self._in_flight.values())
        self.finished([Completion.failed(row, reason) for row in rows])

    def fail_all(self, reason: str) -> bool:
        """After an error the batch cannot go on from: every chunk held goes back to the queue (or fails
        for good after its attempts), every direct request is answered with the error. Whether any
        chunk will be retried. Claiming ahead ends first: a chunk it registered afterwards would be held, unrun,
        until its lease ran out."""
        self._wait_for_claiming_ahead()
        with self._lock:
            works = list(self._works.values())
            self._works.clear()
            self._ready.clear()
            self._urgent.clear()
            self._in_flight.clear()
        retry = False
        for work in works:
            retry |= self._writer.failed(work, reason)
        return retry

    # --- claiming --------------------------------------------------------------------------------

    def _wait_for_claiming_ahead(self) -> None:
        self._claim_ahead.wait()

    def _start_claiming_ahead(self) -> None:
        if self._claims.worth_claiming_ahead():
            self._claim_ahead.ask()

    def _claim_until_full(self) -> None:
        """Once fewer than `target_rows` rows wait, claim a whole batch's worth more: between `target_rows` and
        twice as many wait, and each claiming transaction takes several chunks (its fixed work runs beside
        generation, so once per batch rather than once per chunk)."""
        try:
            while len(self._ready) < self.target_rows and self._claim_chunks(self.target_rows):
                pass
        except Exception:  # the drain loop claims again when it runs dry
            log.exception("claiming ahead failed")

    def _claim_chunks(self, rows_wanted: int) -> bool:
        """Claim chunks holding `rows_wanted` rows; whether there were any."""
        works = self._claims.next_chunks(rows_wanted)
        for work in works:
            self._register(work, self._ready)
        return bool(works)

    def _claim_direct_request(self) -> bool:
        return self._register(self._claims.next_direct_request(), self._urgent)

    def _register(self, work: Work | None, line: deque[Row]) -> bool:
        """A claimed work's rows wait in `line`; one whose rows all ended at screening is written at once.
        Whether there was a work (None: nothing to claim)."""
        if work is None:
            return False
        with self._lock:
            if work.complete:
                self._writer.done(work)
                return True
            self._works[work.tag] = work
            line.extend(work.rows)
        return True

    # --- the poller ------------------------------------------------------------------------------

    def _poll(self) -> None:
        with self._lock:
            experiments = {work.experiment_id for work in self._works.values() if work.claim is not None}
        with self.context.database.read() as session:
            cancelled = ledger.cancelled_among(session, experiments)
        with self._lock:
            self._cancelled = cancelled
            if cancelled:
                self._drop_cancelled_works()
        while self._claim_direct_request():
            pass

    def _drop_cancelled_works(self) -> None:
        """(Locked.) Forget cancelled experiments' chunks: their waiting and running rows, and tell the ledger."""
        if not self._cancelled:
            return
        for work in [w for w in self._works.values() if w.experiment_id in self._cancelled]:
            del self._works[work.tag]
            self._ready = deque(row for row in self._ready if row.tag != work.tag)
            for key in [key for key, row in self._in_flight.items() if row.tag == work.tag]:
                del self._in_flight[key]
            self._writer.cancelled(work)
