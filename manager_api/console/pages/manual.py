"""The manual's deployments (document 000): its templates (list, create from JSON, deploy one) and the
deployments with their tasks (state, node, pid, exit code), a deployment stopped from its page."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import INVALID_REQUEST, first_error
from manager_api.api.presenters import deployments as deployment_json
from manager_api.api.presenters import templates as template_json
from manager_api.api.schemas.manual import MAX_ID, DeploymentListQuerySchema, NameSchema, TemplateSchema
from manager_api.console import live
from manager_api.console.views import render
from manager_api.services.deployments import actions as deployments
from manager_api.services.deployments import templates
from manager_api.services.errors import NotFound
from shared.states import DeploymentState

bp = Blueprint("manual", __name__)

PAGE_SIZE = 50
"""Templates and deployments shown per page."""

EXAMPLE = {"name": "data-job", "task_groups": [{"tasks": [{"name": "cleaner", "config": {"command": "sleep 600"}}]}]}
"""What the template form starts with (README's manual example, cut down)."""


def _page(name: str) -> int:
    try:
        return max(1, int(request.args.get(name, "1")))
    except ValueError:
        return 1


def _listing(status: int = 200, **context: Any) -> ResponseReturnValue:
    state = request.args.get("state", "")
    error = None
    try:
        args = DeploymentListQuerySchema().load(
            {"page": _page("page"), "page_size": PAGE_SIZE, **({"state": state} if state else {})}
        )
    except ValidationError as exc:
        field, text = first_error(exc.messages)
        error = f"{field}: {text}"
        args = {"page": 1, "page_size": PAGE_SIZE}
    page = deployments.listing(args["page"], args["page_size"], args.get("state"), None)
    deployed = deployment_json.listing_json(page, args["page"], args["page_size"])
    template_page = templates.listing(_page("tpage"), PAGE_SIZE, None)
    shown_templates = template_json.listing_json(template_page, _page("tpage"), PAGE_SIZE)
    context.setdefault("spec", json.dumps(EXAMPLE, indent=2))
    return render(
        "manual.html",
        400 if error and status == 200 else status,
        deployed=deployed,
        templates=shown_templates,
        pages=max(1, -(-deployed["total"] // PAGE_SIZE)),
        states=[s.value for s in DeploymentState],
        state=state,
        filter_error=error,
        **context,
    )


@bp.get("/manual")
def listing() -> ResponseReturnValue:
    return _listing()


@bp.post("/manual/templates")
def create_template() -> ResponseReturnValue:
    """A template from its JSON, as POST /api/task/task_group takes it."""
    text = request.form.get("spec", "")
    try:
        body = json.loads(text)
    except ValueError as exc:
        return _listing(400, spec=text, spec_error=f"{INVALID_REQUEST}: not JSON: {exc}")
    if not isinstance(body, dict):
        return _listing(400, spec=text, spec_error=f"{INVALID_REQUEST}: body must be a JSON object")
    try:
        data = TemplateSchema().load(body)
    except ValidationError as exc:
        field, message = first_error(exc.messages)
        return _listing(400, spec=text, spec_error=f"{INVALID_REQUEST}: {field}: {message}")
    templates.create(data["name"], data["task_groups"], auth.actor())
    return redirect(url_for("console.manual.listing"))


@bp.post("/manual/deploy")
def deploy() -> ResponseReturnValue:
    """A new deployment of the template named in the form, as POST /api/task/task_group/deploy."""
    data = NameSchema().load({"name": request.form.get("name", "")})
    settings = extensions.settings()
    deployment_id = deployments.deploy(extensions.redis(), data["name"], auth.actor(), settings.offline_after_intervals)
    return redirect(url_for("console.manual.detail", deployment_id=deployment_id))


def _known(deployment_id: str) -> str:
    if len(deployment_id) > MAX_ID:
        raise NotFound(deployments.NOT_FOUND)
    return deployment_id


def _deployment(deployment_id: str) -> dict[str, Any]:
    return deployment_json.detail_json(deployments.detail(_known(deployment_id)))


@bp.get("/manual/deployments/<deployment_id>")
def detail(deployment_id: str) -> ResponseReturnValue:
    return render("deployment.html", deployment=_deployment(deployment_id))


@bp.get("/console/live/manual/deployments/<deployment_id>")
def stream(deployment_id: str) -> ResponseReturnValue:
    """The deployment's state and tasks, sent again whenever they change."""
    deployment_id = deployments.get(_known(deployment_id)).id  # a 404 now, not a stream that breaks
    return live.stream(
        {"deployment": lambda: render_template("console/_deployment_tasks.html", deployment=_deployment(deployment_id))}
    )


@bp.post("/manual/deployments/<deployment_id>/stop")
def stop(deployment_id: str) -> ResponseReturnValue:
    settings = extensions.settings()
    deployments.stop(extensions.redis(), _known(deployment_id), auth.actor(), settings.stop_grace_seconds)
    return redirect(url_for("console.manual.detail", deployment_id=deployment_id))
