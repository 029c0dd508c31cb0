"""/api/v1/model-pairs: the named pairs this server offers (requests name one, never a path)."""

from __future__ import annotations

from flask import Blueprint

from api.contract import current_backend, endpoint
from api.schemas import ModelPairList

model_pairs_blueprint = Blueprint("model_pairs", __name__, url_prefix="/api/v1/model-pairs")


@model_pairs_blueprint.get("")
@endpoint("The model pairs this server offers", response=ModelPairList)
def browse() -> dict:
    pairs = current_backend().model_pairs
    return {"items": [pairs[name].describe() for name in sorted(pairs)]}
