"""Every failure leaves the API as the one JSON error shape, with its HTTP status chosen here.

`{"error": {"code": ..., "message": ..., "details": {...}}}`: clients branch on `code`, people
read `message`. The service raises `ldaq.errors` exceptions, which know nothing of HTTP;
`HTTP_STATUS` is the one table that turns them into statuses. A 4xx means the client did
something wrong; a 500 means we have a bug.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from api.schemas import ErrorBody, ErrorResponse
from ldaq.errors import (
    Conflict,
    GenerationFailed,
    InvalidRequest,
    LdaqError,
    NotFound,
    ServiceUnavailable,
    WorkerTimeout,
)
from ldaq.request_models import PATTERN_RULES

logger = logging.getLogger(__name__)

MAX_REPORTED_VALIDATION_ERRORS = 20


class Unauthorized(LdaqError):
    """No valid bearer token: an HTTP concern, so it lives here and not in the service."""

    default_code = "unauthorized"


class PayloadTooLarge(LdaqError):
    default_code = "payload_too_large"


HTTP_STATUS: dict[type[LdaqError], int] = {
    InvalidRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    GenerationFailed: 502,
    ServiceUnavailable: 503,
    WorkerTimeout: 504,
}
EXTRA_HEADERS: dict[type[LdaqError], dict[str, str]] = {Unauthorized: {"WWW-Authenticate": 'Bearer realm="ldaq"'}}


def _nearest(table: dict, error: LdaqError, default):
    """The entry of the error's nearest class (itself, then its bases) in `table`."""
    return next((table[cls] for cls in type(error).__mro__ if cls in table), default)


def status_of(error: LdaqError) -> int:
    """The status of the nearest class in `HTTP_STATUS`; an unmapped error is our bug (500)."""
    return _nearest(HTTP_STATUS, error, 500)


def _in_words(problem: dict) -> dict:
    """A pattern refusal says the rule the pattern enforces, not the regex."""
    pattern = problem.get("ctx", {}).get("pattern")
    return {**problem, "msg": PATTERN_RULES.get(pattern, problem["msg"])}


def invalid_request_from(error: ValidationError) -> InvalidRequest:
    """A pydantic failure as a 400; unparseable JSON gets its own code so clients can tell."""
    problems = [_in_words(problem) for problem in error.errors(include_url=False, include_input=False)]
    if any(problem["type"] == "json_invalid" for problem in problems):
        return InvalidRequest(f"request body is not valid JSON: {problems[0]['msg']}", code="malformed_json")
    first = problems[0]
    # A cursor the schema refuses (empty, not base64) is a bad cursor to clients, as a forged one is.
    code = "invalid_cursor" if all(tuple(p["loc"]) == ("cursor",) for p in problems) else "invalid_request"
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    # Inputs are left out on purpose: echoing a 100000-prompt list back helps nobody.
    reported = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
    return InvalidRequest(
        f"{where}: {first['msg']}{more}",
        code=code,
        details={"errors": reported[:MAX_REPORTED_VALIDATION_ERRORS], "errors_total": len(problems)},
    )


def error_response(
    code: str, message: str, details: dict, status: int, headers: dict[str, str] | None = None
) -> Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    response = Response(body.model_dump_json(), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def _from_ldaq_error(error: LdaqError) -> Response:
    headers = _nearest(EXTRA_HEADERS, error, {})
    return error_response(error.code, error.message, error.details, status_of(error), headers)


def _from_http_exception(error: HTTPException) -> Response:
    """Werkzeug's own refusals (no such route, wrong method, body too large) in our shape."""
    if error.code == 413:
        limit = request.max_content_length
        return _from_ldaq_error(
            PayloadTooLarge(
                f"request body is larger than the server's limit of {limit} bytes (LDAQ_MAX_BODY_BYTES)",
                details={"max_body_bytes": limit},
            )
        )
    # Keep werkzeug's headers that matter to clients, such as Allow on a 405.
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    code = error.name.lower().replace(" ", "_")
    return error_response(code, error.description or error.name, {}, error.code or 500, headers)


def _database_unavailable(error: OperationalError | InterfaceError) -> Response:
    """The database did not answer (down, restarting, unreachable): a 503 the client may retry,
    without the driver's message, which names hosts and ports."""
    logger.warning("database unavailable: %s", error)
    return _from_ldaq_error(
        ServiceUnavailable("the database is not answering; try again shortly", code="database_unavailable")
    )


def _unexpected(error: Exception) -> Response:
    logger.exception("unhandled error", exc_info=error)
    return error_response("internal_error", "internal server error; this is a bug, please report it", {}, 500)


def install_error_handlers(app: Flask) -> None:
    """Every exception leaves the app as the JSON error shape; only bugs become 500s."""
    app.register_error_handler(LdaqError, _from_ldaq_error)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(OperationalError, _database_unavailable)
    app.register_error_handler(InterfaceError, _database_unavailable)
    app.register_error_handler(Exception, _unexpected)
