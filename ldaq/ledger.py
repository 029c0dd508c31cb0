"""The chunk ledger: every state change of a chunk or an experiment, each in the caller's transaction.

At-least-once delivery is assumed. A chunk is claimed with a lease (owner, expiry), renewed while
it runs; a finished chunk is never run again, and a chunk's completions commit with its succeeded
status, the chunk locked, so a chunk run twice writes nothing twice (their unique row key would refuse it). The experiment's counters and per-alpha
totals change in the same transaction as the chunk, so they always equal what is stored.
Every function locks the experiment before the chunk, so no two of them can deadlock.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ldaq.rows import RowId, rows_in_range
from ldaq.statuses import FINISHED_CHUNK, FINISHED_EXPERIMENT
from ldaq.tables import Chunk, CompletionRecord, Experiment, Prompt, utcnow
from ldaq.totals import NamedHits, add_to_totals, insert_completions


@dataclass(frozen=True)
class ChunkClaim:
    """What a worker needs to run a claimed chunk, read in the claiming transaction."""

    chunk_id: int
    chunk_index: int
    experiment_id: str
    model_pair: str
    params: dict
    detector: dict
    rows: list[RowId]
    prompts: dict[int, str]
    attempt: int


MAX_CHUNKS_PER_CLAIM = 32  # chunks one claiming transaction takes at most: bounds how long it holds its locks


def _lease_expiry(lease_seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=lease_seconds)


def _lock(session: Session, chunk_id: int) -> tuple[Experiment, Chunk] | None:
    """The chunk and its experiment, both locked (FOR UPDATE on Postgres; SQLite locks the file)."""
    return _lock_many(session, [chunk_id]).get(chunk_id)


def _lock_many(session: Session, chunk_ids: list[int]) -> dict[int, tuple[Experiment, Chunk]]:
    """Known chunks among `chunk_ids`, each with its experiment, all locked: every experiment first, then every
    chunk, each kind in id order, so that two transactions locking overlapping sets cannot deadlock. Locked rows
    are read afresh, never taken stale from the session."""
    experiment_ids = session.scalars(select(Chunk.experiment_id).where(Chunk.id.in_(chunk_ids)).distinct()).all()
    if not experiment_ids:
        return {}
    fresh = {"populate_existing": True}
    experiments = {experiment.id: experiment for experiment in session.scalars(
        select(Experiment).where(Experiment.id.in_(experiment_ids)).order_by(Experiment.id)
        .with_for_update().execution_options(**fresh)
    )}
    chunks = session.scalars(
        select(Chunk).where(Chunk.id.in_(chunk_ids)).order_by(Chunk.id).with_for_update().execution_options(**fresh)
    )
    return {chunk.id: (experiments[chunk.experiment_id], chunk) for chunk in chunks}


def _lock_unfinished(session: Session, chunk_id: int) -> tuple[Experiment, Chunk] | None:
    """As `_lock`, or None when the chunk is unknown or already finished (nothing left to change)."""
    locked = _lock(session, chunk_id)
    return locked if locked is not None and locked[1].status not in FINISHED_CHUNK else None


def _held_by_someone_else(chunk: Chunk, owner: str) -> bool:
    lease_alive = chunk.lease_expires_at is not None and chunk.lease_expires_at > utcnow()
    return chunk.status == "running" and lease_alive and chunk.lease_owner != owner


def claim_chunk(
    session: Session, chunk_id: int, owner: str, lease_seconds: float, max_attempts: int
) -> ChunkClaim | None:
    """Take the chunk for `owner`, or return None when there is nothing to run.

    Nothing to run: unknown or finished chunk, a live lease held by another worker, a cancelled
    experiment, or a chunk that already used up its attempts (it then fails for good: a chunk
    that kills its worker every time must not loop forever).
    """
    locked = _lock(session, chunk_id)
    if locked is None or not _take(session, *locked, owner, lease_seconds, max_attempts):
        return None
    return _claims_of(session, [locked])[0]


def _take(
    session: Session, experiment: Experiment, chunk: Chunk, owner: str, lease_seconds: float, max_attempts: int
) -> bool:
    """(Both locked.) Lease the chunk to `owner`; False, with the chunk finished where it must be, when there is
    nothing to run (see `claim_chunk`)."""
    if chunk.status in FINISHED_CHUNK or _held_by_someone_else(chunk, owner):
        return False
    if experiment.cancel_requested:
        _finish_chunk(session, experiment, chunk, "cancelled", None)
        return False
    if chunk.attempts >= max_attempts:
        _finish_chunk(session, experiment, chunk, "failed", chunk.error or f"gave up after {chunk.attempts} attempts")
        return False
    chunk.attempts += 1
    chunk.status, chunk.lease_owner, chunk.lease_expires_at = "running", owner, _lease_expiry(lease_seconds)
    chunk.started_at = utcnow()
    if experiment.status == "queued":
        experiment.status, experiment.started_at = "running", utcnow()
    return True


def claim_next_chunk(
    session: Session, model_pair: str, owner: str, lease_seconds: float, max_attempts: int
) -> ChunkClaim | None:
    """Claim the oldest queued chunk of `model_pair`; None once none is left to claim."""
    claims = claim_next_chunks(session, model_pair, owner, lease_seconds, max_attempts, rows_wanted=1)
    return claims[0] if claims else None


def claim_next_chunks(
    session: Session, model_pair: str, owner: str, lease_seconds: float, max_attempts: int, rows_wanted: int
) -> list[ChunkClaim]:
    """Claim the oldest queued chunks of `model_pair`, at least one, until they hold `rows_wanted` rows or none
    is left (at most MAX_CHUNKS_PER_CLAIM), in the caller's one transaction.

    The worker pulls its work from the ledger: the broker's message only wakes it. A batch needs rows of
    several chunks at once; one transaction for all of them costs the ledger's fixed work once, beside
    generation, not once per chunk.
    """
    taken: list[tuple[Experiment, Chunk]] = []
    rows = 0
    while rows < rows_wanted and len(taken) < MAX_CHUNKS_PER_CLAIM:
        candidates = _oldest_queued_chunks(session, model_pair, rows_wanted - rows, MAX_CHUNKS_PER_CLAIM - len(taken))
        if not candidates:
            break
        locked = _lock_many(session, candidates)
        for chunk_id in candidates:
            if chunk_id in locked and _take(session, *locked[chunk_id], owner, lease_seconds, max_attempts):
                experiment, chunk = locked[chunk_id]
                taken.append((experiment, chunk))
                rows += chunk.row_end - chunk.row_start
        session.flush()  # those taken, cancelled or failed for good meanwhile are no longer queued: look again
    return _claims_of(session, taken)


def _oldest_queued_chunks(session: Session, model_pair: str, rows_wanted: int, most: int) -> list[int]:
    """The oldest queued chunks of `model_pair` that together hold `rows_wanted` rows (one probe of the
    (status, model_pair, id) index)."""
    found = session.execute(
        select(Chunk.id, Chunk.row_end - Chunk.row_start)
        .where(Chunk.status == "queued", Chunk.model_pair == model_pair).order_by(Chunk.id).limit(most)
    ).all()
    wanted, rows = [], 0
    for chunk_id, size in found:
        if rows >= rows_wanted:
            break
        wanted.append(chunk_id)
        rows += size
    return wanted


def queued_chunks_remain(session: Session, model_pair: str, beyond: int) -> bool:
    """Whether more than `beyond` chunks of `model_pair` are queued."""
    return len(_oldest_queued_chunks(session, model_pair, rows_wanted=sys.maxsize, most=beyond + 1)) > beyond


def _claims_of(session: Session, taken: list[tuple[Experiment, Chunk]]) -> list[ChunkClaim]:
    """What the worker needs of each taken chunk; each experiment's prompts read in one query."""
    rows = {chunk.id: rows_in_range(chunk.row_start, chunk.row_end, experiment.params["alphas"],
                                    experiment.params["samples_per_prompt"]) for experiment, chunk in taken}
    indexes = {chunk_id: sorted({row.prompt_index for row in chunk_rows}) for chunk_id, chunk_rows in rows.items()}
    wanted: dict[str, set[int]] = {}
    for experiment, chunk in taken:
        wanted.setdefault(experiment.id, set()).update(indexes[chunk.id])
    texts = {experiment_id: dict(session.execute(
        select(Prompt.prompt_index, Prompt.text)
        .where(Prompt.experiment_id == experiment_id, Prompt.prompt_index.in_(sorted(prompt_indexes)))
    ).all()) for experiment_id, prompt_indexes in wanted.items()}
    return [ChunkClaim(
        chunk_id=chunk.id,
        chunk_index=chunk.chunk_index,
        experiment_id=experiment.id,
        model_pair=experiment.model_pair,
        params=experiment.params,
        detector=experiment.detector,
        rows=rows[chunk.id],
        prompts={index: texts[experiment.id][index] for index in indexes[chunk.id]},
        attempt=chunk.attempts,
    ) for experiment, chunk in taken]


