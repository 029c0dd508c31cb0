"""The OpenAPI 3.1 document, generated from the routes and the pydantic schemas they declare.

Nothing here is hand-kept: each path comes from the URL map, each schema from `@endpoint`'s
models via `model_json_schema`, so the document cannot drift from what the server validates.
"""

from __future__ import annotations

import re

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from api.contract import JSON, EndpointDoc, current_backend, endpoint
from api.schemas import ErrorResponse
from ldaq.backend import Backend

COMPONENT_REF = "#/components/schemas/{model}"
IGNORED_METHODS = {"HEAD", "OPTIONS"}

openapi_blueprint = Blueprint("openapi", __name__, url_prefix="/api/v1")


def _documented_routes(app: Flask) -> list[tuple[Rule, EndpointDoc]]:
    routes = []
    for rule in app.url_map.iter_rules():
        doc = getattr(app.view_functions[rule.endpoint], "endpoint_doc", None)
        if doc is not None:
            routes.append((rule, doc))
    return sorted(routes, key=lambda route: route[0].rule)


def _schemas(docs: list[EndpointDoc], backend: Backend) -> dict[str, dict]:
    """Every body and response model, plus the error shape, as components/schemas (queries are inlined)."""
    models: list[type[BaseModel]] = [ErrorResponse]
    for doc in docs:
        models += [model for model in (doc.body, doc.response) if model is not None]
    unique = list(dict.fromkeys(models))
    _, top = models_json_schema([(model, "validation") for model in unique], ref_template=COMPONENT_REF)
    schemas = top["$defs"]
    for body in {doc.body for doc in docs if doc.body is not None}:
        _add_server_limits(schemas[body.__name__]["properties"], backend)
    return schemas


def _add_server_limits(properties: dict, backend: Backend) -> None:
    """What this server accepts beyond the static models: its model pairs and its LDAQ_MAX_NEW_TOKENS.

    Request bodies only: a response may name a pair this server no longer offers.
    """
    if "model_pair" in properties and backend.model_pairs:
        properties["model_pair"]["enum"] = sorted(backend.model_pairs)
    if "max_new_tokens" in properties:
        properties["max_new_tokens"]["maximum"] = backend.settings.max_new_tokens


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": COMPONENT_REF.format(model=model.__name__)}


def _parameters(rule: Rule, doc: EndpointDoc) -> list[dict]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in sorted(rule.arguments)
    ]
    if doc.query is not None:
        schema = doc.query.model_json_schema(ref_template=COMPONENT_REF)
        required = set(schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": field_schema}
            for name, field_schema in schema["properties"].items()
        ]
    return parameters


def _operation(rule: Rule, doc: EndpointDoc) -> dict:
    success = {"description": doc.summary}
    if doc.response is not None:
        success["content"] = {media_type: {"schema": _ref(doc.response)} for media_type in doc.media_types}
    operation = {
        "summary": doc.summary,
        "operationId": rule.endpoint.replace(".", "_"),
        "parameters": _parameters(rule, doc),
        "responses": {
            str(doc.status): success,
            "default": {"description": "an error", "content": {JSON: {"schema": _ref(ErrorResponse)}}},
        },
    }
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(doc.body)}}}
    return operation


def openapi_document(app: Flask, backend: Backend) -> dict:
    """The whole document for `app` as it is routed now, with this server's pairs and limits."""
    routes = _documented_routes(app)
    paths: dict[str, dict] = {}
    for rule, doc in routes:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operation = _operation(rule, doc)
        if backend.settings.api_token and rule.rule.startswith("/api/v1"):
            operation["security"] = [{"bearerToken": []}]
        for method in sorted(rule.methods - IGNORED_METHODS):
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "ldaq", "version": "1", "description": "A job queue for logit diff amplification experiments"},
        "paths": paths,
        "components": {
            "schemas": _schemas([doc for _, doc in routes], backend),
            "securitySchemes": {"bearerToken": {"type": "http", "scheme": "bearer"}},
        },
    }


@openapi_blueprint.get("/openapi.json")
@endpoint("This document")
def openapi_json() -> Response:
    return jsonify(openapi_document(current_app, current_backend()))
