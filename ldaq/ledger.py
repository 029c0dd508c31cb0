"""The chunk ledger: every state change of a chunk or an experiment, each in the caller's transaction.

At-least-once delivery is assumed. A chunk is claimed with a lease (owner, expiry), renewed while
it runs; a finished chunk is never run again; completions are insert-or-ignore on their unique
row key, so a chunk run twice writes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ldaq.rows import RowId, rows_in_range
from ldaq.statuses import FINISHED_CHUNK, FINISHED_EXPERIMENT
from ldaq.tables import Chunk, CompletionRecord, Experiment, Prompt, utcnow


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


def _lock_chunk(session: Session, chunk_id: int) -> Chunk | None:
    # FOR UPDATE on Postgres; on SQLite every transaction already holds the write lock.
    return session.scalars(select(Chunk).where(Chunk.id == chunk_id).with_for_update()).first()


def _lock_unfinished_chunk(session: Session, chunk_id: int) -> Chunk | None:
    """The locked chunk, or None when it is unknown or already finished (nothing left to change)."""
    chunk = _lock_chunk(session, chunk_id)
    return chunk if chunk is not None and chunk.status not in FINISHED_CHUNK else None


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
    experiment_id = session.scalar(select(Chunk.experiment_id).where(Chunk.id == chunk_id))
    if experiment_id is None:
        return None
    # Experiment before chunk, the order request_cancel takes them in: no deadlock between the two.
    experiment = session.get(Experiment, experiment_id, with_for_update=True)
    chunk = _lock_chunk(session, chunk_id)
    if chunk.status in FINISHED_CHUNK or _held_by_someone_else(chunk, owner):
        return None
    if experiment.cancel_requested:
        _finish_chunk(session, chunk, "cancelled", None)
        return None
    if chunk.attempts >= max_attempts:
        _finish_chunk(session, chunk, "failed", chunk.error or f"gave up after {chunk.attempts} attempts")
        return None
    chunk.attempts += 1
    chunk.status, chunk.lease_owner, chunk.lease_expires_at = "running", owner, _lease_expiry(lease_seconds)
    chunk.started_at = utcnow()
    if experiment.status == "queued":
        experiment.status, experiment.started_at = "running", utcnow()
    return _claim_of(session, chunk, experiment)


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


def cancel_requested(session: Session, experiment_id: str) -> bool:
    return bool(session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id)))


def _insert_ignoring_duplicates(session: Session, records: list[dict]) -> None:
    if not records:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(CompletionRecord).values(records)
    session.execute(statement.on_conflict_do_nothing(index_elements=["experiment_id", "prompt_index", "alpha", "sample_index"]))


def complete_chunk(
    session: Session, chunk_id: int, records: list[dict], run_seconds: float, model_seconds: float
) -> None:
    """Store the chunk's completions and mark it succeeded, in the caller's one transaction."""
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None or chunk.status == "succeeded":
        return
    _insert_ignoring_duplicates(session, records)
    chunk.run_seconds, chunk.model_seconds = run_seconds, model_seconds
    _finish_chunk(session, chunk, "succeeded", None)


def release_for_retry(session: Session, chunk_id: int, error: str, max_attempts: int) -> bool:
    """After a failed run: back to queued if attempts remain (True), else failed for good."""
    chunk = _lock_unfinished_chunk(session, chunk_id)
    if chunk is None:
        return False
    if chunk.attempts >= max_attempts:
        _finish_chunk(session, chunk, "failed", error)
        return False
    chunk.status, chunk.error, chunk.lease_owner, chunk.lease_expires_at = "queued", error, None, None
    chunk.enqueued_at = utcnow()
    return True


def fail_chunk(session: Session, chunk_id: int, error: str) -> None:
    """Fail a chunk for good: retrying cannot help (a batch of one does not fit, say)."""
    chunk = _lock_unfinished_chunk(session, chunk_id)
    if chunk is not None:
        _finish_chunk(session, chunk, "failed", error)


def cancel_chunk(session: Session, chunk_id: int) -> None:
    chunk = _lock_unfinished_chunk(session, chunk_id)
    if chunk is not None:
        _finish_chunk(session, chunk, "cancelled", None)


def _finish_chunk(session: Session, chunk: Chunk, status: str, error: str | None) -> None:
    chunk.status, chunk.error, chunk.finished_at = status, error, utcnow()
    chunk.lease_owner, chunk.lease_expires_at = None, None
    session.flush()
    refresh_experiment_status(session, chunk.experiment_id)


def chunk_status_counts(session: Session, experiment_ids: list[str]) -> dict[str, dict[str, int]]:
    """experiment id -> chunk status -> how many (an experiment with no chunks is absent)."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(Chunk.experiment_id, Chunk.status, func.count())
        .where(Chunk.experiment_id.in_(experiment_ids))
        .group_by(Chunk.experiment_id, Chunk.status)
    )
    for experiment_id, status, count in rows:
        counts.setdefault(experiment_id, {})[status] = count
    return counts


