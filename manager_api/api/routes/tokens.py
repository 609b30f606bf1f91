"""API tokens (issue 15): /api/tokens create (the secret shown once), list, detail, revoke; admin only
(api/permissions.py)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api.api import auth
from manager_api.api.presenters import tokens as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import tokens as answers
from manager_api.api.schemas.tokens import TokenListQuerySchema, TokenSchema
from manager_api.services import tokens

bp = Blueprint("tokens", __name__)


@bp.post("/api/tokens")
@documented(body=TokenSchema, answer=answers.TokenCreatedAnswer, status=201, errors=(409,))
def create() -> ResponseReturnValue:
    """Create a token; the answer's ``token`` is its only showing (the manager keeps a hash)."""
    data = load(TokenSchema())
    data["expiresAt"] = tokens.expiry(data.pop("expiresIn"), data["expiresAt"])
    created = tokens.create(data, auth.actor())
    return jsonify({**presenters.token_json(created.token), "token": created.text}), 201


@bp.get("/api/tokens")
@documented(query=TokenListQuerySchema, answer=answers.TokenPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of tokens, oldest first, revoked and expired ones included."""
    args = TokenListQuerySchema().load(request.args.to_dict())
    page = tokens.listing(args["page"], args["page_size"])
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/tokens/<token_id>")
@documented(answer=answers.TokenAnswer)
def detail(token_id: str) -> ResponseReturnValue:
    """A token (not its secret)."""
    return jsonify(presenters.token_json(tokens.get(token_id)))


@bp.delete("/api/tokens/<token_id>")
@documented(answer=answers.TokenAnswer)
def revoke(token_id: str) -> ResponseReturnValue:
    """Revoke a token: refused from its next request on; the row stays for the audit log."""
    return jsonify(presenters.token_json(tokens.revoke(token_id, auth.actor())))
