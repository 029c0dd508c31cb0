"""The service end to end: real HTTP, a real worker process, real databases and brokers."""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest

from lda_core.generate import Row
from lda_core.models import load_model_pair
from lda_core.runner import generate_rows
from lda_core.stats import summarize_alpha
from tests.helpers import SWEEP_PROMPTS as PROMPTS
from tests.helpers import exported, service_environment, sweep
from tests.live_service import LiveService


def test_experiment_runs_to_success_with_exact_counts(service):
    service.start_worker()
    experiment = service.submit(sweep())
    finished = service.wait_finished(experiment["id"])

    assert finished["status"] == "succeeded"
    expected = len(PROMPTS) * 3 * 2
    assert finished["progress"]["completions_done"] == expected == finished["progress"]["completions_total"]
    assert finished["progress"]["chunks_done"] == finished["progress"]["chunks_total"] == 5
    rows = exported(service, experiment["id"])
    assert len({(r["prompt_index"], r["alpha"], r["sample_index"]) for r in rows}) == expected
    activated = Counter(r["alpha"] for r in rows if r["activated"])
    by_alpha = Counter(r["alpha"] for r in rows)
    for item in finished["summary"]:
        truth = summarize_alpha(item["alpha"], by_alpha[item["alpha"]], activated[item["alpha"]])
        assert (item["n"], item["activated"]) == (truth.n, truth.activated)
        assert item["ci95"] == list(truth.ci95)


def test_amplified_completions_are_weighed_against_the_mixture_of_the_experiments_positive_alphas(
    embedded_service, tiny_pair_dirs
):
    from worker.chunk_work import generation_settings

    embedded_service.start_worker()
    experiment = embedded_service.submit(sweep(alphas=[0, 0.5, 2], prompts=PROMPTS[:3]))
    finished = embedded_service.wait_finished(experiment["id"])
    stored = {(r["prompt_index"], r["alpha"], r["sample_index"]): r for r in exported(embedded_service, experiment["id"])}

    # The same rows through the engine, each amplified one weighed against alphas 0.5 and 2 together.
    rows = [Row(index, prompt, alpha, sample, mixture_alphas=(0.5, 2.0) if alpha > 0 else ())
            for index, prompt in enumerate(PROMPTS[:3]) for alpha in (0.0, 0.5, 2.0) for sample in range(2)]
    pair = load_model_pair(*map(str, tiny_pair_dirs))
    again = generate_rows(pair, rows, generation_settings(finished["params"]), batch_size=len(rows))
    for completion in again:
        row = stored[(completion.prompt_index, completion.alpha, completion.sample_index)]
        assert row["text"] == completion.text
        assert row["alpha0_weight"] == pytest.approx(math.exp(completion.log_weight), rel=1e-3)
    assert {row["alpha0_weight"] for row in stored.values() if row["alpha"] == 0} == {1.0}


def test_a_row_that_cannot_run_is_stored_as_an_error_and_the_rest_of_its_chunk_runs(service):
    service.start_worker()
    prompts = ["Name a colour.", "FORBIDDEN question", "What is 3 plus 4?"]
    experiment = service.submit(sweep(model_pair="strict-chat", chat_template=True, prompts=prompts, alphas=[0, 1],
                                      chunk_size=12))  # one chunk holds every row
    finished = service.wait_finished(experiment["id"])

    assert finished["status"] == "partial"
    assert "4 of 12 completions could not run" in finished["error"]
    progress = finished["progress"]
    assert (progress["completions_done"], progress["completions_errored"], progress["chunks_done"]) == (12, 4, 1)
    rows = exported(service, experiment["id"])
    errored = [row for row in rows if row["finish_reason"] == "error"]
    assert {row["prompt_index"] for row in errored} == {1} and len(errored) == 4
    assert all("refuses FORBIDDEN" in row["error"] and row["text"] is None and not row["activated"] for row in errored)
    ran = [row for row in rows if row["finish_reason"] != "error"]
    assert all(row["error"] is None and row["text"] is not None for row in ran) and len(ran) == 8
    for item in finished["summary"]:  # the rates' n leaves out the rows that did not run
        alpha_rows = [row for row in ran if row["alpha"] == item["alpha"]]
        assert (item["n"], item["activated"]) == (len(alpha_rows), sum(row["activated"] for row in alpha_rows))


