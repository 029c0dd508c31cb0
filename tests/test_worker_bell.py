"""Passing the doorbell on: a woken worker rings once more for its pair while more chunks are queued than
the one it takes first, so that an idle worker on another GPU joins in; never when it alone suffices."""

from __future__ import annotations

from kombu import Connection

from ldaq.db import Database
from ldaq.doorbell import DEFAULT_QUEUE, WAKE_TASK, Doorbell
from tests.helpers import VALID_EXPERIMENT, with_fields
from worker.bell import pass_the_bell_on
from worker.context import WorkerContext
from worker.model_cache import ModelCache
from worker.record_store import RecordStore

SWEEP = with_fields(VALID_EXPERIMENT, prompts=["p0", "p1"], alphas=[0, 1], samples_per_prompt=2)


def wake_messages_after_passing_the_bell(api, chunk_size: int) -> list:
    """Submit (the API rings once), take that message as the woken worker's, pass the bell on, and return
    the wake messages that are then waiting."""
    experiment = api.submit(with_fields(SWEEP, chunk_size=chunk_size))
    settings = api.settings
    context = WorkerContext(settings, Database(settings.database_url), Doorbell(settings), ModelCache(settings),
                            RecordStore(settings.database_url))
    with Connection(settings.broker_url) as connection:
        queue = connection.SimpleQueue(DEFAULT_QUEUE)
        queue.get(timeout=5).ack()  # the API's ring, which woke this worker
        pass_the_bell_on(context, experiment["params"]["model_pair"]).join(timeout=60)
        waiting = [queue.get(timeout=1) for _ in range(queue.qsize())]
        queue.close()
    context.database.dispose()
    return waiting


def test_a_woken_worker_rings_again_while_more_than_its_first_chunk_is_queued(api):
    waiting = wake_messages_after_passing_the_bell(api, chunk_size=2)  # 8 rows: 4 chunks

    assert [(message.headers["task"], message.payload[0]) for message in waiting] == [(WAKE_TASK, [SWEEP["model_pair"]])]


def test_a_woken_worker_rings_no_one_when_it_takes_the_only_chunk(api):
    assert wake_messages_after_passing_the_bell(api, chunk_size=8) == []
