"""GET /api/task/node (manual §5.3.1), and the node inventory: GET /api/nodes, labels and tags set through the
API, forgetting a node."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import ApiError
from manager_api.api.presenters import nodes as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import nodes as answers
from manager_api.api.schemas.manual import MAX_ID
from manager_api.api.schemas.nodes import (
    NodeLabelsPatchSchema,
    NodeLabelsSchema,
    NodeListQuerySchema,
    NodeMetricsQuerySchema,
    NodeTagsSchema,
)
from manager_api.services import access
from manager_api.services.nodes import documents as node_documents
from manager_api.services.nodes import inventory as node_inventory
from manager_api.services.nodes import manual_list as nodes
from manager_api.services.nodes import metrics_history
from manager_api.services.nodes import query as node_query
from manager_api.services.nodes import removal as node_removal

bp = Blueprint("nodes", __name__)


@bp.get("/api/task/node")
@documented(answer=answers.ManualNodeListAnswer)
def list_nodes() -> ResponseReturnValue:
    """Every node with status and resources."""
    settings = extensions.settings()
    listing = nodes.read(extensions.redis(), settings.offline_after_intervals)
    return Response(presenters.manual_list_body(listing), mimetype="application/json")


def _known(node_id: str) -> str:
    if len(node_id) > MAX_ID:
        raise ApiError(404, node_inventory.NOT_FOUND)
    return node_id


@bp.get("/api/nodes")
@documented(query=NodeListQuerySchema, answer=answers.NodeInventoryAnswer)
def inventory() -> ResponseReturnValue:
    """Every node with facts, labels, capacity and what business components reserve on it; ``?q=`` keeps
    those whose document, as this answer shows it, matches the node query (document 003 §5.1.2)."""
    text = NodeListQuerySchema().load(request.args.to_dict()).get("q")
    wanted = None if text is None else node_query.parse(text)  # a malformed query: 400 before any read
    settings = extensions.settings()
    return jsonify({"nodes": node_documents.matching(extensions.redis(), settings.offline_after_intervals, wanted)})


def _detail(node_id: str) -> ResponseReturnValue:
    """The node as GET /api/nodes/{id} answers it."""
    settings = extensions.settings()
    node = node_inventory.detail(extensions.redis(), node_id, settings.offline_after_intervals)
    return jsonify(presenters.detail_json(node))


@bp.get("/api/nodes/<node_id>")
@documented(answer=answers.NodeDetailAnswer)
def detail(node_id: str) -> ResponseReturnValue:
    """One node, with the components placed on it."""
    return _detail(_known(node_id))


@bp.post("/api/nodes/<node_id>/forget-secret")
@documented(answer=answers.SecretForgottenAnswer)
def forget_secret(node_id: str) -> ResponseReturnValue:
    """Let the next join under this node id set a new node secret (an agent that lost its secret)."""
    node_inventory.forget_secret(_known(node_id), auth.actor())
    return jsonify({"node_id": node_id, "message": "secret forgotten: the next join under this id sets a new one"})


def _reachable(node_id: str) -> str:
    """The node's id once the current token may touch it (403 outside an operator's node query)."""
    settings = extensions.settings()
    access.check_nodes(extensions.redis(), settings.offline_after_intervals, [node_id], "its labels or tags")
    return node_id


@bp.put("/api/nodes/<node_id>/labels")
@documented(body=NodeLabelsSchema, answer=answers.NodeDetailAnswer, errors=(409,))
def set_labels(node_id: str) -> ResponseReturnValue:
    """Replace the API-set labels of a node; answers the node as GET /api/nodes/{id} does."""
    data = load(NodeLabelsSchema())
    node_inventory.set_api_labels(_reachable(_known(node_id)), data["labels"], auth.actor())
    return _detail(node_id)


@bp.patch("/api/nodes/<node_id>/labels")
@documented(body=NodeLabelsPatchSchema, answer=answers.NodeDetailAnswer, errors=(409,))
def patch_labels(node_id: str) -> ResponseReturnValue:
    """Merge into the API-set labels of a node (null removes a key); answers as PUT does."""
    data = load(NodeLabelsPatchSchema())
    node_inventory.patch_api_labels(_reachable(_known(node_id)), data["labels"], auth.actor())
    return _detail(node_id)


@bp.put("/api/nodes/<node_id>/tags")
@documented(body=NodeTagsSchema, answer=answers.NodeDetailAnswer)
def set_tags(node_id: str) -> ResponseReturnValue:
    """Set the tags of a node (document 003 §5.1.1); they win over its agent's, across its restarts, until
    DELETE (or ``{"tags": null}``) hands them back. Answers the node as GET /api/nodes/{id} does."""
    data = load(NodeTagsSchema())
    node_inventory.set_api_tags(_reachable(_known(node_id)), data["tags"], auth.actor())
    return _detail(node_id)


@bp.delete("/api/nodes/<node_id>/tags")
@documented(answer=answers.NodeDetailAnswer)
def clear_tags(node_id: str) -> ResponseReturnValue:
    """Hand a node's tags back to its agent (those it sent at its last join); answers as PUT does."""
    node_inventory.set_api_tags(_reachable(_known(node_id)), None, auth.actor())
    return _detail(node_id)


@bp.delete("/api/nodes/<node_id>")
@documented(answer=answers.NodeForgottenAnswer, errors=(409,))
def forget(node_id: str) -> ResponseReturnValue:
    """Forget an offline node: out of lists and placement, its history kept; its agent may join again."""
    return jsonify(node_removal.forget(extensions.redis(), _known(node_id), auth.actor(), extensions.settings()))


@bp.get("/api/nodes/<node_id>/metrics")
@documented(query=NodeMetricsQuerySchema, answer=answers.NodeMetricsAnswer)
def metrics(node_id: str) -> ResponseReturnValue:
    """The node's CPU and memory use over the last ``hours`` (default 6, at most the retention): parallel
    lists ``at`` (Unix seconds), ``cpu_percent``, ``memory_percent``, oldest first."""
    node_inventory.require(_known(node_id))
    args = NodeMetricsQuerySchema().load(request.args.to_dict())
    return jsonify(metrics_history.series(node_id, args["hours"]))
