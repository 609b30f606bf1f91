"""API tokens (issue 15): the list, a create form whose answer shows the new token's secret once, and revoke.
Admins only (console/guard.py); the same services and
presenters as /api/tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api.api import auth
from manager_api.api.presenters import tokens as presenters
from manager_api.api.schemas.tokens import TokenSchema
from manager_api.console.views import field_error, render
from manager_api.services import tokens
from manager_api.services.errors import Conflict, Invalid

bp = Blueprint("tokens", __name__)

PAGE_SIZE = 100
FORM_FIELDS = ("name", "role", "nodeQuery", "commands", "expiresIn")
EMPTY_FORM = {"name": "", "role": "viewer", "nodeQuery": "", "commands": "", "expiresIn": ""}


def _listing(
    status: int = 200,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
) -> ResponseReturnValue:
    found = tokens.listing(1, PAGE_SIZE)
    rows = presenters.listing_json(found, 1, PAGE_SIZE)["tokens"]
    context = {"tokens": rows, "total": found.total, "created": created}
    return render("tokens.html", status, form=form or dict(EMPTY_FORM), errors=errors or {}, **context)


@bp.get("/tokens")
def listing() -> ResponseReturnValue:
    return _listing()


def _body(form: dict[str, str]) -> dict[str, Any]:
    """The JSON body POST /api/tokens would take for the form: one command pattern a line, blanks left out."""
    body: dict[str, Any] = {"name": form["name"], "role": form["role"]}
    if form["nodeQuery"].strip():
        body["nodeQuery"] = form["nodeQuery"]
    patterns = [line.strip() for line in form["commands"].splitlines() if line.strip()]
    if patterns:
        body["commands"] = patterns
    if form["expiresIn"].strip():
        body["expiresIn"] = form["expiresIn"]
    return body


@bp.post("/tokens")
def create() -> ResponseReturnValue:
    """Create a token and answer the page with its secret, this once (never redirected: it would be lost)."""
    form = {key: request.form.get(key, default) for key, default in EMPTY_FORM.items()}
    try:
        data = TokenSchema().load(_body(form))
        data["expiresAt"] = tokens.expiry(data.pop("expiresIn"), data["expiresAt"])
        made = tokens.create(data, auth.actor())
    except ValidationError as exc:
        return _listing(400, form, field_error(exc.messages, FORM_FIELDS))
    except (Invalid, Conflict) as exc:
        return _listing(400 if isinstance(exc, Invalid) else 409, form, {"form": exc.message})
    return _listing(201, created={**presenters.token_json(made.token), "token": made.text})


@bp.post("/tokens/<token_id>/revoke")
def revoke(token_id: str) -> ResponseReturnValue:
    tokens.revoke(token_id, auth.actor())
    return redirect(url_for("console.tokens.listing"))
