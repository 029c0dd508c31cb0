"""The detection worker: re-detection on its own queue and processes, beside the GPU worker.

It needs no model: it reads stored texts and writes hits and totals. On its own queue it never waits
behind generation, and in its own processes it never takes the GPU worker's CPU time or GIL.
"""

from __future__ import annotations

from functools import cache

from celery import Celery

from ldaq.db import Database
from ldaq.detections import run_detection
from ldaq.doorbell import DETECT_TASK, DETECTIONS_QUEUE, make_celery
from ldaq.logs import configure_logging
from ldaq.migrate import upgrade_database
from ldaq.settings import Settings


@cache
def _database(database_url: str) -> Database:
    """One engine per worker process (made after the fork, on the first task)."""
    return Database(database_url)


def make_detection_app(settings: Settings) -> Celery:
    app = make_celery(settings)

    @app.task(name=DETECT_TASK)
    def detect(experiment_id: str, name: str) -> None:
        run_detection(_database(settings.database_url), experiment_id, name)

    return app


def run_detection_worker(settings: Settings, concurrency: int = 1, loglevel: str = "INFO") -> None:
    """Block running the detection worker: `concurrency` processes, each scanning one experiment at a time."""
    configure_logging(loglevel)
    upgrade_database(settings.database_url)
    make_detection_app(settings).worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            f"--queues={DETECTIONS_QUEUE}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--hostname=ldaq-detections@%h",
        ]
    )
