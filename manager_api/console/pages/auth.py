"""Sign-in with the manager's API token (an admin) or a named token (its role and scope), sign-out."""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import Blueprint, g, make_response, redirect, request, url_for
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api.auth import token_matches
from manager_api.console import guard, sessions
from manager_api.console.views import render
from manager_api.services import audit, tokens

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

PATH = "/signin"
SIGNIN_COOKIE = "corral_console_signin"
"""The sign-in form's CSRF token, as a cookie of the sign-in path alone."""
SIGNIN_SECONDS = 3600


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> ResponseReturnValue:
    target = guard.safe_next(request.values.get("next"))
    if extensions.settings().api_token is None or (request.method == "GET" and g.console_session is not None):
        return redirect(target)
    if request.method == "GET":
        return _form(target, None, 200)
    # No session yet to hold a CSRF token: the form's must equal its cookie's (a double submit), which
    # another site can neither read nor set.
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), request.form.get(sessions.CSRF_FIELD, "").encode()):
        return _form(target, "This form expired: try again.", 403)
    presented = request.form.get("token", "").strip()
    token_id = ""
    if tokens.is_named(presented):
        try:
            identity = tokens.authenticate(presented)
        except tokens.Refused as exc:
            logger.warning("console: sign-in from %s refused: %s", request.remote_addr, exc)
            return _form(target, f"{exc}.", 401)
        token_id = identity.token_id or ""
        actor = guard.actor_of(request.remote_addr, identity.name)
    elif token_matches(presented, extensions.settings().api_token):
        actor = guard.actor_of(request.remote_addr)
    else:
        logger.warning("console: sign-in from %s refused: wrong token", request.remote_addr)
        return _form(target, "That token is neither the manager's API token nor a valid named token.", 401)
    session = sessions.open_session(extensions.redis(), actor, token_id)
    g.console_new_session = session
    audit.record(actor, "console.signin", actor)
    response = redirect(target)
    response.delete_cookie(SIGNIN_COOKIE, path=PATH)
    return response


def _form(target: str, error: str | None, status: int) -> ResponseReturnValue:
    token = secrets.token_urlsafe(32)
    body, code = render("signin.html", status, next=target, error=error, signin_csrf=token)
    response = make_response(body, code)
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=SIGNIN_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        path=PATH,
    )
    return response


@bp.post("/signout")
def signout() -> ResponseReturnValue:
    session = g.console_session
    sessions.close(extensions.redis(), session.id)
    audit.record(session.actor, "console.signout", session.actor)
    response = redirect(url_for("console.auth.signin"))
    response.delete_cookie(sessions.COOKIE, path="/")
    return response
