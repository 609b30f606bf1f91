"""Bearer tokens: the API token for users (when set), the join token for agents."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from flask import Flask, g, request

from manager_api import extensions
from manager_api.api.errors import ApiError
from shared.api import AUTH_HEADER, JOIN_PATH, METRICS_PATH, is_api_path, is_public_path

logger = logging.getLogger(__name__)


def presented_token() -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, if any."""
    header = request.headers.get(AUTH_HEADER, "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(presented: str | None, expected: str | None) -> bool:
    """Constant-time comparison; nothing matches an unset token."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def read_join_token(path: str | None) -> str | None:
    """The join token from its file (read each time, so a replaced file takes effect)."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        logger.error("cannot read join token file %s: %s", path, exc)
        return None


def _check() -> None:
    settings = extensions.settings()
    remote = request.remote_addr or "unknown"
    token = presented_token()
    g.actor = f"anonymous@{remote}"
    if is_public_path(request.path):
        return  # liveness and the API's description (shared.api.is_public_path)
    if not (is_api_path(request.path) or request.path == METRICS_PATH):
        return  # the web console's pages sign their users in themselves (manager_api/console/guard.py)
    # /metrics takes the API's token: a scraper holds it as Prometheus's bearer_token (README, Prometheus).
    if request.path == JOIN_PATH:
        if not token_matches(token, read_join_token(settings.join_token_file)):
            logger.warning("join from %s refused: %s join token", remote, "bad" if token else "no")
            raise ApiError(401, "Invalid join token")
        g.actor = f"agent@{remote}"
        return
    if settings.api_token is None:
        return
    if not token_matches(token, settings.api_token):
        raise ApiError(401, "Missing or invalid API token")
    g.actor = f"token@{remote}"


def init_app(app: Flask) -> None:
    """Check tokens before every request."""
    app.before_request(_check)


def actor() -> str:
    """Who makes the current request, for the audit log."""
    return str(g.get("actor", "system"))