def renew_lease(session: Session, chunk_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend the lease while the chunk runs; False when the lease is no longer ours."""
    result = session.execute(
        update(Chunk)
        .where(Chunk.id == chunk_id, Chunk.lease_owner == owner, Chunk.status == "running")
        .values(lease_expires_at=_lease_expiry(lease_seconds))
    )
    return result.rowcount == 1


def cancelled_among(session: Session, experiment_ids: set[str]) -> set[str]:
    """Which of these experiments a client has asked to cancel (one indexed read, whatever their number)."""
    if not experiment_ids:
        return set()
    return set(session.scalars(
        select(Experiment.id).where(Experiment.id.in_(experiment_ids), Experiment.cancel_requested.is_(True))
    ))


class ChunkOutcome(NamedTuple):
    """A chunk whose rows all ran, as the ledger stores it."""

    chunk_id: int
    records: list[dict]  # its completions with their detections (`CompletionRecord`'s columns)
    run_seconds: float
    model_seconds: float
    named_hits: NamedHits | None = None  # what the experiment's named detectors found in them


def complete_chunk(
    session: Session, chunk_id: int, records: list[dict], run_seconds: float, model_seconds: float,
    named_hits: NamedHits | None = None,
) -> None:
    """Store the chunk's completions (and what the experiment's named detectors found in them), count them and
    mark it succeeded, in the caller's one transaction."""
    complete_chunks(session, [ChunkOutcome(chunk_id, records, run_seconds, model_seconds, named_hits)])


