"""Taking work from the ledger: the next queued chunk of a pair, or the next waiting POST /generate
request, as a `Work` whose rows are tokenized and screened, ready for the batch."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

from lda_core.models import ModelPair
from lda_core.runner import prompt_tokens, screen_rows
from ldaq.direct_generation import claim_next_direct_generation
from worker.chunk_work import Work, chunk_work, direct_work
from worker.context import WorkerContext
from worker.lease import LeaseKeeper

EMPTY_LEDGER_RECHECK_SECONDS = 1.0  # after finding no queued chunk, claiming ahead waits this long to look again


class LedgerClaims:
    """Claims one pair's work; every chunk claimed is held by `leases` until it is written."""

    def __init__(self, context: WorkerContext, model_pair: str, pair: ModelPair, leases: LeaseKeeper) -> None:
        # Its own tokenizer, used by one thread at a time: a fast tokenizer keeps its padding settings in
        # shared state, so screening a claim (no padding) on the claim-ahead or poller thread while the batch
        # tokenizes its prompts (padding) on the generation thread can leave the batch's rows ragged.
        self.pair = replace(pair, tokenizer=copy.deepcopy(pair.tokenizer))
        self.context, self.model_pair, self.leases = context, model_pair, leases
        self._tokenizing = threading.Lock()
        self._ledger_empty_until = 0.0

    def worth_claiming_ahead(self) -> bool:
        """False for a short while after the ledger had no queued chunk, so claiming ahead does not spin."""
        return time.monotonic() >= self._ledger_empty_until

    def next_chunks(self, rows_wanted: int) -> list[Work]:
        """The oldest queued chunks, at least one, until they hold `rows_wanted` rows: claimed in one
        transaction (in the record store's process, off this one's GIL), tokenized and screened. [] when none
        is queued."""
        settings = self.context.settings
        claims = self.context.records.claim(self.model_pair, self.context.owner, settings.lease_seconds,
                                            settings.max_attempts, rows_wanted)
        if not claims:
            self._ledger_empty_until = time.monotonic() + EMPTY_LEDGER_RECHECK_SECONDS
            return []
        for claim in claims:
            self.leases.hold(claim.chunk_id)
        with self._tokenizing:
            return [self._screened(chunk_work(claim, self.pair.tokenizer, time.perf_counter())) for claim in claims]

    def next_direct_request(self) -> Work | None:
        with self.context.database.transaction() as session:
            claimed = claim_next_direct_generation(session, self.model_pair)
        if claimed is None:
            return None
        with self._tokenizing:
            return self._screened(direct_work(*claimed, self.pair.tokenizer, time.perf_counter()))

    def _screened(self, work: Work) -> Work:
        """Rows too long for the context window end at once as errors; the others stay to run."""
        if work.rows:
            lengths = prompt_tokens(self.pair, work.rows)
            work.rows, refused = screen_rows(self.pair, work.rows, work.rows[0].settings, lengths)
            work.done += refused
        return work
