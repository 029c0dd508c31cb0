"""POST /api/v1/generate, worker side: a small batch at one alpha, answered through the ledger."""

from __future__ import annotations

from sqlalchemy import select

from ldaq.tables import DirectGeneration
from worker.context import WorkerContext


def run_direct_generation(context: WorkerContext, request_id: str) -> str:
    from lda_core.generate import GenerationSettings, Row
    from lda_core.prompts import format_prompt
    from lda_core.runner import generate_rows

    with context.database.transaction() as session:
        request = session.scalar(select(DirectGeneration.request).where(DirectGeneration.id == request_id))
    if request is None:
        return "skipped"
    try:
        pair = context.models.get(request["model_pair"])
        rows = [
            Row(i, format_prompt(prompt, pair.tokenizer, request.get("prompt_template")), float(request["alpha"]), 0)
            for i, prompt in enumerate(request["prompts"])
        ]
        settings = GenerationSettings(
            max_new_tokens=request["max_new_tokens"],
            temperature=request["temperature"],
            top_p=request["top_p"],
            seed=request["seed"],
            stop_at_eos=True,
        )
        texts = [c.text for c in generate_rows(pair, rows, settings, context.settings.batch_size)]
        outcome = {"status": "succeeded", "result": texts}
    except Exception as error:
        outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    with context.database.transaction() as session:
        record = session.get(DirectGeneration, request_id)
        for key, value in outcome.items():
            setattr(record, key, value)
    return outcome["status"]
