"""Deploy, query, stop (manual §5.3.3), GET /deployments/<id> (manual §5.6); list and delete deployments."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import ApiError
from manager_api.api.presenters import deployments as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import deployments as answers
from manager_api.api.schemas.answers.common import IdAnswer
from manager_api.api.schemas.manual import MAX_ID, DeploymentListQuerySchema, IdSchema, NameSchema
from manager_api.services.deployments import actions as deployments

bp = Blueprint("deployments", __name__)


@bp.post("/api/task/task_group/deploy")
@documented(body=NameSchema, answer=IdAnswer, errors=(404, 409))
def deploy() -> ResponseReturnValue:
    """Deploy a new instance of a template."""
    data = load(NameSchema())
    settings = extensions.settings()
    deployment_id = deployments.deploy(extensions.redis(), data["name"], auth.actor(), settings.offline_after_intervals)
    return jsonify({"id": deployment_id})


@bp.post("/api/task/task_group/query")
@documented(body=IdSchema, answer=answers.DeploymentStatusAnswer, errors=(404,))
def query() -> ResponseReturnValue:
    """Status of a deployment: 0 running, 1 stopped or failed."""
    data = load(IdSchema())
    return jsonify(presenters.status_json(deployments.get(data["id"])))


@bp.post("/api/task/task_group/stop")
@documented(body=IdSchema, answer=IdAnswer, errors=(404, 409))
def stop() -> ResponseReturnValue:
    """Stop a deployment's deployment tasks."""
    data = load(IdSchema())
    settings = extensions.settings()
    deployments.stop(
        extensions.redis(), data["id"], auth.actor(), settings.stop_grace_seconds, settings.offline_after_intervals
    )
    return jsonify({"id": data["id"]})


def _known(deployment_id: str) -> str:
    if len(deployment_id) > MAX_ID:
        raise ApiError(404, deployments.NOT_FOUND)
    return deployment_id


@bp.get("/api/deployments")
@documented(query=DeploymentListQuerySchema, answer=answers.DeploymentPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of deployments, newest first, filtered by state and template name."""
    args = DeploymentListQuerySchema().load(request.args.to_dict())
    page = deployments.listing(args["page"], args["page_size"], args.get("state"), args.get("name"))
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/deployments/<deployment_id>")
@bp.get("/api/deployments/<deployment_id>")
@documented(answer=answers.DeploymentAnswer)
def detail(deployment_id: str) -> ResponseReturnValue:
    """A deployment with its deployment tasks."""
    return jsonify(presenters.detail_json(deployments.detail(_known(deployment_id))))


@bp.delete("/deployments/<deployment_id>")
@bp.delete("/api/deployments/<deployment_id>")
@documented(answer=answers.DeploymentDeletedAnswer, errors=(409,))
def delete(deployment_id: str) -> ResponseReturnValue:
    """Delete an ended deployment and its deployment tasks' records."""
    deployments.delete(_known(deployment_id), auth.actor())
    return jsonify({"id": deployment_id, "status": "success", "message": "deleted"})