def _final_status(counts: dict[str, int], cancel_requested_flag: bool) -> str:
    succeeded, failed = counts.get("succeeded", 0), counts.get("failed", 0)
    if cancel_requested_flag and counts.get("cancelled", 0):
        return "cancelled"
    if failed and succeeded:
        return "partial"
    return "failed" if failed else "succeeded"


def refresh_experiment_status(session: Session, experiment_id: str) -> None:
    """Finish the experiment once none of its chunks is queued or running."""
    experiment = session.get(Experiment, experiment_id, with_for_update=True)
    if experiment is None or experiment.status in FINISHED_EXPERIMENT:
        return
    counts = chunk_status_counts(session, [experiment_id]).get(experiment_id, {})
    if counts.get("queued", 0) or counts.get("running", 0):
        return
    experiment.status = _final_status(counts, experiment.cancel_requested)
    experiment.finished_at = utcnow()
    if counts.get("failed", 0):
        first_error = session.scalar(
            select(Chunk.error).where(Chunk.experiment_id == experiment_id, Chunk.status == "failed").limit(1)
        )
        experiment.error = f"{counts['failed']} of {sum(counts.values())} chunks failed; first error: {first_error}"


def request_cancel(session: Session, experiment_id: str) -> None:
    """Set the cancel flag; queued chunks are cancelled now, a running one at its next batch."""
    experiment = session.get(Experiment, experiment_id, with_for_update=True)
    experiment.cancel_requested = True
    session.execute(
        update(Chunk)
        .where(Chunk.experiment_id == experiment_id, Chunk.status == "queued")
        .values(status="cancelled", finished_at=utcnow())
    )
    session.flush()
    refresh_experiment_status(session, experiment_id)


def requeue_expired_leases(session: Session) -> list[tuple[int, str]]:
    """Running chunks whose worker stopped renewing (killed, say): back to queued. Returns what to ring."""
    now = utcnow()
    expired = session.scalars(
        select(Chunk).where(Chunk.status == "running", Chunk.lease_expires_at < now).with_for_update()
    ).all()
    for chunk in expired:
        chunk.status, chunk.lease_owner, chunk.lease_expires_at, chunk.enqueued_at = "queued", None, None, now
    return _with_pairs(session, expired)


def requeue_forgotten(session: Session, older_than_seconds: float) -> list[tuple[int, str]]:
    """Queued chunks rung long ago and never claimed (their message may be lost): ring again."""
    now = utcnow()
    forgotten = session.scalars(
        select(Chunk)
        .where(Chunk.status == "queued", Chunk.enqueued_at < now - timedelta(seconds=older_than_seconds))
        .with_for_update()
    ).all()
    for chunk in forgotten:
        chunk.enqueued_at = now
    return _with_pairs(session, forgotten)


def _with_pairs(session: Session, chunks: list[Chunk]) -> list[tuple[int, str]]:
    if not chunks:
        return []
    experiment_ids = {chunk.experiment_id for chunk in chunks}
    pairs = dict(session.execute(select(Experiment.id, Experiment.model_pair).where(Experiment.id.in_(experiment_ids))).all())
    return [(chunk.id, pairs[chunk.experiment_id]) for chunk in chunks]


def chunk_seconds(session: Session, experiment_id: str) -> tuple[float, float]:
    """Wall seconds of the experiment's successful chunk runs, and of those inside generation."""
    run, model = session.execute(
        select(func.coalesce(func.sum(Chunk.run_seconds), 0.0), func.coalesce(func.sum(Chunk.model_seconds), 0.0)).where(
            Chunk.experiment_id == experiment_id, Chunk.status == "succeeded"
        )
    ).one()
    return float(run), float(model)
