"""What a service raises when it cannot do what was asked: the kind says why, the API layer says it in HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INVALID_REQUEST = "Invalid request format"
"""Prefix of every message about a malformed request (manual §5.7)."""


class ServiceError(Exception):
    """An expected failure with its message; ``extra`` adds fields to the answer that reports it."""

    def __init__(self, message: str, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = dict(extra or {})


class Invalid(ServiceError):
    """The request names or asks something that cannot be (HTTP 400)."""


class NotPermitted(ServiceError):
    """The caller may not do this (HTTP 403)."""


class NotFound(ServiceError):
    """What the request names does not exist (HTTP 404)."""


class Conflict(ServiceError):
    """The request clashes with the current state (HTTP 409)."""


class Unavailable(ServiceError):
    """A part the service needs is down for now: try again (HTTP 503)."""
