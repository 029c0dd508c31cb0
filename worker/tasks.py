"""Celery tasks: thin wrappers that hand a ledger id to the child's runner. Acks and retries are configured.

Retries use Celery's own backoff (exponential, capped, jittered) with `max_retries=None`: the
ledger's LDAQ_MAX_ATTEMPTS is the real limit, enforced when the chunk is next claimed.
"""

from __future__ import annotations

import logging
from types import ModuleType

from celery import Celery

from ldaq.doorbell import DIRECT_GENERATION_TASK, RUN_CHUNK_TASK, make_celery
from ldaq.settings import Settings
from worker.retry import RetryLater

log = logging.getLogger("ldaq.worker")
MAX_BACKOFF_SECONDS = 60


def _child() -> ModuleType:
    """The child-only module (it imports torch): imported on a task's first run, never in the parent."""
    from worker import child

    return child


def register_tasks(app: Celery) -> None:
    @app.task(
        name=RUN_CHUNK_TASK,
        autoretry_for=(RetryLater,),
        retry_backoff=True,
        retry_backoff_max=MAX_BACKOFF_SECONDS,
        retry_jitter=True,
        max_retries=None,
    )
    def run_chunk_task(chunk_id: int) -> None:
        _child().chunk(chunk_id)

    @app.task(name=DIRECT_GENERATION_TASK)
    def direct_generation_task(request_id: str) -> None:
        outcome = _child().direct_generation(request_id)
        log.info("direct_generation_id=%s outcome=%s", request_id, outcome)


def make_worker_app(settings: Settings | None = None) -> Celery:
    app = make_celery(settings or Settings.from_env())
    register_tasks(app)
    return app
