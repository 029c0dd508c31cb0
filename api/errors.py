"""Typed API errors and the handlers that render every failure as the one JSON error shape.

`{"error": {"code": ..., "message": ..., "details": {...}}}`: clients branch on `code`, people
read `message`. A 4xx means the client did something wrong; a 500 means we have a bug.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from api.schemas import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)

MAX_REPORTED_VALIDATION_ERRORS = 20


class ApiError(Exception):
    """Base of every error a view or service raises on purpose; the subclass names the status."""

    default_status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    default_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}
        self.status = status or self.default_status
        self.headers = {**self.default_headers, **(headers or {})}


class InvalidRequest(ApiError):
    default_status, default_code = 400, "invalid_request"


class Unauthorized(ApiError):
    default_status, default_code = 401, "unauthorized"
    default_headers = {"WWW-Authenticate": 'Bearer realm="ldaq"'}


class NotFound(ApiError):
    default_status, default_code = 404, "not_found"


class Conflict(ApiError):
    default_status, default_code = 409, "conflict"


class PayloadTooLarge(ApiError):
    default_status, default_code = 413, "payload_too_large"


class BadGateway(ApiError):
    """The worker answered, with a failure: neither the client's fault nor an API bug."""

    default_status, default_code = 502, "generation_failed"


class ServiceUnavailable(ApiError):
    default_status, default_code = 503, "service_unavailable"


class GatewayTimeout(ApiError):
    default_status, default_code = 504, "gateway_timeout"


def invalid_request_from(error: ValidationError) -> InvalidRequest:
    """A pydantic failure as a 400; unparseable JSON gets its own code so clients can tell."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    if any(problem["type"] == "json_invalid" for problem in problems):
        return InvalidRequest(f"request body is not valid JSON: {problems[0]['msg']}", code="malformed_json")
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    # Inputs are left out on purpose: echoing a 100000-prompt list back helps nobody.
    reported = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
    return InvalidRequest(
        f"{where}: {first['msg']}{more}",
        details={"errors": reported[:MAX_REPORTED_VALIDATION_ERRORS], "errors_total": len(problems)},
    )


def error_response(error: ApiError) -> Response:
    body = ErrorResponse(error=ErrorBody(code=error.code, message=error.message, details=error.details))
    response = Response(body.model_dump_json(), status=error.status, mimetype="application/json")
    response.headers.update(error.headers)
    return response


def _from_http_exception(error: HTTPException) -> ApiError:
    """Werkzeug's own refusals (no such route, wrong method, body too large) in our shape."""
    if error.code == 413:
        limit = request.max_content_length
        return PayloadTooLarge(
            f"request body is larger than the server's limit of {limit} bytes (LDAQ_MAX_BODY_BYTES)",
            details={"max_body_bytes": limit},
        )
    # Keep werkzeug's headers that matter to clients, such as Allow on a 405.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    return ApiError(
        error.description or error.name,
        code=error.name.lower().replace(" ", "_"),
        status=error.code or 500,
        headers=headers,
    )


def _unexpected(error: Exception) -> Response:
    logger.exception("unhandled error", exc_info=error)
    return error_response(ApiError("internal server error; this is a bug, please report it"))


def install_error_handlers(app: Flask) -> None:
    """Every exception leaves the app as the JSON error shape; only bugs become 500s."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, lambda error: error_response(_from_http_exception(error)))
    app.register_error_handler(Exception, _unexpected)
