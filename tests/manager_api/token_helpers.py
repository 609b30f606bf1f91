"""Helpers of the token tests: a manager with a bootstrap --api-token, and named tokens made through the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from shared.api import bearer

from .conftest import answer

BOOTSTRAP = "bootstrap-admin-token"


@contextmanager
def secured_app(settings: Settings, api_token: str | None = BOOTSTRAP) -> Iterator[Flask]:
    """The manager app with ``--api-token`` set (the bootstrap admin), closed after."""
    application = create_app(replace(settings, api_token=api_token))
    try:
        yield application
    finally:
        close_app(application)
        db.close()


def make_token(client: FlaskClient, name: str, role: str, expect: int = 201, **extra: Any) -> dict[str, Any]:
    """POST /api/tokens as the bootstrap admin; the answer (with ``token``, the secret, when created)."""
    return answer(
        client.post("/api/tokens", json={"name": name, "role": role, **extra}, headers=bearer(BOOTSTRAP)), expect
    )


def as_token(token: str) -> dict[str, str]:
    return bearer(token)
