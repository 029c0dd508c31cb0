"""The ledger's tables. The database, not the broker, holds every chunk's state."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def storable(text: str) -> str:
    """Text every backend's text columns hold: Postgres refuses NUL, which a model can emit as a byte token."""
    return text.replace("\x00", "\ufffd")


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
    """One submitted experiment. Its counters change in the transaction that finishes each chunk,
    so reading progress costs one row whatever the experiment's size."""

    __tablename__ = "experiments"
    __table_args__ = (
        Index("ix_experiments_newest", "created_at", "id"),
        Index("ix_experiments_status_newest", "status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16))
    model_pair: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict] = mapped_column(JSON)  # the request with defaults filled, prompts excepted
    short_prompts: Mapped[list | None] = mapped_column(JSON)  # every prompt, when there are few enough to list
    seed: Mapped[int] = mapped_column(Integer)
    detector: Mapped[dict] = mapped_column(JSON)
    prompts_total: Mapped[int] = mapped_column(Integer)
    completions_total: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer)
    chunks_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)
    chunks_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    completions_done: Mapped[int] = mapped_column(Integer, default=0)  # stored rows, errors included
    completions_errored: Mapped[int] = mapped_column(Integer, default=0)  # rows that could not run
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
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
        # A worker claims the oldest queued chunk of its pair: one index probe, however many
        # finished or cancelled chunks lie before it.
        Index("ix_chunks_claim_order", "status", "model_pair", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), index=True)
    chunk_index: Mapped[int] = mapped_column(Integer)
    model_pair: Mapped[str] = mapped_column(String(200))  # the experiment's, copied for the claim index
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
        # The activated completions in key order: a page of them is one index range scan.
        Index("ix_completions_activated_in_key_order", "experiment_id", "activated", "prompt_index", "alpha", "sample_index"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    chunk_index: Mapped[int] = mapped_column(Integer)
    prompt_index: Mapped[int] = mapped_column(Integer)
    alpha: Mapped[float] = mapped_column(Float)
    sample_index: Mapped[int] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)  # None when the experiment keeps only activated text
    tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str] = mapped_column(String(16))
    activated: Mapped[bool] = mapped_column(Boolean)
    match: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)  # why the row could not run (finish_reason "error")
    # p_0(text) / mean_j p_j(text) over the experiment's positive alphas (p_0/p_alpha, its own alpha alone, where
    # stored before the mixture), the engine's alpha-0 importance weight (lda_core.reweight); None when greedy,
    # or stored before weights were kept
    alpha0_weight: Mapped[float | None] = mapped_column(Float)


class Counts:
    """What a totals row counts: completions sampled and activated, and for the reweighted alpha-0 estimate
    (lda_core.reweight) how many of them carry an alpha-0 weight and the hits' weights summed and squared."""

    n: Mapped[int] = mapped_column(Integer, default=0)
    activated: Mapped[int] = mapped_column(Integer, default=0)
    weighed: Mapped[int] = mapped_column(Integer, default=0)
    weighted_activated: Mapped[float] = mapped_column(Float, default=0.0)
    weighted_activated_sq: Mapped[float] = mapped_column(Float, default=0.0)


class AlphaTotal(Counts, Base):
    """Completions and activations at one alpha under one detector, kept as chunks commit.

    A poll reads these few rows instead of counting completions.
    """

    __tablename__ = "alpha_totals"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(100), primary_key=True)
    alpha: Mapped[float] = mapped_column(Float, primary_key=True)


class PromptTotal(Counts, Base):
    """Completions and activations of one prompt at one alpha under one detector, kept as chunks commit.

    The prompt-clustered interval resamples prompts: it needs these counts, never the completions.
    """

    __tablename__ = "prompt_totals"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(100), primary_key=True)
    alpha: Mapped[float] = mapped_column(Float, primary_key=True)
    prompt_index: Mapped[int] = mapped_column(Integer, primary_key=True)


class Detection(Base):
    """A named detector of an experiment: given at submit (`detectors`), or run again over its stored
    completions later (POST .../detections).

    The experiment's own `detector` is the one named "default"; its results live on the completions.
    Another detector's results are its hits (`DetectionHit`) and its totals (AlphaTotal, PromptTotal
    under its name): added with each chunk for one given at submit, written in one transaction when
    its scan ends for a re-detection.
    """

    __tablename__ = "detections"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    detector: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    # Given at submit: applied by the worker as completions arrive (like "default"), never scanned.
    at_submit: Mapped[bool] = mapped_column(Boolean, default=False)
    completions_scanned: Mapped[int] = mapped_column(Integer, default=0)
    activated: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DetectionHit(Base):
    """A completion a named detector found the behaviour in: only hits are stored, since the behaviours
    ldaq is for are rare. Keyed like the completions, so a page of hits is one index range scan."""

    __tablename__ = "detection_hits"

    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    detector: Mapped[str] = mapped_column(String(100), primary_key=True)
    prompt_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    alpha: Mapped[float] = mapped_column(Float, primary_key=True)
    sample_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    match: Mapped[str | None] = mapped_column(Text)


class PairDoorbell(Base):
    """When each model pair's doorbell was last rung, so the sweeper rings a pair, not every chunk."""

    __tablename__ = "pair_doorbells"

    model_pair: Mapped[str] = mapped_column(String(200), primary_key=True)
    rung_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DirectGeneration(Base):
    """A POST /generate request: the API waits on this row while the worker fills `result`."""

    __tablename__ = "direct_generations"
    __table_args__ = (Index("ix_direct_generations_claim_order", "status", "model_pair", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_pair: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    request: Mapped[dict] = mapped_column(JSON)
    result: Mapped[list | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