def complete_chunks(session: Session, outcomes: list[ChunkOutcome]) -> None:
    """`complete_chunk` for several chunks in the caller's one transaction: each experiment's rows are inserted
    and counted together, so a worker's finished chunks cost the ledger's fixed work once, not once each. A
    chunk that already succeeded (run twice) changes nothing."""
    locked = _lock_many(session, [outcome.chunk_id for outcome in outcomes])
    by_experiment: dict[str, list[ChunkOutcome]] = {}
    for outcome in outcomes:
        if outcome.chunk_id in locked and locked[outcome.chunk_id][1].status != "succeeded":
            by_experiment.setdefault(locked[outcome.chunk_id][0].id, []).append(outcome)
    for group in by_experiment.values():
        experiment = locked[group[0].chunk_id][0]
        inserted = insert_completions(session, [record for outcome in group for record in outcome.records])
        add_to_totals(session, experiment, inserted, _merged_hits(group))
        for outcome in group:
            chunk = locked[outcome.chunk_id][1]
            chunk.run_seconds, chunk.model_seconds = outcome.run_seconds, outcome.model_seconds
            _mark_finished(experiment, chunk, "succeeded", None)
        session.flush()
        refresh_experiment_status(session, experiment)


def _merged_hits(outcomes: list[ChunkOutcome]) -> NamedHits:
    merged: NamedHits = {}
    for outcome in outcomes:
        for name, hits in (outcome.named_hits or {}).items():
            merged.setdefault(name, {}).update(hits)
    return merged


def release_for_retry(session: Session, chunk_id: int, error: str, max_attempts: int) -> bool:
    """After a failed run: back to queued if attempts remain (True), else failed for good."""
    locked = _lock_unfinished(session, chunk_id)
    if locked is None:
        return False
    experiment, chunk = locked
    if chunk.attempts >= max_attempts:
        _finish_chunk(session, experiment, chunk, "failed", error)
        return False
    chunk.status, chunk.error, chunk.lease_owner, chunk.lease_expires_at = "queued", error, None, None
    chunk.enqueued_at = utcnow()
    return True


