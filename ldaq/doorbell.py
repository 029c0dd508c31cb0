"""The broker is only a doorbell: a message says "there is work for pair P", the ledger says what.

A woken worker claims that pair's queued chunks (and direct generations) from the ledger itself,
so a submit or a cancel sends at most one message, whatever the number of chunks.

Both the API (which never imports torch) and the worker build their Celery app here, so the
serializer, acknowledgement and routing rules exist once.
"""

from __future__ import annotations

import logging

from celery import Celery
from kombu import Connection

import ldaq.embedded_broker  # noqa: F401  (registers the embedded broker's URL scheme)
from ldaq.settings import Settings

WAKE_TASK = "ldaq.wake"
DEFAULT_QUEUE = "ldaq"
DETECT_TASK = "ldaq.detect"
DETECTIONS_QUEUE = "ldaq.detections"  # the detection worker's: re-detection never waits behind generation
BROKER_PING_SECONDS = 0.75
log = logging.getLogger("ldaq.doorbell")


class BrokerUnavailable(RuntimeError):
    """The broker did not answer in time; nothing was sent."""


def queue_for_pair(settings: Settings, model_pair: str) -> str:
    """One queue per model pair when routing by pair, so each worker keeps its models loaded."""
    return f"{DEFAULT_QUEUE}.{model_pair}" if settings.queue_per_pair else DEFAULT_QUEUE


def _transport_options(settings: Settings) -> dict:
    # The embedded (SQLAlchemy) transport hands these to create_engine, which refuses them.
    if settings.embedded_broker:
        return {}
    return {"visibility_timeout": 3600, "socket_connect_timeout": BROKER_PING_SECONDS, "socket_timeout": 5}


def make_celery(settings: Settings) -> Celery:
    if settings.embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("ldaq", broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # a pickled message is refused, never run
        result_serializer="json",
        task_ignore_result=True,  # results live in the ledger
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=DEFAULT_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage, however long
        broker_connection_timeout=BROKER_PING_SECONDS,
        broker_transport_options=_transport_options(settings),
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # so flower (compose profile) shows task history
        task_send_sent_event=True,
    )
    return app


class Doorbell:
    """Sends "look at this" messages; refuses fast when the broker is down."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self.app = app or make_celery(settings)

    def check(self) -> None:
        """Raise `BrokerUnavailable` unless the broker answers within a couple of seconds."""
        try:
            with Connection(self.settings.broker_url, connect_timeout=BROKER_PING_SECONDS) as connection:
                connection.ensure_connection(max_retries=1, timeout=BROKER_PING_SECONDS, interval_start=0)
        except Exception as error:  # kombu raises a zoo of transport-specific errors
            raise BrokerUnavailable(f"broker unreachable: {error}") from error

    def try_ring(self, model_pair: str) -> bool:
        """Ring for work already in the ledger; a failure is logged, not raised (False): the work
        stays queued and the sweeper rings that pair again after LDAQ_REQUEUE_SECONDS."""
        try:
            self.ring(model_pair)
        except BrokerUnavailable as error:
            log.warning("model_pair=%s outcome=ring_failed error=%r", model_pair, str(error))
            return False
        return True

    def ring(self, model_pair: str) -> None:
        """Wake a worker serving `model_pair`; raises `BrokerUnavailable` when the message cannot be sent."""
        self._send(WAKE_TASK, [model_pair], queue_for_pair(self.settings, model_pair))

    def ring_for_detection(self, experiment_id: str, name: str) -> None:
        """Ask the detection worker to run detection `name` of the experiment; raises `BrokerUnavailable`."""
        self._send(DETECT_TASK, [experiment_id, name], DETECTIONS_QUEUE)

    def _send(self, task: str, args: list, queue: str) -> None:
        try:
            self.app.send_task(task, args=args, queue=queue, retry=False)
        except Exception as error:
            raise BrokerUnavailable(f"could not send {task}: {error}") from error
