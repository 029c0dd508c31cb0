"""POST /api/v1/generate, worker side: a small batch at one alpha, answered through the ledger."""

from __future__ import annotations

import logging

from lda_core.generate import Completion, Row
from lda_core.runner import generate_rows
from ldaq.direct_generation import record_direct_generation
from worker.chunk_runner import generation_settings
from worker.context import WorkerContext

log = logging.getLogger("ldaq.worker")


def _generate(context: WorkerContext, request: dict) -> list[Completion]:
    pair = context.models.get(request["model_pair"])
    rows = [Row(i, prompt, float(request["alpha"]), 0) for i, prompt in enumerate(request["prompts"])]
    settings = generation_settings({**request, "stop_at_eos": True})
    return generate_rows(pair, rows, settings, context.models.batch_sizer(request["model_pair"]))


def _answer(context: WorkerContext, request: dict) -> tuple[list[str] | None, str | None]:
    """The texts, or why there are none: an exception, or the first prompt that could not run."""
    try:
        completions = _generate(context, request)
    except Exception as failure:
        return None, f"{type(failure).__name__}: {failure}"
    failed = next((completion for completion in completions if completion.error), None)
    if failed is not None:
        return None, f"prompts[{failed.prompt_index}] could not run: {failed.error}"
    return [completion.text for completion in completions], None


def answer_direct_generation(context: WorkerContext, request_id: str, request: dict) -> None:
    """Generate for a claimed request and store the answer (or why there is none) for the API."""
    completions, error = _answer(context, request)
    with context.database.transaction() as session:
        record_direct_generation(session, request_id, completions, error)
    log.info("direct_generation_id=%s outcome=%s", request_id, "failed" if error else "succeeded")
