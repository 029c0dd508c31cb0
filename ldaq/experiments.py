"""The experiment service behind the REST API: submit, read, list and cancel experiments.

Views validate with `ldaq.request_models` and call one function here (completions live in
`ldaq.completions`, POST /generate in `ldaq.direct_generation`). Every write is one ledger
transaction; the broker is rung once, after the commit, so a lost ring costs a sweeper pass,
never a half-written experiment. Reads cost the same whatever an experiment's size: progress
and summaries come from counters and totals kept as chunks commit.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import TypeAdapter
from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from lda_core.detect import Detector, InvalidDetectorError
from lda_core.stats import summarize_alpha
from ldaq import ledger, sweeps
from ldaq.alpha0 import alpha0_estimate, alpha0_reweighted
from ldaq.backend import Backend
from ldaq.cursors import decode_cursor, encode_cursor
from ldaq.errors import Conflict, InvalidRequest, NotFound
from ldaq.prompt_limits import check_prompts
from ldaq.request_models import DEFAULT_DETECTOR, MAX_ROWS, DetectorSpec, ExperimentCreate
from ldaq.rows import chunk_count, chunk_range
from ldaq.statuses import FINISHED_EXPERIMENT
from ldaq.tables import AlphaTotal, Chunk, Detection, Experiment, Prompt, UTCDateTime, utcnow

MAX_CHUNKS = 100_000  # one experiment's chunks are inserted in one transaction
PROMPTS_SHOWN_BELOW = 1000  # an experiment with fewer prompts lists them in its params
_EXPERIMENT_CURSOR = TypeAdapter(tuple[datetime, str])


def check_detector(spec: DetectorSpec) -> None:
    """A detector that compiles, or `InvalidRequest` saying why (a bad regex, an empty pattern)."""
    try:
        Detector.from_spec(spec.model_dump())
    except InvalidDetectorError as error:
        raise InvalidRequest(str(error), code="invalid_detector", details={"detector": spec.model_dump()}) from error


def _check_detector_names(names: list[str]) -> None:
    """Named detectors are told apart by name, and "default" is the experiment's own `detector` (JSON Schema can
    say neither about items of a list of objects)."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if DEFAULT_DETECTOR in names or repeated:
        raise InvalidRequest(f'detector names must be distinct and not "{DEFAULT_DETECTOR}" (the experiment\'s own '
                             "`detector`)", code="invalid_detector_name", details={"repeated": repeated})


def require_experiment(session: Session, experiment_id: str, *, for_update: bool = False) -> Experiment:
    """The experiment, or `NotFound` naming the id."""
    experiment = session.get(Experiment, experiment_id, with_for_update=for_update)
    if experiment is None:
        raise NotFound(f"no experiment {experiment_id!r}", details={"experiment_id": experiment_id})
    return experiment


def require_detector(session: Session, experiment: Experiment, name: str) -> None:
    """`name` is the experiment's own detector or a detection of it that has finished its scan; a detection
    still scanning has no totals yet (409), an unknown name is 404."""
    if name == DEFAULT_DETECTOR:
        return
    detection = session.get(Detection, (experiment.id, name))
    if detection is None:
        raise NotFound(f"experiment {experiment.id} has no detector {name!r}", code="unknown_detector",
                       details={"experiment_id": experiment.id, "detector": name})
    if not detection.at_submit and detection.status != "succeeded":
        raise Conflict(f"detector {name!r} is {detection.status}; its results come when its scan succeeds",
                       code="detection_not_ready",
                       details={"experiment_id": experiment.id, "detector": name, "status": detection.status})


# --- submitting -------------------------------------------------------------------------------


def _check_size(rows_total: int, chunk_size: int) -> int:
    """The number of chunks, computed before anything is built; a request over a limit is refused."""
    chunks_total = chunk_count(rows_total, chunk_size)
    if rows_total > MAX_ROWS or chunks_total > MAX_CHUNKS:
        raise InvalidRequest(
            f"{rows_total} rows in chunks of {chunk_size} make {chunks_total} chunks; "
            f"at most {MAX_ROWS} rows and {MAX_CHUNKS} chunks",
            code="experiment_too_large",
            details={"rows_total": rows_total, "chunks_total": chunks_total, "max_rows": MAX_ROWS,
                     "max_chunks": MAX_CHUNKS},
        )
    return chunks_total


def create_experiment(backend: Backend, request: ExperimentCreate) -> dict:
    """Store the experiment, its prompts and its chunks in one transaction, then ring once.

    The broker is checked just before the commit: with the broker down the client gets
    `ServiceUnavailable` and the ledger holds nothing.
    """
    backend.require_model_pair(request.model_pair)
    _check_detector_names([detector.name for detector in request.detectors])
    for detector in (request.detector, *request.detectors):
        check_detector(detector)
    check_prompts(
        backend.model_pairs[request.model_pair], request.prompts, request.prompt_template, request.chat_template,
        request.max_new_tokens, backend.settings.max_prompt_chars,
    )
    chunk_size = request.chunk_size or backend.settings.chunk_size
    rows_total = len(request.prompts) * len(request.alphas) * request.samples_per_prompt
    chunks_total = _check_size(rows_total, chunk_size)
    with backend.database.transaction() as session:
        experiment = _insert_experiment(session, request, chunk_size, rows_total, chunks_total)
        sweeps.note_rung(session, request.model_pair)
        backend.check_broker()
        described = _describe(session, [experiment])[0]
    backend.doorbell.try_ring(request.model_pair)  # after the commit: a lost ring only delays
    return described


