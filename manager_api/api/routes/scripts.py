"""Reusable scripts (issue 17): /api/scripts register, list, versions, detail, delete; fleet tasks run them."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import scripts as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import scripts as answers
from manager_api.api.schemas.manual import ScriptDetailQuerySchema, ScriptListQuerySchema, ScriptSchema
from manager_api.services.scripts import registry
from shared.messages import schema_of

bp = Blueprint("scripts", __name__)


@bp.post("/api/scripts")
@documented(body=ScriptSchema, answer=answers.ScriptAnswer, status=201, errors=(409,))
def create() -> ResponseReturnValue:
    """Register a script version (immutable: 409 when name@version exists); the body may be up to 8 MiB."""
    data = load(schema_of(ScriptSchema))
    return jsonify(presenters.script_json(registry.create(extensions.redis(), data, auth.actor()))), 201


@bp.get("/api/scripts")
@documented(query=ScriptListQuerySchema, answer=answers.ScriptPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of every script version, by name then newest first; ``name`` filters (contains)."""
    args = schema_of(ScriptListQuerySchema).load(request.args.to_dict())
    page = registry.listing(args["page"], args["page_size"], args.get("name"))
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/scripts/<name>")
@documented(answer=answers.ScriptVersionsAnswer)
def versions(name: str) -> ResponseReturnValue:
    """Every version of a script, newest first."""
    return jsonify({"name": name, "versions": [presenters.script_json(row) for row in registry.versions(name)]})


@bp.get("/api/scripts/<name>/<version>")
@documented(query=ScriptDetailQuerySchema, answer=answers.ScriptAnswer)
def detail(name: str, version: str) -> ResponseReturnValue:
    """One version; ``?content=1`` adds its content."""
    args = schema_of(ScriptDetailQuerySchema).load(request.args.to_dict())
    return jsonify(presenters.script_json(registry.get(name, version), content=args["content"]))


@bp.delete("/api/scripts/<name>/<version>")
@documented(answer=answers.ScriptDeletedAnswer, errors=(409,))
def delete(name: str, version: str) -> ResponseReturnValue:
    """Delete a version (409 while a task not yet ended runs it); the tasks that ran it keep their record."""
    registry.delete(extensions.redis(), name, version, auth.actor())
    return jsonify({"name": name, "version": version, "deleted": True})
