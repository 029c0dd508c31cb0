"""POST .../completions/explain, API side: replay a stored completion through the worker and return, per
token, what each model made of it and what amplification did.

The replay runs like a POST /generate request (same queue, same priority, ahead of any chunk): the
same prompt, alpha and per-row random stream as the stored row, so it reproduces the stored text;
`reproduces_stored` says whether it did (float noise can flip a near-tie, as a real-model rerun can).
"""

from __future__ import annotations

from sqlalchemy import select

from ldaq.backend import Backend
from ldaq.direct_generation import run_direct
from ldaq.errors import InvalidRequest
from ldaq.experiments import require_experiment
from ldaq.request_models import ExplainRequest
from ldaq.tables import CompletionRecord, Experiment, Prompt


def explain_completion(backend: Backend, experiment_id: str, body: ExplainRequest) -> dict:
    """The replayed completion, its tokens explained, beside the stored text (None where not kept)."""
    with backend.database.read() as session:
        experiment = require_experiment(session, experiment_id)
        _check_row(experiment, body)
        prompt = session.get(Prompt, (experiment_id, body.prompt_index)).text
        stored = session.scalar(select(CompletionRecord.text).where(
            CompletionRecord.experiment_id == experiment_id, CompletionRecord.prompt_index == body.prompt_index,
            CompletionRecord.alpha == body.alpha, CompletionRecord.sample_index == body.sample_index,
        ))
    request = {"explain": body.model_dump(), "prompt": prompt, "params": experiment.params}
    answer = run_direct(backend, experiment.model_pair, request)
    return {**body.model_dump(), **answer, "stored_text": stored,
            "reproduces_stored": None if stored is None else stored == answer["text"]}


def _check_row(experiment: Experiment, body: ExplainRequest) -> None:
    """The row must be one of the experiment's (it need not be stored yet: a replay is the same row)."""
    params, details = experiment.params, {"experiment_id": experiment.id, **body.model_dump()}
    if body.prompt_index >= experiment.prompts_total:
        raise InvalidRequest(f"prompt_index {body.prompt_index} is not below the experiment's "
                             f"{experiment.prompts_total} prompts", code="unknown_row", details=details)
    if body.alpha not in params["alphas"]:
        raise InvalidRequest(f"alpha {body.alpha} is not one of the experiment's {params['alphas']}",
                             code="unknown_row", details=details)
    if body.sample_index >= params["samples_per_prompt"]:
        raise InvalidRequest(f"sample_index {body.sample_index} is not below the experiment's "
                             f"{params['samples_per_prompt']} samples per prompt", code="unknown_row", details=details)
