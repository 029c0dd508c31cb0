"""Faults the ledger must survive: a killed worker, a chunk that kills its worker, a pickle."""

from __future__ import annotations

import sys
import time

from ldaq.doorbell import DEFAULT_QUEUE, WAKE_TASK, Doorbell
from tests.helpers import exported, sweep


def _no_duplicates(service, experiment_id: str) -> bool:
    rows = exported(service, experiment_id)
    return len(rows) == len({(r["prompt_index"], r["alpha"], r["sample_index"]) for r in rows})


def _a_chunk_is_running(service, experiment_id: str) -> bool:
    return any(chunk.status == "running" for chunk in service.chunks(experiment_id))


def test_worker_killed_mid_experiment_loses_nothing(service):
    experiment = service.submit(sweep(samples_per_prompt=8, chunk_size=6, max_new_tokens=48))
    total = experiment["progress"]["completions_total"]
    worker = service.start_worker()
    service.wait_until(
        experiment["id"],
        lambda e: e["progress"]["chunks_done"] >= 1 and _a_chunk_is_running(service, experiment["id"]),
    )
    service.kill_worker(worker)
    assert service.experiment(experiment["id"])["status"] == "running"

    started = time.monotonic()
    service.start_worker()
    finished = service.wait_finished(experiment["id"], timeout=120)

    assert finished["status"] == "succeeded", service.worker_logs()
    assert service.completion_count(experiment["id"]) == total
    assert _no_duplicates(service, experiment["id"])
    assert time.monotonic() - started < 60


def test_chunk_that_kills_its_worker_fails_after_max_attempts(embedded_service):
    poison = sweep(prompts=["fine", "POISON pill"], alphas=[0], samples_per_prompt=2, chunk_size=2)
    experiment = embedded_service.submit(poison)
    worker = embedded_service.start_worker([sys.executable, "-m", "tests.poison_worker"])
    finished = embedded_service.wait_finished(experiment["id"], timeout=120)

    assert finished["status"] == "partial"
    assert "attempts" in finished["error"]
    chunks = {chunk.chunk_index: chunk for chunk in embedded_service.chunks(experiment["id"])}
    assert (chunks[1].status, chunks[1].attempts) == ("failed", 3)
    # The fine chunk may have shared a batch with the poison and died with it once; retried, it runs alone.
    assert chunks[0].status == "succeeded" and chunks[0].attempts <= 2
    assert worker.poll() is None, "the worker's parent survives its child's deaths"


class _OpensAFileWhenUnpickled:
    """A pickle that runs code: unpickling it creates the file at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_message_is_refused_and_does_not_run(embedded_service, tmp_path):
    proof = tmp_path / "unpickled"
    doorbell = Doorbell(embedded_service.settings)
    doorbell.app.send_task(WAKE_TASK, args=[_OpensAFileWhenUnpickled(str(proof))], queue=DEFAULT_QUEUE, serializer="pickle")

    embedded_service.start_worker()
    marker = embedded_service.submit(sweep(prompts=["marker"], alphas=[0], samples_per_prompt=1))
    assert embedded_service.wait_finished(marker["id"])["status"] == "succeeded"

    assert not proof.exists()
    assert "ContentDisallowed" in embedded_service.worker_logs() or "disallowed" in embedded_service.worker_logs().lower()
