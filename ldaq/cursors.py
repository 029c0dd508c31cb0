"""Keyset pagination cursors: the last key a page showed, opaque to clients."""

from __future__ import annotations

import base64
import json

from pydantic import TypeAdapter

from ldaq.errors import InvalidRequest


def encode_cursor(key: tuple) -> str:
    """The last key shown, as an opaque token: clients pass it back and never parse it."""
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode()


def decode_cursor(cursor: str, shape: TypeAdapter) -> tuple:
    """The key in a cursor, checked against `shape`; a forged or foreign cursor is refused."""
    try:
        return shape.validate_json(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as error:  # binascii and pydantic errors are ValueErrors
        raise InvalidRequest("cursor is not one this endpoint handed out", code="invalid_cursor") from error
