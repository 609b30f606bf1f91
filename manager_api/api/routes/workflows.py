"""Workflows (issue 17): /api/workflows create, list, detail, cancel, live step events."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import workflows as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import SSE, documented
from manager_api.api.schemas.answers import workflows as answers
from manager_api.api.schemas.workflows import WorkflowCreateQuerySchema, WorkflowListQuerySchema, WorkflowSchema
from manager_api.services.workflows import actions as workflows
from manager_api.services.workflows import events

bp = Blueprint("workflows", __name__)


def _detail(workflow_id: str, status: int = 200) -> ResponseReturnValue:
    return jsonify(presenters.detail_json(*workflows.detail(workflow_id))), status


@bp.post("/api/workflows")
@documented(query=WorkflowCreateQuerySchema, body=WorkflowSchema, answer=answers.WorkflowDetailAnswer, status=201)
def create() -> ResponseReturnValue:
    """Create a workflow and start the steps that depend on nothing; ``?wait=N`` answers once it ended."""
    wait: float = WorkflowCreateQuerySchema().load(request.args.to_dict())["wait"]
    data = load(WorkflowSchema())
    settings = extensions.settings()
    workflow_id = workflows.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    if wait > 0:
        workflows.wait(extensions.redis(), workflow_id, wait)
    return _detail(workflow_id, 201)


@bp.get("/api/workflows")
@documented(query=WorkflowListQuerySchema, answer=answers.WorkflowPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of workflows, newest first, filtered by status and name."""
    args = WorkflowListQuerySchema().load(request.args.to_dict())
    page = workflows.listing(args["page"], args["page_size"], args.get("status"), args.get("name"))
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/workflows/<workflow_id>")
@documented(query=WorkflowCreateQuerySchema, answer=answers.WorkflowDetailAnswer)
def detail(workflow_id: str) -> ResponseReturnValue:
    """A workflow with its steps (status, fleet task link, host counts); ``?wait=N`` first waits for its end."""
    wait: float = WorkflowCreateQuerySchema().load(request.args.to_dict())["wait"]
    workflows.get(workflow_id)
    if wait > 0:
        workflows.wait(extensions.redis(), workflow_id, wait)
    return _detail(workflow_id)


@bp.post("/api/workflows/<workflow_id>/cancel")
@documented(answer=answers.WorkflowDetailAnswer, errors=(409,))
def cancel(workflow_id: str) -> ResponseReturnValue:
    """Cancel a workflow that has not ended: pending steps canceled, running steps' tasks canceled (409 else)."""
    settings = extensions.settings()
    workflows.cancel(extensions.redis(), workflow_id, auth.actor(), settings.offline_after_intervals)
    return _detail(workflow_id)


@bp.get("/api/workflows/<workflow_id>/events")
@documented(media=(SSE,))
def stream(workflow_id: str) -> Response:
    """Server-Sent Events: the workflow and every step as they are, then a line per change, ``end`` once ended."""
    workflows.get(workflow_id)
    return Response(
        stream_with_context(events.follow(extensions.redis(), workflow_id)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
