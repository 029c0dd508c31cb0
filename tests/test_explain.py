"""Explaining a completion: the replay goes through the worker like POST /generate, reproduces the stored
text (float32, tiny real models), and its per-token figures are the models' own."""

from __future__ import annotations

import math

import pytest

from tests.helpers import assert_error, exported, sweep
from tests.live_service import LiveService

EXPERIMENTS = "/api/v1/experiments"


@pytest.fixture
def finished(service: LiveService) -> dict:
    service.start_worker()
    experiment = service.submit(sweep(alphas=[0, 4], samples_per_prompt=2, max_new_tokens=10))
    return service.wait_finished(experiment["id"])


def test_explaining_a_stored_completion_replays_it_and_explains_every_token(service: LiveService, finished) -> None:
    stored = [c for c in exported(service, finished["id"]) if c["error"] is None]
    url = f"{EXPERIMENTS}/{finished['id']}/completions/explain"
    for completion in (next(c for c in stored if c["alpha"] == 0), next(c for c in stored if c["alpha"] == 4)):
        row = {key: completion[key] for key in ("prompt_index", "alpha", "sample_index")}
        response = service.post(url, row)
        assert response.status_code == 200, response.text
        explained = response.json()
        assert explained["text"] == explained["stored_text"] == completion["text"] and explained["reproduces_stored"]
        assert len(explained["tokens"]) == completion["tokens"] > 0
        for token in explained["tokens"]:
            assert token["logprob_before"] <= 0 and token["logprob_after"] <= 0 and token["logprob_sampled"] <= 0
            if completion["alpha"] == 0:  # temperature 1, top-p 1: alpha 0 samples the after-model itself
                assert math.isclose(token["logprob_sampled"], token["logprob_after"], abs_tol=1e-4)
        if completion["alpha"] == 4:  # amplification moved the distribution away from the after-model's
            assert any(abs(t["logprob_sampled"] - t["logprob_after"]) > 1e-3 for t in explained["tokens"])


def test_explain_refuses_a_row_the_experiment_does_not_have(service: LiveService, finished) -> None:
    url = f"{EXPERIMENTS}/{finished['id']}/completions/explain"
    assert_error(service.post(url, {"prompt_index": 0, "alpha": 2, "sample_index": 0}), 400, "unknown_row")
    assert_error(service.post(url, {"prompt_index": 0, "alpha": 0, "sample_index": 2}), 400, "unknown_row")
    assert_error(service.post(url, {"prompt_index": 999, "alpha": 0, "sample_index": 0}), 400, "unknown_row")
    assert_error(service.post(url, {"prompt_index": 0, "alpha": 0}), 400, "invalid_request")
    assert_error(service.post(f"{EXPERIMENTS}/nope/completions/explain",
                              {"prompt_index": 0, "alpha": 0, "sample_index": 0}), 404, "not_found")