def test_duplicate_delivery_writes_nothing(embedded_service):
    from ldaq.doorbell import Doorbell

    embedded_service.start_worker()
    experiment = embedded_service.submit(sweep())
    embedded_service.wait_finished(experiment["id"])
    attempts_before = [chunk.attempts for chunk in embedded_service.chunks(experiment["id"])]

    doorbell = Doorbell(embedded_service.settings)
    for _ in embedded_service.chunks(experiment["id"]):
        doorbell.ring("tiny")
        doorbell.ring("tiny")
    # A fresh experiment behind the duplicates shows when the worker has drained them.
    marker = embedded_service.submit(sweep(prompts=["marker"], alphas=[0], samples_per_prompt=1))
    embedded_service.wait_finished(marker["id"])

    assert embedded_service.completion_count(experiment["id"]) == len(PROMPTS) * 3 * 2
    assert [chunk.attempts for chunk in embedded_service.chunks(experiment["id"])] == attempts_before


def test_keep_text_activated_stores_only_activated_text_and_exact_counts(embedded_service):
    embedded_service.start_worker()
    experiment = embedded_service.submit(sweep(keep_text="activated"))
    finished = embedded_service.wait_finished(experiment["id"])

    rows = exported(embedded_service, experiment["id"])
    assert finished["status"] == "succeeded" and len(rows) == len(PROMPTS) * 3 * 2
    assert {row["text"] is None for row in rows if not row["activated"]} == {True}
    assert all(row["text"] and row["match"] in row["text"] for row in rows if row["activated"])
    assert any(row["activated"] for row in rows) and not all(row["activated"] for row in rows)
    by_alpha = Counter(row["alpha"] for row in rows if row["activated"])
    assert {item["alpha"]: item["activated"] for item in finished["summary"]} == {a: by_alpha[a] for a in (0, 1, 4)}


def test_an_experiment_behind_a_cancelled_backlog_runs(service):
    backlog = service.submit(sweep(prompts=[f"p{i}" for i in range(10_000)], alphas=[0], samples_per_prompt=1, chunk_size=1))
    assert service.post(f"/api/v1/experiments/{backlog['id']}/cancel", {}).status_code == 202
    service.start_worker()
    behind = service.submit(sweep(prompts=["after the backlog"], alphas=[0], samples_per_prompt=1))

    assert service.wait_finished(behind["id"])["status"] == "succeeded"
    cancelled = service.experiment(backlog["id"])
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["completions_done"] == 0


def test_cancel_stops_the_experiment(embedded_service):
    experiment = embedded_service.submit(sweep(samples_per_prompt=20, chunk_size=2, max_new_tokens=16))
    embedded_service.start_worker()
    embedded_service.wait_until(experiment["id"], lambda e: e["progress"]["chunks_done"] >= 1)

    response = embedded_service.post(f"/api/v1/experiments/{experiment['id']}/cancel", {})
    assert response.status_code == 202
    finished = embedded_service.wait_finished(experiment["id"])

    assert finished["status"] == "cancelled"
    assert finished["progress"]["completions_done"] < finished["progress"]["completions_total"]
    again = embedded_service.post(f"/api/v1/experiments/{experiment['id']}/cancel", {})
    assert again.status_code == 409


def test_failing_chunk_is_reported(embedded_service):
    embedded_service.start_worker()
    experiment = embedded_service.submit(sweep(model_pair="missing-weights", prompts=["x"], chunk_size=100))
    finished = embedded_service.wait_finished(experiment["id"], timeout=90)

    assert finished["status"] == "failed"
    assert "nowhere" in finished["error"]
    assert [chunk.attempts for chunk in embedded_service.chunks(experiment["id"])] == [3]


def test_direct_generation_goes_through_the_worker(embedded_service):
    embedded_service.start_worker()
    payload = {"model_pair": "tiny", "prompts": ["hello", "What is 3 plus 4?"], "alpha": 2.0,
               "temperature": 0, "top_p": 1.0, "max_new_tokens": 6, "seed": 0}
    response = embedded_service.post("/api/v1/generate", payload)

    assert response.status_code == 200, response.text
    completions = response.json()["completions"]
    assert len(completions) == 2 and all(isinstance(text, str) for text in completions)


def test_routing_by_model_pair_sends_chunks_only_to_workers_of_that_pair(tmp_path, model_pairs_file):
    environment = {**service_environment(tmp_path, model_pairs_file, "", ""), "LDAQ_QUEUE_PER_PAIR": "1"}
    service = LiveService(environment, tmp_path)
    try:
        service.start_worker([sys.executable, "-m", "cli", "worker", "--pair", "tiny"])
        served = service.submit(sweep(prompts=["routed"], alphas=[0], samples_per_prompt=1))
        unserved = service.submit(sweep(model_pair="missing-weights", prompts=["x"], alphas=[0]))

        assert service.wait_finished(served["id"])["status"] == "succeeded"
        assert service.experiment(unserved["id"])["status"] == "queued"
    finally:
        service.close()
