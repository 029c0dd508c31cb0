"""The embedded broker on a fresh file: processes that set it up and declare the same queue at the same moment
all go on (the API's readiness check and the worker's start once raced, and the worker died of the queue's
unique key)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from kombu import Connection

import ldaq.embedded_broker  # noqa: F401  (registers the scheme)

ROUNDS, PROCESSES = 15, 3


def declare(url: str, start: multiprocessing.Barrier) -> None:
    with Connection(url) as connection:
        channel = connection.default_channel
        start.wait(timeout=60)
        channel.queue_declare("ldaq")


def test_processes_declaring_one_queue_at_once_on_a_fresh_broker_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        url = f"ldaqsqla+sqlite:///{tmp_path / f'broker-{round_}.db'}"
        start = context.Barrier(PROCESSES)
        processes = [context.Process(target=declare, args=(url, start)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [process.exitcode for process in processes] == [0] * PROCESSES, f"round {round_}"
