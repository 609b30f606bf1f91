"""Who may see the console: a session per browser, signed in with the API token (or opened at once when the
manager has no token, as the API is then open), and a CSRF token checked on every request that changes
something. Runs before every console request; the JSON API keeps its bearer token (api/auth.py)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Response, abort, g, redirect, request, url_for
from flask.typing import ResponseReturnValue
from redis import Redis

from manager_api import extensions
from manager_api.console import sessions
from manager_api.services import access, tokens

logger = logging.getLogger(__name__)

OPEN_ENDPOINTS = frozenset({"console.static", "console.auth.signin"})
"""Answered without a session: the sign-in form and what it is drawn with."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def actor_of(remote: str | None, token_name: str | None = None) -> str:
    """The audit log's name of a console user: ``console@addr`` signed in with the manager's API token (or on an
    open console), ``console:<token name>@addr`` with a named token."""
    who = "console" if token_name is None else f"console:{token_name}"
    return f"{who}@{remote or 'unknown'}"


ADMIN_PAGES = "console.tokens."
"""Endpoints (by prefix) only an admin may open, as /api/tokens."""

ANY_ROLE_ACTIONS = frozenset({"console.auth.signout"})
"""Requests that change something which every role may make."""


def needed_role(endpoint: str | None, method: str) -> str:
    """The least role a console request needs: the console's side of api/permissions.py (the services check an
    operator's node query and allowlist themselves, for the console as for the API)."""
    if endpoint is not None and endpoint.startswith(ADMIN_PAGES):
        return access.ADMIN
    if method in SAFE_METHODS or endpoint in ANY_ROLE_ACTIONS:
        return access.VIEWER
    return access.OPERATOR


def _identify(redis: Redis, session: sessions.Session) -> ResponseReturnValue | None:
    """Bind a named-token session's identity (looked up now: a revoked or expired token ends the session at its
    next page) and refuse what its role may not do."""
    if not session.token_id:
        return None  # the manager's API token, or the open console: an admin
    try:
        identity = tokens.identity_of(session.token_id)
    except tokens.Refused as exc:
        sessions.close(redis, session.id)
        logger.warning("console: session of %s ended: %s", session.actor, exc)
        return _to_signin()
    g.identity = identity
    access.use(identity)
    needed = needed_role(request.endpoint, request.method)
    if not identity.has(needed):
        abort(403, f"Token {identity.name!r} has role {identity.role}: this needs {needed}.")
    return None


def _to_signin() -> ResponseReturnValue:
    target = url_for("console.auth.signin", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        response = Response(status=401)
        response.headers["HX-Redirect"] = target  # htmx leaves the page for the sign-in form
        return response
    return redirect(target)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or ``https://...``)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("console.overview.page")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("console.overview.page")
    return target


def check() -> ResponseReturnValue | None:
    """before_request of every console page."""
    redis = extensions.redis()
    session = sessions.find(redis, request.cookies.get(sessions.COOKIE))
    if session is None and extensions.settings().api_token is None:
        session = sessions.open_session(redis, actor_of(request.remote_addr))
        g.console_new_session = session
    g.console_session = session
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if session is None:
        return _to_signin()
    refused = _identify(redis, session)
    if refused is not None:
        return refused
    g.actor = session.actor
    if request.method not in SAFE_METHODS:
        presented = request.headers.get(sessions.CSRF_HEADER) or request.form.get(sessions.CSRF_FIELD)
        if not sessions.csrf_ok(session, presented):
            abort(403, "This form expired or came from another site: reload the page and try again.")
    return None


def set_cookie(response: Response) -> Response:
    """after_request: hand a session opened by this request to the browser."""
    session = g.get("console_new_session")
    if session is not None:
        response.set_cookie(
            sessions.COOKIE,
            session.id,
            max_age=sessions.SESSION_IDLE_SECONDS,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
            path="/",
        )
    return response
