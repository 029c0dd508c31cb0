"""The chunk ledger: every state change of a chunk or an experiment, each in the caller's transaction.

At-least-once delivery is assumed. A chunk is claimed with a lease (owner, expiry), renewed while
it runs; a finished chunk is never run again; completions are insert-or-ignore on their unique
row key, so a chunk run twice writes nothing twice. The experiment's counters and per-alpha
totals change in the same transaction as the chunk, so they always equal what is stored.
Every function locks the experiment before the chunk, so no two of them can deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ldaq.rows import RowId, rows_in_range
from ldaq.statuses import FINISHED_CHUNK, FINISHED_EXPERIMENT
from ldaq.tables import Chunk, CompletionRecord, Experiment, Prompt, utcnow
from ldaq.totals import NamedHits, add_to_totals, insert_new_completions


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


def _lease_expiry(lease_seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=lease_seconds)


def _lock(session: Session, chunk_id: int) -> tuple[Experiment, Chunk] | None:
    """The chunk and its experiment, both locked (FOR UPDATE on Postgres; SQLite locks the file)."""
    experiment_id = session.scalar(select(Chunk.experiment_id).where(Chunk.id == chunk_id))
    if experiment_id is None:
        return None
    experiment = session.get(Experiment, experiment_id, with_for_update=True)
    chunk = session.scalars(select(Chunk).where(Chunk.id == chunk_id).with_for_update()).one()
    return experiment, chunk


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
    if locked is None:
        return None
    experiment, chunk = locked
    if chunk.status in FINISHED_CHUNK or _held_by_someone_else(chunk, owner):
        return None
    if experiment.cancel_requested:
        _finish_chunk(session, experiment, chunk, "cancelled", None)
        return None
    if chunk.attempts >= max_attempts:
        _finish_chunk(session, experiment, chunk, "failed", chunk.error or f"gave up after {chunk.attempts} attempts")
        return None
    chunk.attempts += 1
    chunk.status, chunk.lease_owner, chunk.lease_expires_at = "running", owner, _lease_expiry(lease_seconds)
    chunk.started_at = utcnow()
    if experiment.status == "queued":
        experiment.status, experiment.started_at = "running", utcnow()
    return _claim_of(session, chunk, experiment)


def claim_next_chunk(
    session: Session, model_pair: str, owner: str, lease_seconds: float, max_attempts: int
) -> ChunkClaim | None:
    """Claim the oldest queued chunk of `model_pair`; None once none is left to claim.

    The worker pulls its work from the ledger: the broker's message only wakes it.
    """
    while True:
        chunk_id = _oldest_queued_chunk(session, model_pair)
        if chunk_id is None:
            return None
        claim = claim_chunk(session, chunk_id, owner, lease_seconds, max_attempts)
        if claim is not None:
            return claim
        session.flush()  # it was taken, cancelled or failed for good: look again


def _oldest_queued_chunk(session: Session, model_pair: str) -> int | None:
    """One probe of the (status, model_pair, id) index."""
    return session.scalar(
        select(Chunk.id).where(Chunk.status == "queued", Chunk.model_pair == model_pair).order_by(Chunk.id).limit(1)
    )


def queued_chunks_remain(session: Session, model_pair: str) -> bool:
    return _oldest_queued_chunk(session, model_pair) is not None


def _claim_of(session: Session, chunk: Chunk, experiment: Experiment) -> ChunkClaim:
    params = experiment.params
    rows = rows_in_range(chunk.row_start, chunk.row_end, params["alphas"], params["samples_per_prompt"])
    wanted = sorted({row.prompt_index for row in rows})
    prompts = session.execute(
        select(Prompt.prompt_index, Prompt.text).where(
            Prompt.experiment_id == experiment.id, Prompt.prompt_index.between(wanted[0], wanted[-1])
        )
    ).all()
    return ChunkClaim(
        chunk_id=chunk.id,
        chunk_index=chunk.chunk_index,
        experiment_id=experiment.id,
        model_pair=experiment.model_pair,
        params=params,
        detector=experiment.detector,
        rows=rows,
        prompts=dict(prompts),
        attempt=chunk.attempts,
    )


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


def complete_chunk(
    session: Session, chunk_id: int, records: list[dict], run_seconds: float, model_seconds: float,
    named_hits: NamedHits | None = None,
) -> None:
    """Store the chunk's completions (and what the experiment's named detectors found in them), count them and
    mark it succeeded, in the caller's one transaction."""
    locked = _lock(session, chunk_id)
    if locked is None or locked[1].status == "succeeded":
        return
    experiment, chunk = locked
    add_to_totals(session, experiment, insert_new_completions(session, records), named_hits or {})
    chunk.run_seconds, chunk.model_seconds = run_seconds, model_seconds
    _finish_chunk(session, experiment, chunk, "succeeded", None)


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
    # A late success can follow a failure for good (a worker whose lease had expired finished after
    # all): move the chunk from one counter to the other, never count it twice.
    if chunk.status in FINISHED_CHUNK:
        _count_chunk(experiment, chunk.status, -1)
    chunk.status, chunk.error, chunk.finished_at = status, error, utcnow()
    chunk.lease_owner, chunk.lease_expires_at = None, None
    _count_chunk(experiment, status, +1)
    session.flush()
    refresh_experiment_status(session, experiment)


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