def _insert_experiment(
    session: Session, request: ExperimentCreate, chunk_size: int, rows_total: int, chunks_total: int
) -> Experiment:
    params = request.model_dump(mode="json", exclude={"prompts"}) | {"chunk_size": chunk_size}
    short_prompts = request.prompts if len(request.prompts) < PROMPTS_SHOWN_BELOW else None
    experiment = Experiment(
        id=str(uuid4()), name=request.name, status="queued", model_pair=request.model_pair, params=params,
        short_prompts=short_prompts, seed=request.seed, detector=params["detector"],
        prompts_total=len(request.prompts), completions_total=rows_total, chunks_total=chunks_total,
        cancel_requested=False, chunks_succeeded=0, chunks_failed=0, chunks_cancelled=0, completions_done=0,
        completions_errored=0,
    )
    session.add(experiment)
    session.flush()
    session.execute(
        Prompt.__table__.insert(),
        [{"experiment_id": experiment.id, "prompt_index": index, "text": text} for index, text in enumerate(request.prompts)],
    )
    session.execute(Chunk.__table__.insert(), _chunk_rows(experiment, chunk_size))
    session.add_all(Detection(experiment_id=experiment.id, name=named.name, detector=named.model_dump(exclude={"name"}),
                              status="running", at_submit=True, completions_scanned=0, activated=0, created_at=utcnow())
                    for named in request.detectors)
    return experiment


def _chunk_rows(experiment: Experiment, chunk_size: int) -> list[dict]:
    enqueued_at = utcnow()
    rows = []
    for index in range(experiment.chunks_total):
        start, end = chunk_range(index, chunk_size, experiment.completions_total)
        rows.append({"experiment_id": experiment.id, "chunk_index": index, "model_pair": experiment.model_pair,
                     "row_start": start, "row_end": end, "status": "queued", "attempts": 0, "enqueued_at": enqueued_at})
    return rows


# --- reading ----------------------------------------------------------------------------------


def _describe(
    session: Session, experiments: list[Experiment], detector: str = DEFAULT_DETECTOR, estimates: bool = True
) -> list[dict]:
    """Experiment objects as the API shows them: one query for the totals of the whole page; the alpha-0
    estimates (fitted anew whenever the counts changed) only where `estimates`."""
    totals = _alpha_totals(session, [experiment.id for experiment in experiments], detector)
    return [_experiment_view(experiment, totals.get(experiment.id, {}), detector, estimates,
                             alpha0_reweighted(session, experiment, detector) if estimates else None)
            for experiment in experiments]


def _alpha_totals(session: Session, experiment_ids: list[str], detector: str) -> dict[str, dict[float, tuple[int, int]]]:
    """experiment id -> alpha -> (completions, activated) under `detector`."""
    totals: dict[str, dict[float, tuple[int, int]]] = {}
    rows = session.execute(
        select(AlphaTotal.experiment_id, AlphaTotal.alpha, AlphaTotal.n, AlphaTotal.activated).where(
            AlphaTotal.experiment_id.in_(experiment_ids), AlphaTotal.detector == detector
        )
    )
    for experiment_id, alpha, n, activated in rows:
        totals.setdefault(experiment_id, {})[alpha] = (n, activated)
    return totals


def _experiment_view(
    experiment: Experiment, alpha_totals: dict[float, tuple[int, int]], detector: str, estimates: bool,
    reweighted: dict | None,
) -> dict:
    params: dict[str, Any] = {**experiment.params, "prompts_total": experiment.prompts_total}
    if experiment.short_prompts is not None:
        params["prompts"] = experiment.short_prompts
    alphas = sorted(params["alphas"])
    summary = [asdict(summarize_alpha(alpha, *alpha_totals.get(alpha, (0, 0)))) for alpha in alphas]
    return {
        "id": experiment.id, "name": experiment.name, "status": experiment.status,
        "created_at": experiment.created_at, "started_at": experiment.started_at,
        "finished_at": experiment.finished_at, "error": experiment.error, "params": params,
        "progress": {
            "chunks_total": experiment.chunks_total,
            "chunks_done": experiment.chunks_succeeded,
            "chunks_failed": experiment.chunks_failed,
            "completions_total": experiment.completions_total,
            "completions_done": experiment.completions_done,
            "completions_errored": experiment.completions_errored,
        },
        "detector": detector,
        "summary": summary,
        "alpha0_estimate": alpha0_estimate(alpha_totals, alphas) if estimates else None,
        "alpha0_reweighted": reweighted,
    }


def get_experiment(
    backend: Backend, experiment_id: str, detector: str = DEFAULT_DETECTOR, estimates: bool = True
) -> dict:
    """The experiment with its progress and per-alpha summary under `detector`: a few index lookups, whatever
    its size; with the alpha-0 estimates where `estimates`."""
    with backend.database.read() as session:
        experiment = require_experiment(session, experiment_id)
        require_detector(session, experiment, detector)
        return _describe(session, [experiment], detector, estimates)[0]


def list_experiments(backend: Backend, status: str | None, limit: int, cursor: str | None) -> dict:
    """Newest first; the cursor is the (created_at, id) of the last experiment shown."""
    query = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(Experiment.status == status)
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor, _EXPERIMENT_CURSOR)
        query = query.where(
            tuple_(Experiment.created_at, Experiment.id) < tuple_(literal(created_at, UTCDateTime()), literal(last_id))
        )
    with backend.database.read() as session:
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
        ledger.request_cancel(session, experiment)
        return _describe(session, [experiment])[0]
