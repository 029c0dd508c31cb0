"""Bearer-token auth for /api/v1: on when LDAQ_API_TOKEN is set, off (local use) when it is not.

Health probes and the dashboard page stay open so that orchestrators and browsers can reach them.
"""

from __future__ import annotations

import hmac

from flask import Flask, request

from api.errors import Unauthorized

PROTECTED_PREFIX = "/api/v1"


def _presented_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def install_auth(app: Flask, api_token: str) -> None:
    """Refuse every /api/v1 request without `Authorization: Bearer <api_token>` (401)."""
    if not api_token:
        return

    @app.before_request
    def require_bearer_token() -> None:
        if not request.path.startswith(PROTECTED_PREFIX):
            return
        # Constant-time comparison: the time taken must not reveal how much of a guess was right.
        if not hmac.compare_digest(_presented_token().encode(), api_token.encode()):
            raise Unauthorized("this server needs 'Authorization: Bearer <token>' (LDAQ_API_TOKEN)")
