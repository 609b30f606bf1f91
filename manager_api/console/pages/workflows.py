"""Workflows (issue 17): the list with each one's status and progress, a form taking the workflow's JSON body
(as POST /api/workflows does), and a workflow's page with its steps (each linked to its fleet task), kept live
while it runs, and cancel. The same services and presenters as /api/workflows."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import first_error
from manager_api.api.presenters import workflows as presenters
from manager_api.api.schemas.workflows import WorkflowListQuerySchema, WorkflowSchema
from manager_api.console import live
from manager_api.console.views import list_query, render
from manager_api.services.errors import Invalid
from manager_api.services.workflows import actions as workflows
from shared.states import WorkflowStatus

bp = Blueprint("workflows", __name__)

PAGE_SIZE = 25
"""Workflows per page."""

MAX_BODY = 1024 * 1024
"""The longest workflow JSON the form takes (as the API's request body limit would)."""

EXAMPLE = json.dumps(
    {
        "name": "deploy-web",
        "steps": [
            {"name": "fetch", "task": {"command": "echo fetch", "targets": ["*"]}},
            {"name": "restart", "depends_on": ["fetch"], "task": {"command": "echo restart", "targets": ["*"]}},
        ],
    },
    indent=2,
)
"""The form's placeholder: the smallest workflow worth running."""

RUNNING = (WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value)


def _listing(status: int = 200, body: str = "", error: str | None = None) -> ResponseReturnValue:
    wanted = {key: request.args[key].strip() for key in ("status", "name", "page") if request.args.get(key, "").strip()}
    filters = {"status": wanted.get("status", ""), "name": wanted.get("name", "")}
    query, filter_error = list_query(WorkflowListQuerySchema(), wanted, PAGE_SIZE)
    found = workflows.listing(query["page"], PAGE_SIZE, query.get("status"), query.get("name"))
    rows = presenters.listing_json(found, query["page"], PAGE_SIZE)["workflows"]
    return render(
        "workflows.html",
        status,
        workflows=rows,
        total=found.total,
        page=query["page"],
        pages=max(1, -(-found.total // PAGE_SIZE)),
        filters=filters,
        filter_error=filter_error,
        statuses=[s.value for s in WorkflowStatus],
        body=body,
        error=error,
        example=EXAMPLE,
    )


@bp.get("/workflows")
def listing() -> ResponseReturnValue:
    return _listing()


@bp.post("/workflows")
def create() -> ResponseReturnValue:
    body = request.form.get("body", "")
    if len(body) > MAX_BODY:
        return _listing(400, "", f"body: longer than {MAX_BODY} characters")
    try:
        data = WorkflowSchema().load(json.loads(body))
        settings = extensions.settings()
        workflow_id = workflows.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    except json.JSONDecodeError as exc:
        return _listing(400, body, f"body: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except ValidationError as exc:
        field, text = first_error(exc.messages)
        return _listing(400, body, f"{field}: {text}")
    except Invalid as exc:
        return _listing(400, body, exc.message)
    return redirect(url_for("console.workflows.detail", workflow_id=workflow_id))


def _workflow(workflow_id: str) -> dict[str, Any]:
    return presenters.detail_json(*workflows.detail(workflow_id))


@bp.get("/workflows/<workflow_id>")
def detail(workflow_id: str) -> ResponseReturnValue:
    workflow = _workflow(workflow_id)
    return render("workflow.html", workflow=workflow, over=workflow["status"] not in RUNNING)


@bp.get("/console/live/workflows/<workflow_id>")
def stream(workflow_id: str) -> ResponseReturnValue:
    """The workflow's status and steps, sent again whenever a step moves."""
    workflows.get(workflow_id)
    return live.stream(
        {"workflow": lambda: render_template("console/_workflow_state.html", workflow=_workflow(workflow_id))},
        every=1.0,
    )


@bp.post("/workflows/<workflow_id>/cancel")
def cancel(workflow_id: str) -> ResponseReturnValue:
    settings = extensions.settings()
    workflows.cancel(extensions.redis(), workflow_id, auth.actor(), settings.offline_after_intervals)
    return redirect(url_for("console.workflows.detail", workflow_id=workflow_id))
