"""Probes: /healthz (the process lives) and /readyz (the database and the broker answer)."""

from __future__ import annotations

import logging

from flask import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.contract import current_backend, endpoint
from api.schemas import Liveness, Readiness
from ldaq.backend import Backend
from ldaq.doorbell import BrokerUnavailable
from ldaq.errors import ServiceUnavailable

health_blueprint = Blueprint("health", __name__)
logger = logging.getLogger(__name__)


@health_blueprint.get("/healthz")
@endpoint("200 while the process lives", response=Liveness)
def healthz() -> dict:
    return {"status": "ok"}


# A probe says which dependency is down, never its address or credentials: those go to the log.
UNAVAILABLE = "unavailable"


def _database_state(backend: Backend) -> str:
    try:
        with backend.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        logger.warning("readiness: database check failed: %s", error)
        return UNAVAILABLE
    return "ok"


def _broker_state(backend: Backend) -> str:
    try:
        backend.doorbell.check()
    except BrokerUnavailable as error:
        logger.warning("readiness: broker check failed: %s", error)
        return UNAVAILABLE
    return "ok"


@health_blueprint.get("/readyz")
@endpoint("200 when the database and the broker answer; 503 naming the one that does not", response=Readiness)
def readyz() -> dict:
    backend = current_backend()
    checks = {"database": _database_state(backend), "broker": _broker_state(backend)}
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        raise ServiceUnavailable(f"not ready: {' and '.join(failing)} not answering", code="not_ready", details=checks)
    return {"status": "ready", "checks": checks}
