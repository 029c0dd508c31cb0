"""Running one claimed chunk: generate its rows with lda_core, detect, write it all at once.

Only the pool's child imports this module (through `worker.child`): it imports torch.
"""

from __future__ import annotations

import logging
import time

from transformers import PreTrainedTokenizerBase

from lda_core.batcher import GenerationCancelled
from lda_core.detect import Detection, Detector
from lda_core.generate import Completion, GenerationSettings, Row
from lda_core.prompts import format_prompt
from lda_core.runner import generate_rows
from ldaq import ledger
from ldaq.ledger import ChunkClaim
from worker.context import WorkerContext
from worker.lease import LeaseKeeper
from worker.retry import RetryLater

log = logging.getLogger("ldaq.worker")

NOT_DETECTED = Detection(False, None)


def generation_settings(params: dict) -> GenerationSettings:
    """lda_core's GenerationSettings from stored request parameters (an experiment's or /generate's)."""
    return GenerationSettings(
        max_new_tokens=params["max_new_tokens"],
        temperature=params["temperature"],
        top_p=params["top_p"],
        seed=params["seed"],
        stop_at_eos=params["stop_at_eos"],
    )


def _formatted_prompts(claim: ChunkClaim, tokenizer: PreTrainedTokenizerBase) -> dict[int, str | Exception]:
    """Each prompt as the models see it, or why it could not be formatted (a chat template that fails on it)."""
    template, chat = claim.params.get("prompt_template"), claim.params.get("chat_template", False)
    formatted: dict[int, str | Exception] = {}
    for index, prompt in claim.prompts.items():
        try:
            formatted[index] = format_prompt(prompt, tokenizer, template, chat)
        except Exception as error:  # a template's own error, whatever its type: only this prompt's rows fail
            formatted[index] = error
    return formatted


def _rows_of(claim: ChunkClaim, tokenizer: PreTrainedTokenizerBase) -> tuple[list[Row], list[Completion]]:
    """The chunk's rows to run, and failed completions for the rows whose prompt could not be formatted."""
    formatted = _formatted_prompts(claim, tokenizer)
    runnable: list[Row] = []
    refused: list[Completion] = []
    for row in claim.rows:
        prompt = formatted[row.prompt_index]
        if isinstance(prompt, str):
            runnable.append(Row(row.prompt_index, prompt, row.alpha, row.sample_index))
        else:
            reason = f"prompt could not be formatted: {type(prompt).__name__}: {prompt}"
            refused.append(Completion.failed(Row(row.prompt_index, "", row.alpha, row.sample_index), reason))
    return runnable, refused


def _storable(text: str) -> str:
    """Text a database can store: Postgres text refuses NUL, which a model can emit as a byte token."""
    return text.replace("\x00", "\ufffd")


def _record(claim: ChunkClaim, completion: Completion, detector: Detector, keep_all_text: bool) -> dict:
    # A row that did not run has no answer to detect in (a pattern like `^$` would match its empty text).
    detection = NOT_DETECTED if completion.error else detector.detect(completion.text)
    kept = completion.error is None and (keep_all_text or detection.activated)
    return {
        "experiment_id": claim.experiment_id,
        "chunk_index": claim.chunk_index,
        "prompt_index": completion.prompt_index,
        "alpha": completion.alpha,
        "sample_index": completion.sample_index,
        "text": _storable(completion.text) if kept else None,
        "tokens": completion.tokens,
        "finish_reason": completion.finish_reason,
        "activated": detection.activated,
        "match": _storable(detection.match) if detection.match else None,
        "error": completion.error,
    }


def _records(claim: ChunkClaim, completions: list[Completion]) -> list[dict]:
    detector = Detector(
        claim.detector["type"], tuple(claim.detector["patterns"]), claim.detector.get("case_sensitive", False)
    )
    keep_all_text = claim.params.get("keep_text", "all") == "all"
    return [_record(claim, completion, detector, keep_all_text) for completion in completions]


def _generate(context: WorkerContext, claim: ChunkClaim) -> tuple[list[Completion], float]:
    """The chunk's completions and the seconds spent generating them (model loading excluded)."""
    pair = context.models.get(claim.model_pair)
    started = time.perf_counter()

    def cancelled() -> bool:
        with context.database.transaction() as session:
            return ledger.cancel_requested(session, claim.experiment_id)

    rows, refused = _rows_of(claim, pair.tokenizer)
    sizer = context.models.batch_sizer(claim.model_pair)
    completions = generate_rows(pair, rows, generation_settings(claim.params), sizer, cancelled)
    return refused + completions, time.perf_counter() - started


def run_claimed_chunk(context: WorkerContext, claim: ChunkClaim) -> str:
    """Run a chunk this worker has claimed, and log one line saying what happened."""
    started = time.perf_counter()
    outcome, model_seconds = _run_claimed(context, claim, started)
    log.info(
        "chunk_id=%s experiment_id=%s chunk_index=%s attempt=%s outcome=%s seconds=%.3f model_seconds=%.3f",
        claim.chunk_id, claim.experiment_id, claim.chunk_index, claim.attempt, outcome,
        time.perf_counter() - started, model_seconds,
    )
    return outcome


def _run_claimed(context: WorkerContext, claim: ChunkClaim, started: float) -> tuple[str, float]:
    """Generate and store the chunk. Every write of its outcome waits out a database outage
    (`Database.when_answering`): generated rows are not thrown away, and a failed chunk is back in
    the queue as soon as the database answers, not a lease later."""
    settings, database, chunk_id = context.settings, context.database, claim.chunk_id
    try:
        with LeaseKeeper(database, chunk_id, context.owner, settings.lease_seconds):
            completions, model_seconds = _generate(context, claim)
            records = _records(claim, completions)
        seconds = time.perf_counter() - started
        database.when_answering(lambda session: ledger.complete_chunk(session, chunk_id, records, seconds, model_seconds))
    except GenerationCancelled:
        database.when_answering(lambda session: ledger.cancel_chunk(session, chunk_id))
        return "cancelled", 0.0
    except Exception as error:
        log.exception("chunk %s attempt %s failed", chunk_id, claim.attempt)
        reason = f"{type(error).__name__}: {error}"
        retry = database.when_answering(
            lambda session: ledger.release_for_retry(session, chunk_id, reason, settings.max_attempts)
        )
        if retry:
            raise RetryLater(str(error)) from error
        return "failed", 0.0
    return "succeeded", model_seconds
