"""POST /api/task/task_group and POST /api/task/query (manual §5.3.2)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from .. import auth
from ..request_json import load
from ..schemas import NameSchema, TemplateSchema
from ..services import templates

bp = Blueprint("templates", __name__)


@bp.post("/api/task/task_group")
def create_template() -> ResponseReturnValue:
    """Store a business template."""
    data = load(TemplateSchema())
    templates.create(data["name"], data["task_groups"], auth.actor())
    return jsonify({"status": "success"})


@bp.post("/api/task/query")
def query_template() -> ResponseReturnValue:
    """Show a business template."""
    data = load(NameSchema())
    return jsonify(templates.show(templates.get(data["name"])))
