"""Starting a worker: migrations, the Celery worker (one process does the GPU work), the sweeper."""

from __future__ import annotations

from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from ldaq.db import Database
from ldaq.doorbell import DEFAULT_QUEUE, Doorbell, queue_for_pair
from ldaq.logs import configure_logging
from ldaq.migrate import upgrade_database
from ldaq.model_pairs import load_model_pairs
from ldaq.settings import Settings
from worker.periodic import PeriodicThread
from worker.record_store import record_store
from worker.sweeper import sweep_once
from worker.tasks import make_worker_app


def worker_queues(settings: Settings, pairs: tuple[str, ...]) -> str:
    """The queues to consume: one per named pair when routing by pair, else the one default queue."""
    if not settings.queue_per_pair:
        return DEFAULT_QUEUE
    names = pairs or tuple(load_model_pairs(settings))
    return ",".join(queue_for_pair(settings, name) for name in names)


def run_worker(settings: Settings, pairs: tuple[str, ...] = (), loglevel: str = "INFO") -> None:
    """Block running the worker. Prefork with one child: the parent never loads a model."""
    configure_logging(loglevel)
    upgrade_database(settings.database_url)
    app = make_worker_app(settings)
    database, doorbell = Database(settings.database_url), Doorbell(settings, app)
    # Started once the pool has forked its child, stopped on shutdown; runs in the parent only.
    sweeper = PeriodicThread(settings.sweep_seconds, lambda: sweep_once(database, doorbell, settings), "ldaq-sweeper")
    worker_ready.connect(lambda **_: sweeper.start(), weak=False)
    worker_shutting_down.connect(lambda **_: sweeper.stop(), weak=False)
    # In the pool's child, as soon as it is forked: the store's imports are done before the first chunk ends.
    worker_process_init.connect(lambda **_: record_store(settings.database_url).start(), weak=False)
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            f"--queues={worker_queues(settings, pairs)}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--hostname=ldaq@%h",
        ]
    )
