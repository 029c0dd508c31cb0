"""Celery tasks: thin wrappers that hand a ledger id to the runner. Acks and retries are configured."""

from __future__ import annotations

import logging

from celery import Celery, Task

from ldaq.doorbell import DIRECT_GENERATION_TASK, RUN_CHUNK_TASK, make_celery
from ldaq.settings import Settings
from worker.chunk_runner import RetryLater, run_chunk
from worker.context import current_context
from worker.direct import run_direct_generation

log = logging.getLogger("ldaq.worker")
MAX_BACKOFF_SECONDS = 60


def register_tasks(app: Celery) -> None:
    @app.task(name=RUN_CHUNK_TASK, bind=True, max_retries=None)
    def run_chunk_task(task: Task, chunk_id: int) -> None:
        try:
            run_chunk(current_context(), chunk_id)
        except RetryLater as error:
            countdown = min(MAX_BACKOFF_SECONDS, 2 ** task.request.retries)
            log.info("chunk_id=%s outcome=retry countdown=%s error=%r", chunk_id, countdown, str(error))
            raise task.retry(countdown=countdown) from error

    @app.task(name=DIRECT_GENERATION_TASK)
    def direct_generation_task(request_id: str) -> None:
        outcome = run_direct_generation(current_context(), request_id)
        log.info("direct_generation_id=%s outcome=%s", request_id, outcome)


def make_worker_app(settings: Settings | None = None) -> Celery:
    app = make_celery(settings or Settings.from_env())
    register_tasks(app)
    return app
