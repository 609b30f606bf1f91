"""Nodes: the table with the query box (document 003's syntax, as GET /api/nodes?q=), a node's page with its
document, tags and what runs there."""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import first_error
from manager_api.api.presenters import nodes as presenters
from manager_api.api.schemas.nodes import NodeTagsSchema
from manager_api.console.views import is_htmx, render
from manager_api.services.errors import Invalid
from manager_api.services.nodes import documents, inventory, metrics_history, workload
from manager_api.services.nodes import query as node_query

bp = Blueprint("nodes", __name__)

PAGE_SIZE = 100
"""Nodes shown per page of the table."""

CHART_HOURS = 6.0
"""The span of a node page's CPU and memory chart (GET /api/nodes/{id}/metrics?hours= answers any)."""


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


@bp.get("/nodes")
def listing() -> ResponseReturnValue:
    text = request.args.get("q", "").strip()
    error = None
    nodes: list[dict] = []
    try:
        wanted = node_query.parse(text) if text else None
        settings = extensions.settings()
        nodes = documents.matching(extensions.redis(), settings.offline_after_intervals, wanted)
    except Invalid as exc:
        error = exc.message
    page = _page_number()
    pages = max(1, -(-len(nodes) // PAGE_SIZE))
    page = min(page, pages)
    shown = nodes[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    context = {"q": text, "error": error, "nodes": shown, "total": len(nodes), "page": page, "pages": pages}
    if is_htmx():
        return render("_nodes_table.html", 400 if error else 200, **context)
    return render("nodes.html", 400 if error else 200, **context)


@bp.get("/nodes/<node_id>")
def detail(node_id: str) -> ResponseReturnValue:
    return _detail(node_id)


def _detail(
    node_id: str, status: int = 200, tag_error: str | None = None, tags_text: str | None = None
) -> ResponseReturnValue:
    settings = extensions.settings()
    node = presenters.detail_json(inventory.detail(extensions.redis(), node_id, settings.offline_after_intervals))
    if tags_text is None:
        tags_text = " ".join(node["tags"])
    running = workload.on_node(node_id)
    history = metrics_history.series(node_id, CHART_HOURS)
    charts = {  # charts.js's data block, as the business page draws its components'
        "times": history["at"],
        "cpu": [{"label": "CPU", "values": history["cpu_percent"]}],
        "memory": [{"label": "memory", "values": history["memory_percent"]}],
    }
    context = {"running": running, "tag_error": tag_error, "tags_text": tags_text, "charts": charts}
    return render("node.html", status, node=node, chart_hours=CHART_HOURS, **context)


@bp.post("/nodes/<node_id>/tags")
def set_tags(node_id: str) -> ResponseReturnValue:
    if request.form.get("agent") == "1":
        tags = None  # hand them back to the agent
    else:
        words = request.form.get("tags", "").replace(",", " ").split()
        try:
            tags = NodeTagsSchema().load({"tags": words})["tags"]
        except ValidationError as exc:
            _field, message = first_error(exc.messages)
            return _detail(node_id, 400, tag_error=message, tags_text=request.form.get("tags", ""))
    inventory.set_api_tags(node_id, tags, auth.actor())
    return redirect(url_for("console.nodes.detail", node_id=node_id))
