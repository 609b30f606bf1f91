"""Bearer tokens: the bootstrap --api-token (admin) and named tokens with a role (services/tokens.py) for users,
the join token for agents; then the role each route needs (api/permissions.py)."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from flask import Flask, g, request

from manager_api import extensions
from manager_api.api import permissions
from manager_api.api.errors import ApiError
from manager_api.services import access, tokens
from shared.api import AUTH_HEADER, JOIN_PATH, METRICS_PATH, is_api_path, is_public_path

logger = logging.getLogger(__name__)

BOOTSTRAP = access.Identity("token", access.ADMIN)
"""The one token of --api-token: an admin, as it always was (its audit actor stays "token@addr")."""


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
    g.identity = None
    access.use(None)
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
    identity = _identify(token, settings.api_token)
    if identity is None:
        return  # no --api-token and no named token: open, as before issue 15 (README, Security)
    g.identity = identity
    access.use(identity)
    g.actor = f"token@{remote}" if identity.token_id is None else f"token:{identity.name}@{remote}"
    _authorize(identity)


def _identify(token: str | None, api_token: str | None) -> access.Identity | None:
    """Who presents ``token``: a named token's identity, the bootstrap admin, or None on an open API."""
    if token is not None and tokens.is_named(token):
        try:
            return tokens.authenticate(token)  # on an open API too, so that its scope applies
        except tokens.Refused as exc:
            raise ApiError(401, str(exc)) from None
    if api_token is None:
        return None  # an open API ignores other tokens, as it always did
    if not token_matches(token, api_token):
        raise ApiError(401, "Missing or invalid API token")
    return BOOTSTRAP


def _authorize(identity: access.Identity) -> None:
    """403 unless the identity's role reaches what permissions.POLICY asks of this endpoint and method."""
    if request.endpoint is None:
        return  # no such route: the 404 or 405 follows
    needed = permissions.required_role(request.endpoint, request.method) or access.ADMIN
    if not identity.has(needed):
        raise ApiError(
            403, f"Token {identity.name!r} has role {identity.role}: {request.method} {request.path} needs {needed}"
        )


def init_app(app: Flask) -> None:
    """Check tokens before every request."""
    app.before_request(_check)


def actor() -> str:
    """Who makes the current request, for the audit log."""
    return str(g.get("actor", "system"))
