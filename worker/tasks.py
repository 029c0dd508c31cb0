"""The Celery task: a thin wrapper that wakes the child's drain loop. Acks and retries are configured.

A failed chunk with attempts left goes back to queued and the wake is retried with Celery's own
backoff (exponential, capped, jittered), with `max_retries=None`: the ledger's LDAQ_MAX_ATTEMPTS
is the real limit, enforced when the chunk is next claimed.
"""

from __future__ import annotations

import logging
from types import ModuleType

from celery import Celery

from ldaq.doorbell import WAKE_TASK, make_celery
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
        name=WAKE_TASK,
        autoretry_for=(RetryLater,),
        retry_backoff=True,
        retry_backoff_max=MAX_BACKOFF_SECONDS,
        retry_jitter=True,
        max_retries=None,
    )
    def wake(model_pair: str) -> None:
        chunks_run = _child().wake(model_pair)
        log.info("wake model_pair=%s chunks_run=%s", model_pair, chunks_run)


def make_worker_app(settings: Settings | None = None) -> Celery:
    app = make_celery(settings or Settings.from_env())
    register_tasks(app)
    return app
