"""/api/v1/generate: a small batch at one alpha, answered while the client waits."""

from __future__ import annotations

from flask import Blueprint

from api.contract import current_backend, endpoint
from api.schemas import GenerateResponse
from ldaq.direct_generation import generate_direct
from ldaq.request_models import GenerateRequest

generate_blueprint = Blueprint("generate", __name__, url_prefix="/api/v1/generate")


@generate_blueprint.post("")
@endpoint(
    "Generate for at most 64 prompts through the worker (504 when it does not answer in time)",
    body=GenerateRequest,
    response=GenerateResponse,
)
def generate(body: GenerateRequest) -> dict:
    return {"completions": generate_direct(current_backend(), body)}
