"""What the sweeper asks of the ledger: expired leases to requeue, and pairs whose doorbell to ring.

Rings are per model pair, not per chunk: a worker woken for a pair drains that pair's queued
chunks from the ledger, so one message covers any number of chunks.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ldaq.db import dialect_of
from ldaq.tables import Chunk, PairDoorbell, utcnow


def note_rung(session: Session, model_pair: str) -> None:
    """Record that the pair's doorbell is being rung now."""
    now = utcnow()
    statement = dialect_of(session).insert(PairDoorbell).values(model_pair=model_pair, rung_at=now)
    session.execute(statement.on_conflict_do_update(index_elements=["model_pair"], set_={"rung_at": now}))


def requeue_expired_leases(session: Session) -> set[str]:
    """Running chunks whose worker stopped renewing (killed, say): back to queued. Returns their pairs."""
    now = utcnow()
    expired = session.scalars(
        select(Chunk).where(Chunk.status == "running", Chunk.lease_expires_at < now).with_for_update()
    ).all()
    for chunk in expired:
        chunk.status, chunk.lease_owner, chunk.lease_expires_at, chunk.enqueued_at = "queued", None, None, now
    return {chunk.model_pair for chunk in expired}


def pairs_waiting_unrung(session: Session, older_than_seconds: float) -> set[str]:
    """Pairs with queued chunks, no chunk running and no ring for `older_than_seconds`: their
    message may be lost (the embedded broker forgets unacknowledged ones on a hard kill)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    queued_pairs = set(session.scalars(select(Chunk.model_pair).where(Chunk.status == "queued").distinct()))
    waiting = set()
    for pair in queued_pairs:
        running = session.scalar(select(exists().where(Chunk.status == "running", Chunk.model_pair == pair)))
        rung_at = session.scalar(select(PairDoorbell.rung_at).where(PairDoorbell.model_pair == pair))
        if not running and (rung_at is None or rung_at < cutoff):
            waiting.add(pair)
    return waiting
