"""POST /api/v1/generate, API side: queue a small batch for the worker and wait for its answer.

It goes through the same broker and worker as experiments (the seed's /generate_lda_batch, routed
through the queue), so one GPU process serves both. The DirectGeneration row is the whole
conversation: the worker claims queued requests before its next chunk, fills `result` and sets
`status`, so a request never waits behind the rest of a long experiment.
"""

from __future__ import annotations

import time
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.orm import Session

from ldaq.backend import Backend
from ldaq.doorbell import BrokerUnavailable
from ldaq.errors import GenerationFailed, ServiceUnavailable, WorkerTimeout
from ldaq.prompt_limits import check_prompts
from ldaq.request_models import GenerateRequest
from ldaq.tables import DirectGeneration

POLL_SECONDS = 0.1


def generate_direct(backend: Backend, request: GenerateRequest) -> list[str]:
    """One completion per prompt; raises GenerationFailed, ServiceUnavailable (no broker) or WorkerTimeout."""
    backend.require_model_pair(request.model_pair)
    check_prompts(
        backend.model_pairs[request.model_pair], request.prompts, None, False, request.max_new_tokens,
        backend.settings.max_prompt_chars,
    )
    return run_direct(backend, request.model_pair, request.model_dump(mode="json"))


def run_direct(backend: Backend, model_pair: str, request: dict) -> list | dict:
    """Queue `request` for a worker of `model_pair`, ring it, and wait for its answer (a generation or an
    explanation): ahead of any chunk, within LDAQ_GENERATE_TIMEOUT_SECONDS."""
    backend.check_broker()
    request_id = str(uuid4())
    with backend.database.transaction() as session:
        session.add(DirectGeneration(id=request_id, model_pair=model_pair, status="queued", request=request))
    try:
        backend.doorbell.ring(model_pair)
    except BrokerUnavailable as error:
        _read_direct_generation(backend, request_id, give_up_reason=str(error))
        raise ServiceUnavailable("the broker is not answering; try again shortly", code="broker_unavailable") from error
    return _await_direct_generation(backend, request_id)


def _read_direct_generation(backend: Backend, request_id: str, give_up_reason: str | None = None) -> tuple:
    """(status, result, error) as the worker left them.

    With a reason, a row still queued is then marked failed, so a worker that comes later can
    skip it instead of computing an answer nobody waits for.
    """
    with backend.database.transaction() as session:
        row = session.get(DirectGeneration, request_id, with_for_update=give_up_reason is not None)
        seen = (row.status, row.result, row.error)
        if give_up_reason is not None and row.status == "queued":
            row.status, row.error = "failed", give_up_reason
    return seen


def _await_direct_generation(backend: Backend, request_id: str) -> list | dict:
    timeout = backend.settings.generate_timeout_seconds
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() >= deadline
        reason = f"no worker answered within {timeout:g} s" if expired else None
        status, result, error = _read_direct_generation(backend, request_id, give_up_reason=reason)
        if status == "succeeded":
            return result
        if status == "failed":
            raise GenerationFailed(f"the worker could not generate: {error}", details={"request_id": request_id})
        if expired:
            raise WorkerTimeout(f"{reason} (LDAQ_GENERATE_TIMEOUT_SECONDS)", details={"request_id": request_id})
        time.sleep(POLL_SECONDS)


# --- worker side ------------------------------------------------------------------------------


def claim_next_direct_generation(session: Session, model_pair: str) -> tuple[str, dict] | None:
    """The oldest queued request for `model_pair`, now marked running: (id, request), or None.

    A request the API already gave up on is failed, not queued, so it is never computed.
    """
    record = session.scalars(
        select(DirectGeneration)
        .where(DirectGeneration.status == "queued", DirectGeneration.model_pair == model_pair)
        .order_by(DirectGeneration.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if record is None:
        return None
    record.status = "running"
    return record.id, record.request


def record_direct_generation(session: Session, request_id: str, answer: list | dict | None, error: str | None) -> None:
    """The worker's answer (the completions, or an explanation), or the error that prevented it."""
    record = session.get(DirectGeneration, request_id, with_for_update=True)
    record.status, record.result, record.error = ("failed", None, error) if error else ("succeeded", answer, None)
