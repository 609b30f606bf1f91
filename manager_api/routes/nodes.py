"""GET /api/task/node (manual §5.3.1)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from .. import extensions
from ..services import nodes

bp = Blueprint("nodes", __name__)


@bp.get("/api/task/node")
def list_nodes() -> ResponseReturnValue:
    """Every node with status and resources."""
    settings = extensions.settings()
    return jsonify({"nodes": nodes.list_nodes(extensions.redis(), settings.offline_after_intervals)})
