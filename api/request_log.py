"""One logfmt line per request: method, path, status, duration and, when there is one, the experiment."""

from __future__ import annotations

import json
import logging
import time

from flask import Flask, Response, g, request

logger = logging.getLogger("ldaq.api.requests")


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(character in text for character in ' "=\\'):
        return text
    return json.dumps(text)  # quoted and escaped, as logfmt readers expect


def note_experiment(experiment_id: str) -> None:
    """Name the experiment a request created, for the log line (reads take it from the URL)."""
    g.experiment_id = experiment_id


def install_request_log(app: Flask) -> None:
    """Log every request, errors included; INFO reaches stderr unless logging is configured already."""
    if not logger.hasHandlers():
        logger.addHandler(logging.StreamHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)

    @app.before_request
    def start_clock() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("request_started", time.perf_counter())
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": f"{(time.perf_counter() - started) * 1000:.1f}",
        }
        experiment_id = (request.view_args or {}).get("experiment_id") or g.get("experiment_id")
        if experiment_id:
            fields["experiment_id"] = experiment_id
        logger.info(" ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items()))
        return response
