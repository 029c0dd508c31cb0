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
    ExperimentListQuery,
    ExperimentOut,
    ExperimentPage,
    ExportQuery,
)
from ldaq.completions import EXPORT_MEDIA_TYPES, export_completions, list_completions
from ldaq.experiments import cancel_experiment, create_experiment, get_experiment, list_experiments
from ldaq.intervals import clustered_intervals
from ldaq.request_models import ExperimentCreate

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
@endpoint("An experiment with its progress and per-alpha summary", response=ExperimentOut)
def read(experiment_id: str) -> dict:
    return get_experiment(current_backend(), experiment_id)


@experiments_blueprint.get("/<experiment_id>/intervals")
@endpoint(
    "Per alpha, the Wilson interval and one that resamples prompts (computed on request, cached until the counts change)",
    response=ClusteredIntervalsOut,
)
def intervals(experiment_id: str) -> dict:
    return clustered_intervals(current_backend(), experiment_id)


@experiments_blueprint.get("/<experiment_id>/completions")
@endpoint("A page of an experiment's completions", query=CompletionQuery, response=CompletionPage)
def completions(experiment_id: str, query: CompletionQuery) -> dict:
    return list_completions(current_backend(), experiment_id, query.alpha, query.activated, query.limit, query.cursor)


@experiments_blueprint.get("/<experiment_id>/export")
@endpoint(
    "Every completion, streamed as jsonl (one CompletionOut per line) or csv",
    query=ExportQuery,
    response=CompletionOut,
    media_types=tuple(EXPORT_MEDIA_TYPES.values()),
)
def export(experiment_id: str, query: ExportQuery) -> Response:
    lines = export_completions(current_backend(), experiment_id, query.format)
    disposition = f'attachment; filename="experiment-{experiment_id}.{query.format}"'
    return Response(lines, mimetype=EXPORT_MEDIA_TYPES[query.format], headers={"Content-Disposition": disposition})


@experiments_blueprint.post("/<experiment_id>/cancel")
@endpoint("Cancel an experiment (409 once it has finished)", response=ExperimentOut, status=202)
def cancel(experiment_id: str) -> dict:
    return cancel_experiment(current_backend(), experiment_id)
