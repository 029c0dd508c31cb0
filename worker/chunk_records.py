"""A finished chunk as the ledger stores it: its completions with their detections, what its named detectors
found, and the one transaction that commits it with any others that finished beside it.

Torch-free on purpose: `worker.record_store` runs this in its own process, so that detecting and inserting
never hold the generation process's GIL.
"""

from __future__ import annotations

from typing import NamedTuple

from lda_core.detect import Detection, Detector
from lda_core.reweight import alpha0_weight
from ldaq import ledger
from ldaq.db import Database
from ldaq.ledger import ChunkClaim, ChunkOutcome
from ldaq.tables import storable
from ldaq.totals import NamedHits

NOT_DETECTED = Detection(False, None)


class FinishedRow(NamedTuple):
    """What the ledger keeps of one completion (lda_core's `Completion` without its token ids)."""

    prompt_index: int
    alpha: float
    sample_index: int
    text: str
    tokens: int
    finish_reason: str
    error: str | None
    log_weight: float | None


class FinishedChunk(NamedTuple):
    """A chunk whose rows have all ended, with how long it took: everything its commit needs."""

    claim: ChunkClaim
    rows: list[FinishedRow]
    run_seconds: float
    model_seconds: float


def _record(claim: ChunkClaim, row: FinishedRow, detector: Detector, keep_all_text: bool) -> dict:
    # A row that did not run has no answer to detect in (a pattern like `^$` would match its empty text).
    detection = NOT_DETECTED if row.error else detector.detect(row.text)
    kept = row.error is None and (keep_all_text or detection.activated)
    return {
        "experiment_id": claim.experiment_id,
        "chunk_index": claim.chunk_index,
        "prompt_index": row.prompt_index,
        "alpha": row.alpha,
        "sample_index": row.sample_index,
        "text": storable(row.text) if kept else None,
        "tokens": row.tokens,
        "finish_reason": row.finish_reason,
        "activated": detection.activated,
        "match": storable(detection.match) if detection.match else None,
        "error": row.error,
        "alpha0_weight": None if row.log_weight is None else alpha0_weight(row.log_weight),
    }


def chunk_records(claim: ChunkClaim, rows: list[FinishedRow]) -> list[dict]:
    """The chunk's completions with their detections, as the ledger stores them."""
    detector = Detector.from_spec(claim.detector)
    keep_all_text = claim.params.get("keep_text", "all") == "all"
    return [_record(claim, row, detector, keep_all_text) for row in rows]


def named_hits(claim: ChunkClaim, rows: list[FinishedRow]) -> NamedHits:
    """What each of the experiment's named detectors (`detectors`, given at submit) found: row key -> match."""
    found: NamedHits = {}
    for spec in claim.params.get("detectors", []):
        detector = Detector.from_spec(spec)
        detections = ((row, detector.detect(row.text)) for row in rows if not row.error)
        found[spec["name"]] = {(row.prompt_index, row.alpha, row.sample_index): storable(detection.match)
                               for row, detection in detections if detection.activated}
    return found


def commit_chunks(database: Database, chunks: list[FinishedChunk]) -> None:
    """Store the chunks' completions and hits and mark them succeeded, in one transaction (again while the
    database does not answer): chunks that finished together cost the ledger's fixed work once."""
    outcomes = [ChunkOutcome(chunk.claim.chunk_id, chunk_records(chunk.claim, chunk.rows), chunk.run_seconds,
                             max(0.0, chunk.model_seconds), named_hits(chunk.claim, chunk.rows)) for chunk in chunks]
    database.when_answering(lambda session: ledger.complete_chunks(session, outcomes))
