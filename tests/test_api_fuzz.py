"""The OpenAPI document against the live service, fuzzed with schemathesis.

Every generated request must get no 5xx and a response the document describes; every request the
document allows must be accepted, except where a rule JSON Schema cannot express refuses it. Those
rules are listed here (and in the README) by the error code they answer with, and only those
codes are excused.

A real worker answers `POST /generate`; experiments the fuzzer submits are cancelled as soon as
they appear, so the worker is never minutes behind a 100,000-row experiment while a generate waits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ldaq.model_pairs import BUILT_IN_PAIRS
from tests.helpers import service_environment
from tests.live_service import LiveService

# What the server refuses that the document cannot say, by error code: JSON Schema has no way to
# count a prompt's tokens, run RE2, multiply three fields or know what a cursor decodes to.
RULES_THE_SCHEMA_CANNOT_EXPRESS = {
    "prompt_too_long": "a prompt's tokens plus max_new_tokens against the pair's context window",
    "no_chat_template": "whether the chosen pair's tokenizer has a chat template",
    "invalid_detector": "whether RE2 runs a regex (backreferences and lookaround are refused)",
    "invalid_detector_name": "named detectors' names distinct, and none of them 'default'",
    "experiment_too_large": "prompts x alphas x samples_per_prompt at most 10^9",
    "invalid_cursor": "whether a well-formed cursor decodes to a key this endpoint handed out",
    "payload_too_large": "the body's size in bytes (LDAQ_MAX_BODY_BYTES)",
}
ACCEPTED = range(200, 300)
NOT_A_REFUSAL = {404, 409}  # an id that does not exist, a cancel of a finished experiment
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def accepts_what_the_schema_allows(ctx, response, case) -> bool | None:
    """schemathesis's positive_data_acceptance, less the refusals RULES_THE_SCHEMA_CANNOT_EXPRESS names."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status in ACCEPTED or status in NOT_A_REFUSAL:
        return None
    code = response.json()["error"]["code"]
    if code in RULES_THE_SCHEMA_CANNOT_EXPRESS:
        return None
    raise AssertionError(f"{case.operation.label} refused a request its schema allows: {status} {code}")


CHECKS = [
    not_a_server_error,  # no 5xx
    status_code_conformance,  # every status documented, and every body, content type and header as documented
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
    accepts_what_the_schema_allows,  # what the schema allows is accepted (positive cases)
    negative_data_rejection,  # what it forbids is refused (negative cases)
]


def _cancel_everything(url: str, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        listed = requests.get(f"{url}/api/v1/experiments", params={"limit": 500}, timeout=10).json()
        for experiment in listed["items"]:
            if experiment["status"] in ("queued", "running"):
                requests.post(f"{url}/api/v1/experiments/{experiment['id']}/cancel", timeout=10)


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory, tiny_pair_dirs: tuple[Path, Path]) -> Iterator[LiveService]:
    root = tmp_path_factory.mktemp("fuzz")
    # Every pair the document offers is the tiny one, the built-in ones included (a file entry
    # overrides a built-in pair, which would otherwise be built on first use: minutes).
    before, after = (str(path) for path in tiny_pair_dirs)
    pairs_file = root / "pairs.yaml"
    names = ("tiny", *BUILT_IN_PAIRS)
    pairs_file.write_text(yaml.safe_dump({name: {"before": before, "after": after} for name in names}))
    # A small LDAQ_MAX_NEW_TOKENS (the document says so) and body limit keep each request cheap.
    environment = service_environment(
        root, pairs_file, "", "", LDAQ_MAX_NEW_TOKENS="8", LDAQ_MAX_BODY_BYTES="65536",
        LDAQ_GENERATE_TIMEOUT_SECONDS="60",
    )
    live = LiveService(environment, root)
    live.start_worker()
    stop = threading.Event()
    canceller = threading.Thread(target=_cancel_everything, args=(live.url, stop), daemon=True)
    canceller.start()
    yield live
    stop.set()
    canceller.join()
    live.close()


def _fuzz(operation, mode: GenerationMode) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def call_and_check(case) -> None:
        case.call_and_validate(checks=CHECKS, timeout=90)

    call_and_check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_server_keeps_the_documented_contract(fuzzed_service: LiveService, mode: GenerationMode):
    document = fuzzed_service.get("/api/v1/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=fuzzed_service.url)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(methods) for methods in document["paths"].values())  # each one, in turn
    for operation in operations:
        if mode.is_negative and not _can_be_wrong(operation.definition.raw):
            continue  # no body and no query: a path string cannot be made invalid
        _fuzz(operation, mode)


def _can_be_wrong(operation: dict) -> bool:
    return "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))



def test_the_readme_names_every_rule_the_schema_cannot_express():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    paragraph = readme[readme.index("The OpenAPI document is exact") :].split("\n\n")[0]
    assert all(f"`{code}`" in paragraph for code in RULES_THE_SCHEMA_CANNOT_EXPRESS)
