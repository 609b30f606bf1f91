"""Templates: POST /api/task/task_group and POST /api/task/query (manual §5.3.2); list, show, delete."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api.api import auth
from manager_api.api.errors import ApiError
from manager_api.api.presenters import templates as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import templates as answers
from manager_api.api.schemas.answers.common import SuccessAnswer
from manager_api.api.schemas.manual import MAX_NAME, NameSchema, TemplateListQuerySchema, TemplateSchema
from manager_api.services.deployments import templates

bp = Blueprint("templates", __name__)


@bp.post("/api/task/task_group")
@documented(body=TemplateSchema, answer=SuccessAnswer, errors=(409,))
def create_template() -> ResponseReturnValue:
    """Store a business template."""
    data = load(TemplateSchema())
    templates.create(data["name"], data["task_groups"], auth.actor())
    return jsonify({"status": "success"})


@bp.post("/api/task/query")
@documented(body=NameSchema, answer=answers.TemplateAnswer, errors=(404,))
def query_template() -> ResponseReturnValue:
    """Show a business template."""
    data = load(NameSchema())
    return jsonify(presenters.template_json(templates.get(data["name"])))


def _known(name: str) -> str:
    # Names may hold "/" (hence <path:>), never more than a stored name can.
    if len(name) > MAX_NAME:
        raise ApiError(404, templates.NOT_FOUND)
    return name


@bp.get("/api/templates")
@documented(query=TemplateListQuerySchema, answer=answers.TemplatePageAnswer)
def listing() -> ResponseReturnValue:
    """A page of templates by name, filtered by a part of their name."""
    args = TemplateListQuerySchema().load(request.args.to_dict())
    page = templates.listing(args["page"], args["page_size"], args.get("name"))
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/templates/<path:name>")
@documented(answer=answers.TemplateAnswer)
def show(name: str) -> ResponseReturnValue:
    """A template as POST /api/task/query shows it."""
    return jsonify(presenters.template_json(templates.get(_known(name))))


@bp.delete("/api/templates/<path:name>")
@documented(answer=answers.TemplateDeletedAnswer, errors=(409,))
def delete(name: str) -> ResponseReturnValue:
    """Delete a template that no deployment uses."""
    templates.delete(_known(name), auth.actor())
    return jsonify({"status": "success", "name": name})
