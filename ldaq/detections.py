"""Re-detection: a new named detector over an experiment's stored completions, without regenerating them.

Detectors change as researchers read the hits; a new pattern must not cost GPU hours. The API records
a detection and rings the detection worker's own queue (never the GPU worker's); the detection
worker streams the stored texts once, keeps the hits (only those: the behaviours are rare) and
writes the detector's totals per alpha and per prompt, all in one transaction at the end, so a
crashed scan leaves nothing half-counted and simply runs again when its message is redelivered.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from lda_core.detect import Detector
from ldaq.backend import Backend
from ldaq.db import Database
from ldaq.doorbell import BrokerUnavailable
from ldaq.errors import Conflict, ServiceUnavailable
from ldaq.experiments import check_detector, require_experiment
from ldaq.request_models import DEFAULT_DETECTOR, NamedDetector
from ldaq.statuses import FINISHED_EXPERIMENT
from ldaq.tables import (
    AlphaTotal,
    CompletionRecord,
    Detection,
    DetectionHit,
    Experiment,
    PromptTotal,
    storable,
    utcnow,
)
from ldaq.totals import Tally, alpha_tallies

log = logging.getLogger("ldaq.detections")

SCAN_BLOCK_ROWS = 20_000  # completions read per fetch; progress is recorded after each block


# --- the API's side ---------------------------------------------------------------------------


def request_detection(backend: Backend, experiment_id: str, body: NamedDetector) -> dict:
    """Record detection `body.name` as queued and ring the detection worker (202)."""
    check_detector(body)
    backend.check_broker()
    spec = body.model_dump(exclude={"name"})
    with backend.database.transaction() as session:
        experiment = require_experiment(session, experiment_id, for_update=True)
        _refuse_unless_detectable(session, experiment, body.name)
        detection = Detection(experiment_id=experiment_id, name=body.name, detector=spec, status="queued",
                              at_submit=False, completions_scanned=0, activated=0, created_at=utcnow())
        session.add(detection)
        session.flush()
        view = _detection_view(detection, experiment.completions_done - experiment.completions_errored)
    try:
        backend.doorbell.ring_for_detection(experiment_id, body.name)
    except BrokerUnavailable as error:  # nothing may stay queued that no message will ever start
        with backend.database.transaction() as session:
            session.execute(delete(Detection).where(Detection.experiment_id == experiment_id,
                                                    Detection.name == body.name))
        raise ServiceUnavailable("the broker is not answering; nothing was stored, try again shortly",
                                 code="broker_unavailable") from error
    return view


def _refuse_unless_detectable(session: Session, experiment: Experiment, name: str) -> None:
    details = {"experiment_id": experiment.id, "detector": name}
    if experiment.params.get("keep_text", "all") != "all":
        raise Conflict("this experiment kept the text of activated completions only (keep_text \"activated\"): "
                       "there is nothing to search again", code="text_not_kept", details=details)
    if experiment.status not in FINISHED_EXPERIMENT:
        raise Conflict(f"experiment {experiment.id} is {experiment.status}; re-detect once it has finished",
                       code="experiment_not_finished", details={**details, "status": experiment.status})
    if name == DEFAULT_DETECTOR or session.get(Detection, (experiment.id, name)) is not None:
        raise Conflict(f"experiment {experiment.id} already has a detector named {name!r}; choose another name",
                       code="detector_exists", details=details)


def list_detections(backend: Backend, experiment_id: str) -> dict:
    """The experiment's own detector ("default"), those given at submit, and every re-detection, oldest first.
    The first two are applied as completions arrive: they read as running until the experiment ends."""
    with backend.database.read() as session:
        experiment = require_experiment(session, experiment_id)
        detections = session.scalars(
            select(Detection).where(Detection.experiment_id == experiment_id).order_by(Detection.created_at)
        ).all()
        live_hits = dict(session.execute(
            select(AlphaTotal.detector, func.sum(AlphaTotal.activated))
            .where(AlphaTotal.experiment_id == experiment_id).group_by(AlphaTotal.detector)
        ).all())
    sampled = experiment.completions_done - experiment.completions_errored
    live = {"status": "succeeded" if experiment.status in FINISHED_EXPERIMENT else "running",
            "completions_scanned": sampled, "started_at": experiment.started_at, "finished_at": experiment.finished_at}
    default = {"name": DEFAULT_DETECTOR, "detector": experiment.detector, "activated": live_hits.get(DEFAULT_DETECTOR, 0),
               "completions_total": sampled, "error": None, "created_at": experiment.created_at, **live}
    items = [default]
    for detection in detections:
        view = _detection_view(detection, sampled)
        if detection.at_submit:
            view |= {**live, "activated": live_hits.get(detection.name, 0)}
        items.append(view)
    return {"items": items}


def _detection_view(detection: Detection, completions_total: int) -> dict[str, Any]:
    return {
        "name": detection.name, "detector": detection.detector, "status": detection.status,
        "completions_scanned": detection.completions_scanned, "completions_total": completions_total,
        "activated": detection.activated, "error": detection.error, "created_at": detection.created_at,
        "started_at": detection.started_at, "finished_at": detection.finished_at,
    }


# --- the detection worker's side --------------------------------------------------------------


def run_detection(database: Database, experiment_id: str, name: str) -> None:
    """Scan the experiment's completions with detection `name` and store its hits and totals.

    A detection already done is left alone (a message delivered twice); one found running was
    interrupted (its worker died before the end) and runs again from the start.
    """
    with database.transaction() as session:
        detection = session.get(Detection, (experiment_id, name), with_for_update=True)
        if detection is None or detection.at_submit or detection.status in ("succeeded", "failed"):
            return
        detection.status, detection.started_at, detection.completions_scanned = "running", utcnow(), 0
        spec = dict(detection.detector)
    detector = Detector.from_spec(spec)
    try:
        scan = _scan(database, experiment_id, name, detector)
        with database.transaction() as session:
            _store(session, experiment_id, name, scan)
    except Exception as error:
        log.exception("experiment_id=%s detector=%s outcome=failed", experiment_id, name)
        _fail(database, experiment_id, name, f"{type(error).__name__}: {error}")
        return
    log.info("experiment_id=%s detector=%s outcome=succeeded scanned=%s activated=%s",
             experiment_id, name, scan.scanned, len(scan.hits))


@dataclass
class Scan:
    """What one pass over the completions found: the hits, and the counts per (alpha, prompt)."""

    hits: list[dict] = field(default_factory=list)
    tallies: defaultdict[tuple[float, int], Tally] = field(default_factory=lambda: defaultdict(Tally))
    scanned: int = 0


def _scan(database: Database, experiment_id: str, name: str, detector: Detector) -> Scan:
    scan = Scan()
    for block in _stored_texts(database, experiment_id):
        for prompt_index, alpha, sample_index, text, weight in block:
            found = detector.detect(text or "")
            scan.tallies[(alpha, prompt_index)].add(found.activated, weight)
            if found.activated:
                scan.hits.append({"experiment_id": experiment_id, "detector": name, "prompt_index": prompt_index,
                                  "alpha": alpha, "sample_index": sample_index,
                                  "match": storable(found.match)})
        scan.scanned += len(block)
        with database.transaction() as session:
            session.get(Detection, (experiment_id, name)).completions_scanned = scan.scanned
    return scan


def _stored_texts(database: Database, experiment_id: str) -> Iterator[list[tuple]]:
    """The texts of the rows that ran (a row that could not run was never sampled), a block at a time,
    from one snapshot with a server-side cursor: memory stays flat however many there are."""
    query = select(CompletionRecord.prompt_index, CompletionRecord.alpha, CompletionRecord.sample_index,
                   CompletionRecord.text, CompletionRecord.alpha0_weight).where(
        CompletionRecord.experiment_id == experiment_id, CompletionRecord.error.is_(None))
    with database.snapshot() as connection:
        result = connection.execution_options(stream_results=True, yield_per=SCAN_BLOCK_ROWS).execute(query)
        yield from (list(block) for block in result.partitions())


def _store(session: Session, experiment_id: str, name: str, scan: Scan) -> None:
    """Replace whatever an interrupted run left with this scan's hits and totals, and mark it succeeded."""
    for table in (DetectionHit, AlphaTotal, PromptTotal):
        session.execute(delete(table).where(table.experiment_id == experiment_id, table.detector == name))
    _bulk_insert(session, DetectionHit, scan.hits)
    _bulk_insert(session, PromptTotal, [
        {"experiment_id": experiment_id, "detector": name, "alpha": alpha, "prompt_index": prompt, **tally.counts()}
        for (alpha, prompt), tally in scan.tallies.items()
    ])
    _bulk_insert(session, AlphaTotal, [
        {"experiment_id": experiment_id, "detector": name, "alpha": alpha, **tally.counts()}
        for (alpha,), tally in alpha_tallies(scan.tallies).items()
    ])
    detection = session.get(Detection, (experiment_id, name))
    detection.status, detection.finished_at = "succeeded", utcnow()
    detection.completions_scanned, detection.activated = scan.scanned, len(scan.hits)


def _fail(database: Database, experiment_id: str, name: str, error: str) -> None:
    with database.transaction() as session:
        detection = session.get(Detection, (experiment_id, name))
        if detection is not None:
            detection.status, detection.error, detection.finished_at = "failed", error, utcnow()


def _bulk_insert(session: Session, table: type[DetectionHit | PromptTotal | AlphaTotal], rows: list[dict]) -> None:
    """Insert `rows` in the session's transaction. On Postgres through COPY: a million hits in seconds, where
    row-by-row INSERTs take minutes."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(insert(table.__table__), rows)
        return
    columns = list(rows[0])
    with connection.connection.cursor() as cursor, cursor.copy(
        f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])
