"""Who may see the console: a session per browser, signed in with the API token (or opened at once when the
manager has no token, as the API is then open), and a CSRF token checked on every request that changes
something. Runs before every console request; the JSON API keeps its bearer token (api/auth.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, abort, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.console import sessions

OPEN_ENDPOINTS = frozenset({"console.static", "console.auth.signin"})
"""Answered without a session: the sign-in form and what it is drawn with."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def actor_of(remote: str | None) -> str:
    """The audit log's name of a console user: one API token, so who is the console at an address (roles and
    named users come with issue 15)."""
    return f"console@{remote or 'unknown'}"


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
        target = url_for("console.auth.signin", next=request.full_path.rstrip("?"))
        if request.headers.get("HX-Request"):
            response = Response(status=401)
            response.headers["HX-Redirect"] = target  # htmx leaves the page for the sign-in form
            return response
        return redirect(target)
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
