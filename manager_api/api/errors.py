"""The one place that turns failures into the manual's error JSON: ``{"error": ...}``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from marshmallow import INCLUDE, Schema, ValidationError, fields
from peewee import IntegrityError, OperationalError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from manager_api import db
from manager_api.services.errors import (
    INVALID_REQUEST,
    Conflict,
    Invalid,
    NotFound,
    NotPermitted,
    ServiceError,
    Unavailable,
)

logger = logging.getLogger(__name__)

__all__ = ["INVALID_REQUEST", "ApiError", "ErrorSchema", "register"]

STATUS_OF: dict[type[ServiceError], int] = {
    Invalid: 400,
    NotPermitted: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}
"""The HTTP status of each kind of service failure."""


class ErrorSchema(Schema):
    """The shape of every error answer, as the handlers below make it (for the OpenAPI document)."""

    class Meta:
        # Some errors add fields of their own (a deployment's id and state, a template's live deployments).
        unknown = INCLUDE

    error = fields.String(required=True, metadata={"description": "What is wrong, naming the field if one is."})
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Validation errors only: every message, by field (nested as the body is)."},
    )


class ApiError(Exception):
    """A failure of the HTTP layer itself (a token, a body) with its status; ``extra`` adds fields to the body."""

    def __init__(self, status: int, message: str, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = dict(extra or {})


def stringify_keys(value: Any) -> Any:
    # marshmallow keys list items by int; JSON wants strings (and mixed keys would break sorting).
    if isinstance(value, Mapping):
        return {str(k): stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [stringify_keys(v) for v in value]
    return value


def first_error(messages: Any, path: tuple[str, ...] = ()) -> tuple[str, str]:
    """The dotted path and text of the first message in a marshmallow error tree."""
    if isinstance(messages, Mapping) and messages:
        key = next(iter(messages))
        sub = path if key == "_schema" else (*path, str(key))
        return first_error(messages[key], sub)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], path)
    return ".".join(path) or "body", str(messages)


def validation_message(exc: ValidationError) -> str:
    """``Invalid request format: <field path>: <message>``."""
    field, text = first_error(exc.messages)
    return f"{INVALID_REQUEST}: {field}: {text}"


def _body(code: int, message: str, /, **extra: Any) -> ResponseReturnValue:
    # Positional-only: ``extra`` may carry a "status" key of its own (the businesses API's "error").
    return jsonify({"error": message, **extra}), code


def _logged(log: Callable[..., None], what: str, code: int, message: str) -> Callable[[Exception], ResponseReturnValue]:
    """A handler that logs ``<what>: <exception>`` with ``log`` and answers ``code`` with the fixed ``message``."""

    def handler(exc: Exception) -> ResponseReturnValue:
        log("%s: %s", what, exc)
        return _body(code, message)

    return handler


def http_error_json(exc: HTTPException) -> ResponseReturnValue:
    """An HTTP-level failure (no such path, wrong method, a body too large) as the API's error JSON."""
    status = exc.code or 500
    if status == 400:
        message = INVALID_REQUEST
    elif status == 413:
        # The request's own limit (manager_api.body_limits: the join's is smaller), else the app's.
        limit = request.max_content_length if request else current_app.config.get("MAX_CONTENT_LENGTH")
        message = f"Request body too large (limit {limit} bytes)"
    else:
        message = exc.name
    response = exc.get_response()
    body = jsonify({"error": message})
    body.status_code = status
    # Keep Allow on 405 and the like.
    for header in ("Allow", "WWW-Authenticate"):
        if header in response.headers:
            body.headers[header] = response.headers[header]
    return body


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return _body(exc.status, exc.message, **exc.extra)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> ResponseReturnValue:
        return _body(STATUS_OF[type(exc)], exc.message, **exc.extra)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> ResponseReturnValue:
        return _body(400, validation_message(exc), errors=stringify_keys(exc.messages))

    app.register_error_handler(
        IntegrityError, _logged(logger.warning, "integrity error", 409, "Conflict with existing data")
    )
    app.register_error_handler(
        RedisError, _logged(logger.error, "redis unavailable", 503, "Task queue unavailable, try again later")
    )

    app.register_error_handler(HTTPException, http_error_json)

    # logger.exception: Flask calls handlers inside its except block, so the traceback is logged too
    _unexpected = _logged(logger.exception, "unhandled error", 500, "Internal server error")
    app.register_error_handler(Exception, _unexpected)

    @app.errorhandler(OperationalError)
    def _database_error(exc: OperationalError) -> ResponseReturnValue:
        if not db.is_busy(exc):
            return _unexpected(exc)
        # Last resort: writers take turns (db.write_transaction), so this is a turn not had within 30 s.
        logger.error("database busy: %s", exc)
        response = jsonify({"error": "Database busy, try again later"})
        response.status_code = 503
        response.headers["Retry-After"] = str(db.RETRY_AFTER_SECONDS)
        return response
