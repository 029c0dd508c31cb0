"""Binding a view to its schemas: one declaration validates input, dumps output and documents both.

`@endpoint(...)` parses the body and query string with the given models (a refusal becomes a 400
in the error shape), serializes what the view returns through the response model, and leaves an
`EndpointDoc` on the view for `api.openapi` to read. Nothing about an endpoint is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import Response, current_app, request
from pydantic import BaseModel, ValidationError

from api.errors import invalid_request_from
from ldaq.backend import Backend
from ldaq.request_models import MAX_NEW_TOKENS_LIMIT

JSON = "application/json"


@dataclass(frozen=True)
class EndpointDoc:
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    media_types: tuple[str, ...]


def current_backend() -> Backend:
    """The settings, database, doorbell and model pairs `create_app` built for this app."""
    return current_app.extensions["ldaq"]


def parse_body(model: type[BaseModel]) -> BaseModel:
    """Validate the raw body (not `request.json`) so that pydantic's strict JSON rules apply."""
    limit = current_backend().settings.max_new_tokens
    try:
        return model.model_validate_json(request.get_data(), context={MAX_NEW_TOKENS_LIMIT: limit})
    except ValidationError as error:
        raise invalid_request_from(error) from error


def parse_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise invalid_request_from(error) from error


def json_response(model: type[BaseModel], data: object, status: int = 200) -> Response:
    """Dump `data` through `model`: the response is checked against the contract on the way out."""
    return Response(model.model_validate(data).model_dump_json(), status=status, mimetype=JSON)


def endpoint(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    media_types: tuple[str, ...] = (JSON,),
) -> Callable:
    """Declare a view's contract. The view gets `body=` and `query=` models as keyword arguments
    and returns data for `response` (optionally `(data, headers)`), or a finished `Response`."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def handle(**path_arguments: str) -> Response:
            inputs = dict(path_arguments)
            if body is not None:
                inputs["body"] = parse_body(body)
            if query is not None:
                inputs["query"] = parse_query(query)
            result = view(**inputs)
            if isinstance(result, Response):
                return result
            data, headers = result if isinstance(result, tuple) else (result, {})
            reply = json_response(response, data, status)
            reply.headers.update(headers)
            return reply

        handle.endpoint_doc = EndpointDoc(summary, body, query, response, status, media_types)
        return handle

    return decorate
