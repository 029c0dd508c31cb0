"""The service's errors: what went wrong, as a machine code, a sentence and details.

They say nothing about HTTP. `api/errors.py` maps each class to a status in one table, so the
service can be called from the API, the worker or a script alike.
"""

from __future__ import annotations

from typing import ClassVar


class LdaqError(Exception):
    """Base of every error the service raises on purpose; clients branch on `code`."""

    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}


class InvalidRequest(LdaqError):
    """The request cannot be served as asked: a bad value, an unknown name, a forged cursor."""

    default_code = "invalid_request"


class NotFound(LdaqError):
    default_code = "not_found"


class Conflict(LdaqError):
    """The request is valid but the resource's state forbids it (cancelling a finished experiment)."""

    default_code = "conflict"


class ServiceUnavailable(LdaqError):
    """A dependency (the broker, the database) does not answer; trying again later may work."""

    default_code = "service_unavailable"


class GenerationFailed(LdaqError):
    """The worker answered, with a failure: neither the client's fault nor a bug of the service."""

    default_code = "generation_failed"


class WorkerTimeout(LdaqError):
    """No worker answered within the server's wait limit."""

    default_code = "worker_timeout"
