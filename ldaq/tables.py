"""The ledger's tables. The database, not the broker, holds every chunk's state."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC on every backend (SQLite has no time zones), read back as aware UTC.

    One storage form keeps comparisons such as `lease_expires_at < now` right on SQLite too.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return value.replace(tzinfo=timezone.utc) if value is not None else None


class Base(DeclarativeBase):
    pass


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), index=True)
    model_pair: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict] = mapped_column(JSON)  # the request with defaults filled, prompts excepted
    seed: Mapped[int] = mapped_column(Integer)
    detector: Mapped[dict] = mapped_column(JSON)
    prompts_total: Mapped[int] = mapped_column(Integer)
    completions_total: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class Prompt(Base):
    __tablename__ = "prompts"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    prompt_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class Chunk(Base):
    """Rows [row_start, row_end) of an experiment, in prompt-major order (see ldaq.rows)."""

    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("experiment_id", "chunk_index"),
        Index("ix_chunks_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    chunk_index: Mapped[int] = mapped_column(Integer)
    row_start: Mapped[int] = mapped_column(Integer)
    row_end: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    run_seconds: Mapped[float | None] = mapped_column(Float)  # wall time of the successful run
    model_seconds: Mapped[float | None] = mapped_column(Float)  # of which in lda_core generation
    error: Mapped[str | None] = mapped_column(Text)


class CompletionRecord(Base):
    __tablename__ = "completions"
    __table_args__ = (
        # A chunk run twice writes nothing twice.
        UniqueConstraint("experiment_id", "prompt_index", "alpha", "sample_index", name="uq_completion_row"),
        Index("ix_completions_experiment_activated", "experiment_id", "activated"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    alpha: Mapped[float] = mapped_column(Float)
    sample_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str] = mapped_column(String(16))
    activated: Mapped[bool] = mapped_column(Boolean)
    match: Mapped[str | None] = mapped_column(Text)


class DirectGeneration(Base):
    """A POST /generate request: the API waits on this row while the worker fills `result`."""

    __tablename__ = "direct_generations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # queued, succeeded, failed
    request: Mapped[dict] = mapped_column(JSON)
    result: Mapped[list | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
