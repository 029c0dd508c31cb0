"""/api/v1/experiments: submit, read, list, page completions, export, cancel, and prompt-clustered intervals."""

from __future__ import annotations

from flask import Blueprint, Response, url_for

from api.contract import current_backend, endpoint
from api.request_log import note_experiment
from api.schemas import (
    ClusteredIntervalsOut,
    CompletionOut,
    CompletionPage,
    CompletionQuery,
    DetectionList,
    DetectionOut,
    DetectorQuery,
    ExperimentListQuery,
    ExperimentOut,
    ExperimentPage,
    ExperimentQuery,
    ExplanationOut,
    ExportQuery,
)
from ldaq.completions import EXPORT_MEDIA_TYPES, export_completions, list_completions
from ldaq.detections import list_detections, request_detection
from ldaq.experiments import cancel_experiment, create_experiment, get_experiment, list_experiments
from ldaq.explanations import explain_completion
from ldaq.intervals import clustered_intervals
from ldaq.request_models import ExperimentCreate, ExplainRequest, NamedDetector

experiments_blueprint = Blueprint("experiments", __name__, url_prefix="/api/v1/experiments")


@experiments_blueprint.post("")
@endpoint("Submit an experiment", body=ExperimentCreate, response=ExperimentOut, status=201)
def submit(body: ExperimentCreate) -> tuple[dict, dict]:
    experiment = create_experiment(current_backend(), body)
    note_experiment(experiment["id"])
    return experiment, {"Location": url_for(".read", experiment_id=experiment["id"])}


@experiments_blueprint.get("")
@endpoint("List experiments, newest first", query=ExperimentListQuery, response=ExperimentPage)
def browse(query: ExperimentListQuery) -> dict:
    return list_experiments(current_backend(), query.status, query.limit, query.cursor)


@experiments_blueprint.get("/<experiment_id>")
@endpoint("An experiment with its progress and per-alpha summary (under ?detector=NAME), and the alpha-0 "
          "estimates unless ?estimates=false", query=ExperimentQuery, response=ExperimentOut)
def read(experiment_id: str, query: ExperimentQuery) -> dict:
    return get_experiment(current_backend(), experiment_id, query.detector, query.estimates)


@experiments_blueprint.post("/<experiment_id>/detections")
@endpoint("Re-detect the stored completions with a new named detector (on the detection worker; 409 while the "
          "experiment runs or when it kept activated text only)", body=NamedDetector, response=DetectionOut, status=202)
def detect_again(experiment_id: str, body: NamedDetector) -> tuple[dict, dict]:
    detection = request_detection(current_backend(), experiment_id, body)
    return detection, {"Location": url_for(".detections", experiment_id=experiment_id)}


@experiments_blueprint.get("/<experiment_id>/detections")
@endpoint("The experiment's detectors with their status: its own (default) and each re-detection", response=DetectionList)
def detections(experiment_id: str) -> dict:
    return list_detections(current_backend(), experiment_id)


@experiments_blueprint.get("/<experiment_id>/intervals")
@endpoint(
    "Per alpha, the Wilson interval and one that resamples prompts (computed on request, cached until the counts change)",
    query=DetectorQuery,
    response=ClusteredIntervalsOut,
)
def intervals(experiment_id: str, query: DetectorQuery) -> dict:
    return clustered_intervals(current_backend(), experiment_id, query.detector)


@experiments_blueprint.get("/<experiment_id>/completions")
@endpoint("A page of an experiment's completions", query=CompletionQuery, response=CompletionPage)
def completions(experiment_id: str, query: CompletionQuery) -> dict:
    return list_completions(current_backend(), experiment_id, query.alpha, query.activated, query.limit, query.cursor,
                            query.detector)


@experiments_blueprint.post("/<experiment_id>/completions/explain")
@endpoint("Replay one completion through the worker (as POST /generate) and explain each of its tokens",
          body=ExplainRequest, response=ExplanationOut)
def explain(experiment_id: str, body: ExplainRequest) -> dict:
    return explain_completion(current_backend(), experiment_id, body)


@experiments_blueprint.get("/<experiment_id>/export")
@endpoint(
    "Every completion, streamed as jsonl (one CompletionOut per line) or csv",
    query=ExportQuery,
    response=CompletionOut,
    media_types=tuple(EXPORT_MEDIA_TYPES.values()),
)
def export(experiment_id: str, query: ExportQuery) -> Response:
    lines = export_completions(current_backend(), experiment_id, query.format, query.detector)
    disposition = f'attachment; filename="experiment-{experiment_id}.{query.format}"'
    return Response(lines, content_type=EXPORT_MEDIA_TYPES[query.format], headers={"Content-Disposition": disposition})


@experiments_blueprint.post("/<experiment_id>/cancel")
@endpoint("Cancel an experiment (409 once it has finished)", response=ExperimentOut, status=202)
def cancel(experiment_id: str) -> dict:
    return cancel_experiment(current_backend(), experiment_id)
