"""Reading request bodies: JSON whatever the content type says (curl without -H must work)."""

from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import Schema

from .errors import INVALID_REQUEST, ApiError


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ApiError."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, f"{INVALID_REQUEST}: body must be a JSON object")
    return body


def load(schema: Schema) -> dict[str, Any]:
    """The request body validated by ``schema`` (raises marshmallow.ValidationError → 400)."""
    result: dict[str, Any] = schema.load(json_object())
    return result
