"""The experiment service behind the REST API: submit, read, list and cancel experiments.

Views validate with `ldaq.request_models` and call one function here (completions live in
`ldaq.completions`, POST /generate in `ldaq.direct_generation`). Every write is one ledger
transaction; the broker is only rung after the commit, so a lost ring costs a sweeper pass, never
a half-written experiment.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import TypeAdapter
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from lda_core.detect import Detector, InvalidDetectorError
from lda_core.stats import summarize_alpha
from ldaq import ledger
from ldaq.backend import Backend
from ldaq.cursors import decode_cursor, encode_cursor
from ldaq.doorbell import BrokerUnavailable, Doorbell
from ldaq.errors import Conflict, InvalidRequest, NotFound
from ldaq.request_models import DetectorSpec, ExperimentCreate
from ldaq.rows import chunk_ranges
from ldaq.statuses import FINISHED_EXPERIMENT
from ldaq.tables import Chunk, CompletionRecord, Experiment, Prompt, utcnow

logger = logging.getLogger(__name__)

MAX_CHUNKS = 100_000  # one experiment's chunks are inserted in one transaction
PROMPTS_SHOWN_BELOW = 1000  # an experiment with fewer prompts lists them in its params
_EXPERIMENT_CURSOR = TypeAdapter(tuple[datetime, str])


def _check_detector(spec: DetectorSpec) -> None:
    try:
        Detector(spec.type, tuple(spec.patterns), spec.case_sensitive)
    except InvalidDetectorError as error:
        raise InvalidRequest(str(error), code="invalid_detector", details={"detector": spec.model_dump()}) from error


def require_experiment(session: Session, experiment_id: str, *, for_update: bool = False) -> Experiment:
    """The experiment, or `NotFound` naming the id."""
    experiment = session.get(Experiment, experiment_id, with_for_update=for_update)
    if experiment is None:
        raise NotFound(f"no experiment {experiment_id!r}", details={"experiment_id": experiment_id})
    return experiment


# --- submitting -------------------------------------------------------------------------------


def create_experiment(backend: Backend, request: ExperimentCreate) -> dict:
    """Store the experiment, its prompts and its chunks in one transaction, then ring each chunk.

    The broker is checked just before the commit: with the broker down the client gets a 503 and
    the ledger holds nothing.
    """
    backend.require_model_pair(request.model_pair)
    _check_detector(request.detector)
    chunk_size = request.chunk_size or backend.settings.chunk_size
    rows_total = len(request.prompts) * len(request.alphas) * request.samples_per_prompt
    ranges = chunk_ranges(rows_total, chunk_size)
    if len(ranges) > MAX_CHUNKS:
        raise InvalidRequest(
            f"{rows_total} rows in chunks of {chunk_size} make {len(ranges)} chunks; at most {MAX_CHUNKS}",
            code="experiment_too_large",
            details={"rows_total": rows_total, "chunks_total": len(ranges), "max_chunks": MAX_CHUNKS},
        )
    with backend.database.transaction() as session:
        experiment = _insert_experiment(session, request, chunk_size, rows_total, ranges)
        chunk_ids = session.scalars(
            select(Chunk.id).where(Chunk.experiment_id == experiment.id).order_by(Chunk.chunk_index)
        ).all()
        backend.check_broker()
        described = _describe(session, [experiment])[0]
    backend.ringer.submit(_ring_chunks, backend.doorbell, experiment.id, list(chunk_ids), request.model_pair)
    return described


def _insert_experiment(
    session: Session, request: ExperimentCreate, chunk_size: int, rows_total: int, ranges: list[tuple[int, int]]
) -> Experiment:
    params = request.model_dump(mode="json", exclude={"prompts"}) | {"chunk_size": chunk_size}
    experiment = Experiment(
        id=str(uuid4()), name=request.name, status="queued", model_pair=request.model_pair, params=params,
        seed=request.seed, detector=params["detector"], prompts_total=len(request.prompts),
        completions_total=rows_total, chunks_total=len(ranges), cancel_requested=False,
    )
    session.add(experiment)
    session.flush()
    prompt_rows = [
        {"experiment_id": experiment.id, "prompt_index": index, "text": text} for index, text in enumerate(request.prompts)
    ]
    session.execute(Prompt.__table__.insert(), prompt_rows)
    enqueued_at = utcnow()
    chunk_rows = [
        {"experiment_id": experiment.id, "chunk_index": index, "row_start": start, "row_end": end,
         "status": "queued", "attempts": 0, "enqueued_at": enqueued_at}
        for index, (start, end) in enumerate(ranges)
    ]
    session.execute(Chunk.__table__.insert(), chunk_rows)
    return experiment


def _ring_chunks(doorbell: Doorbell, experiment_id: str, chunk_ids: list[int], model_pair: str) -> None:
    # Runs on the ringer thread, after the commit: a failure here is logged, and the sweeper rings
    # every queued chunk again after LDAQ_REQUEUE_SECONDS, so nothing is lost, only delayed.
    for rung, chunk_id in enumerate(chunk_ids):
        try:
            doorbell.ring_chunk(chunk_id, model_pair)
        except BrokerUnavailable as error:
            logger.warning(
                "experiment %s: rang %d of %d chunks, the sweeper will ring the rest: %s",
                experiment_id, rung, len(chunk_ids), error,
            )
            return


# --- reading ----------------------------------------------------------------------------------


def _describe(session: Session, experiments: list[Experiment]) -> list[dict]:
    """Experiment objects as the API shows them, with a fixed number of queries for the whole page."""
    ids = [experiment.id for experiment in experiments]
    chunk_counts, alpha_counts = ledger.chunk_status_counts(session, ids), _alpha_counts(session, ids)
    prompts = _short_prompt_lists(session, [e.id for e in experiments if e.prompts_total < PROMPTS_SHOWN_BELOW])
    return [
        _experiment_view(e, chunk_counts.get(e.id, {}), alpha_counts.get(e.id, {}), prompts.get(e.id))
        for e in experiments
    ]


def _alpha_counts(session: Session, experiment_ids: list[str]) -> dict[str, dict[float, tuple[int, int]]]:
    """experiment id -> alpha -> (completions, activated), counted by the database."""
    counts: dict[str, dict[float, tuple[int, int]]] = {}
    record = CompletionRecord
    rows = session.execute(
        select(record.experiment_id, record.alpha, func.count(), func.sum(case((record.activated, 1), else_=0)))
        .where(record.experiment_id.in_(experiment_ids))
        .group_by(record.experiment_id, record.alpha)
    )
    for experiment_id, alpha, n, activated in rows:
        counts.setdefault(experiment_id, {})[alpha] = (n, int(activated))
    return counts


def _short_prompt_lists(session: Session, experiment_ids: list[str]) -> dict[str, list[str]]:
    prompts: dict[str, list[str]] = {}
    rows = session.execute(
        select(Prompt.experiment_id, Prompt.text)
        .where(Prompt.experiment_id.in_(experiment_ids))
        .order_by(Prompt.experiment_id, Prompt.prompt_index)
    )
    for experiment_id, text in rows:
        prompts.setdefault(experiment_id, []).append(text)
    return prompts


def _experiment_view(
    experiment: Experiment,
    chunk_counts: dict[str, int],
    alpha_counts: dict[float, tuple[int, int]],
    prompts: list[str] | None,
) -> dict:
    params: dict[str, Any] = {**experiment.params, "prompts_total": experiment.prompts_total}
    if prompts is not None:
        params["prompts"] = prompts
    summary = [asdict(summarize_alpha(alpha, *alpha_counts.get(alpha, (0, 0)))) for alpha in sorted(params["alphas"])]
    return {
        "id": experiment.id, "name": experiment.name, "status": experiment.status,
        "created_at": experiment.created_at, "started_at": experiment.started_at,
        "finished_at": experiment.finished_at, "error": experiment.error, "params": params,
        "progress": {
            "chunks_total": experiment.chunks_total,
            "chunks_done": chunk_counts.get("succeeded", 0),
            "chunks_failed": chunk_counts.get("failed", 0),
            "completions_total": experiment.completions_total,
            "completions_done": sum(n for n, _ in alpha_counts.values()),
        },
        "summary": summary,
    }


def get_experiment(backend: Backend, experiment_id: str) -> dict:
    """The experiment with its progress and per-alpha summary, counted from the ledger now."""
    with backend.database.transaction() as session:
        return _describe(session, [require_experiment(session, experiment_id)])[0]


def list_experiments(backend: Backend, status: str | None, limit: int, cursor: str | None) -> dict:
    """Newest first; the cursor is the (created_at, id) of the last experiment shown."""
    query = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Experiment.status == status)
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor, _EXPERIMENT_CURSOR)
        query = query.where(
            or_(Experiment.created_at < created_at, and_(Experiment.created_at == created_at, Experiment.id < last_id))
        )
    with backend.database.transaction() as session:
        experiments = session.scalars(query).all()
        page = list(experiments[:limit])
        items = _describe(session, page)
    has_more = len(experiments) > limit
    next_cursor = encode_cursor((page[-1].created_at.isoformat(), page[-1].id)) if has_more else None
    return {"items": items, "next_cursor": next_cursor}


# --- cancelling -------------------------------------------------------------------------------


def cancel_experiment(backend: Backend, experiment_id: str) -> dict:
    """Raise the cancel flag: queued chunks stop now, a running one after its current batch."""
    with backend.database.transaction() as session:
        experiment = require_experiment(session, experiment_id, for_update=True)
        if experiment.status in FINISHED_EXPERIMENT:
            raise Conflict(
                f"experiment {experiment_id} already finished as {experiment.status}",
                code="experiment_finished",
                details={"experiment_id": experiment_id, "status": experiment.status},
            )
        ledger.request_cancel(session, experiment_id)
        return _describe(session, [experiment])[0]