def cancel_chunk(session: Session, chunk_id: int) -> None:
    locked = _lock_unfinished(session, chunk_id)
    if locked is not None:
        _finish_chunk(session, *locked, "cancelled", None)


def _count_chunk(experiment: Experiment, status: str, change: int) -> None:
    counter = f"chunks_{status}"
    setattr(experiment, counter, getattr(experiment, counter) + change)


def _finish_chunk(session: Session, experiment: Experiment, chunk: Chunk, status: str, error: str | None) -> None:
    _mark_finished(experiment, chunk, status, error)
    session.flush()
    refresh_experiment_status(session, experiment)


def _mark_finished(experiment: Experiment, chunk: Chunk, status: str, error: str | None) -> None:
    # A late success can follow a failure for good (a worker whose lease had expired finished after
    # all): move the chunk from one counter to the other, never count it twice.
    if chunk.status in FINISHED_CHUNK:
        _count_chunk(experiment, chunk.status, -1)
    chunk.status, chunk.error, chunk.finished_at = status, error, utcnow()
    chunk.lease_owner, chunk.lease_expires_at = None, None
    _count_chunk(experiment, status, +1)


def chunks_unfinished(experiment: Experiment) -> int:
    return experiment.chunks_total - experiment.chunks_succeeded - experiment.chunks_failed - experiment.chunks_cancelled


def _final_status(experiment: Experiment) -> str:
    """`partial` when some rows ran and some did not (a failed chunk, or rows stored as errors)."""
    failed, errored = experiment.chunks_failed, experiment.completions_errored
    ran = experiment.completions_done - errored
    if experiment.cancel_requested and experiment.chunks_cancelled:
        return "cancelled"
    if not (failed or errored):
        return "succeeded"
    return "partial" if ran else "failed"


def refresh_experiment_status(session: Session, experiment: Experiment) -> None:
    """Finish the (locked) experiment once none of its chunks is queued or running."""
    if experiment.status in FINISHED_EXPERIMENT or chunks_unfinished(experiment):
        return
    experiment.status = _final_status(experiment)
    experiment.finished_at = utcnow()
    experiment.error = "; ".join(_failure_summaries(session, experiment)) or None


def _failure_summaries(session: Session, experiment: Experiment) -> list[str]:
    """What did not run, with the first reason of each kind: failed chunks, then rows stored as errors."""
    summaries = []
    if experiment.chunks_failed:
        first_error = session.scalar(
            select(Chunk.error).where(Chunk.experiment_id == experiment.id, Chunk.status == "failed").limit(1)
        )
        summaries.append(f"{experiment.chunks_failed} of {experiment.chunks_total} chunks failed; first error: {first_error}")
    if experiment.completions_errored:
        first_error = session.scalar(
            select(CompletionRecord.error)
            .where(CompletionRecord.experiment_id == experiment.id, CompletionRecord.error.is_not(None))
            .limit(1)
        )
        summaries.append(
            f"{experiment.completions_errored} of {experiment.completions_total} completions could not run; "
            f"first error: {first_error}"
        )
    return summaries


def request_cancel(session: Session, experiment: Experiment) -> None:
    """Set the cancel flag on the locked experiment; queued chunks are cancelled now, running ones at
    their next batch. One UPDATE, whatever the number of chunks: no message is sent or left behind."""
    experiment.cancel_requested = True
    cancelled = session.execute(
        update(Chunk)
        .where(Chunk.experiment_id == experiment.id, Chunk.status == "queued")
        .values(status="cancelled", finished_at=utcnow())
    ).rowcount
    experiment.chunks_cancelled += cancelled
    session.flush()
    refresh_experiment_status(session, experiment)


def chunk_intervals(session: Session, experiment_id: str) -> list[tuple[datetime, datetime]]:
    """When each of the experiment's finished chunks was held by a worker: claimed, then written."""
    return [(started, finished) for started, finished in session.execute(
        select(Chunk.started_at, Chunk.finished_at).where(
            Chunk.experiment_id == experiment_id, Chunk.status == "succeeded", Chunk.started_at.is_not(None)
        )
    )]
