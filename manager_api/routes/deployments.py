"""Deploy, query, stop (manual §5.3.3) and GET /deployments/<id> (manual §5.6)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from .. import auth, extensions
from ..errors import ApiError
from ..request_json import load
from ..schemas import MAX_ID, IdSchema, NameSchema
from ..services import deployments

bp = Blueprint("deployments", __name__)


@bp.post("/api/task/task_group/deploy")
def deploy() -> ResponseReturnValue:
    """Deploy a new instance of a template."""
    data = load(NameSchema())
    settings = extensions.settings()
    deployment_id = deployments.deploy(extensions.redis(), data["name"], auth.actor(), settings.offline_after_intervals)
    return jsonify({"id": deployment_id})


@bp.post("/api/task/task_group/query")
def query() -> ResponseReturnValue:
    """Status of a deployment: 0 running, 1 stopped or failed."""
    data = load(IdSchema())
    return jsonify(deployments.status(data["id"]))


@bp.post("/api/task/task_group/stop")
def stop() -> ResponseReturnValue:
    """Stop a deployment's tasks."""
    data = load(IdSchema())
    settings = extensions.settings()
    deployments.stop(extensions.redis(), data["id"], auth.actor(), settings.stop_grace_seconds)
    return jsonify({"id": data["id"]})


@bp.get("/deployments/<deployment_id>")
@bp.get("/api/deployments/<deployment_id>")
def detail(deployment_id: str) -> ResponseReturnValue:
    """A deployment with its tasks."""
    if len(deployment_id) > MAX_ID:
        raise ApiError(404, deployments.NOT_FOUND)
    return jsonify(deployments.detail(deployment_id))
