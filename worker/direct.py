"""POST /api/v1/generate, worker side: a small batch at one alpha, answered through the ledger."""

from __future__ import annotations

from lda_core.generate import Row
from lda_core.runner import generate_rows
from ldaq.tables import DirectGeneration
from worker.chunk_runner import generation_settings
from worker.context import WorkerContext


def _generate_texts(context: WorkerContext, request: dict) -> list[str]:
    pair = context.models.get(request["model_pair"])
    rows = [Row(i, prompt, float(request["alpha"]), 0) for i, prompt in enumerate(request["prompts"])]
    settings = generation_settings({**request, "stop_at_eos": True})
    return [completion.text for completion in generate_rows(pair, rows, settings, context.settings.batch_size)]


def run_direct_generation(context: WorkerContext, request_id: str) -> str:
    """Answer a queued request; one the API already gave up on (or answered) is skipped."""
    with context.database.transaction() as session:
        record = session.get(DirectGeneration, request_id)
        request = record.request if record is not None and record.status == "queued" else None
    if request is None:
        return "skipped"
    try:
        outcome = {"status": "succeeded", "result": _generate_texts(context, request)}
    except Exception as error:
        outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    with context.database.transaction() as session:
        record = session.get(DirectGeneration, request_id)
        for key, value in outcome.items():
            setattr(record, key, value)
    return outcome["status"]
