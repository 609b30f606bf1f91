"""Businesses (document 001): the list with its filters, a business with its components, where each runs, its
history and usage charts; deploy from the request's JSON after a dry run shows the scheduler's plan (or each
node's refusal); update, stop, restart."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import INVALID_REQUEST, ApiError
from manager_api.api.presenters import businesses as business_json
from manager_api.api.schemas.businesses import BusinessListQuery, load_business
from manager_api.api.schemas.manual import MAX_ID
from manager_api.console import live
from manager_api.console.views import list_query, render
from manager_api.services.businesses import actions as businesses
from manager_api.services.businesses import reads as business_reads
from manager_api.services.businesses import updates as business_updates
from manager_api.services.errors import Conflict, NotFound
from shared.states import BusinessState

bp = Blueprint("businesses", __name__)

PAGE_SIZE = 50
"""Businesses shown per page of the list."""

EXAMPLE = {
    "business_id": "shop",
    "business_name": "web shop",
    "components": [
        {
            "component_id": "worker",
            "type": "process",
            "command": "sleep 3600",
            "resource_requirements": {"cpu_cores": 0.5, "memory_mb": 128},
        }
    ],
}
"""What the deploy form starts with (README's shop, cut down)."""

STATES = [s.value for s in BusinessState]


def _known(business_id: str) -> str:
    if len(business_id) > MAX_ID:
        raise businesses.error(NotFound, businesses.NOT_FOUND)
    return business_id


@bp.get("/businesses")
def listing() -> ResponseReturnValue:
    raw = {k: v for k, v in request.args.items() if k in ("status", "name", "page") and v != ""}
    args, error = list_query(BusinessListQuery(), raw, PAGE_SIZE)
    page = business_reads.listing(args["page"], args["page_size"], args.get("status"), args.get("name"))
    answer = business_json.listing_json(page, args["page"], args["page_size"])
    pages = max(1, -(-answer["total"] // PAGE_SIZE))
    return render(
        "businesses.html",
        400 if error else 200,
        answer=answer,
        pages=pages,
        states=STATES,
        status=raw.get("status", ""),
        name=raw.get("name", ""),
        error=error,
    )


def _parse(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The business request typed into a form, validated as the API does: (data, None) or (None, message)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        return None, f"{INVALID_REQUEST}: not JSON: {exc}"
    if not isinstance(body, dict):
        return None, f"{INVALID_REQUEST}: body must be a JSON object"
    try:
        return load_business(body), None
    except ApiError as exc:
        return None, exc.message


def _form(text: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render("business_new.html", status, spec=text, **context)


@bp.get("/businesses/new")
def new() -> ResponseReturnValue:
    return _form(json.dumps(EXAMPLE, indent=2))


@bp.post("/businesses/new")
def deploy() -> ResponseReturnValue:
    """``action=plan``: the dry run (placements, or each node's refusal per component); ``action=deploy``."""
    text = request.form.get("spec", "")
    data, error = _parse(text)
    if data is None:
        return _form(text, 400, spec_error=error)
    settings = extensions.settings()
    dry_run = request.form.get("action") != "deploy"
    try:
        answer = businesses.deploy(extensions.redis(), data, auth.actor(), settings, dry_run=dry_run)
    except Conflict as exc:
        return _form(
            text,
            409,
            refusal=exc.message,
            rejections=exc.extra.get("rejections") or {},
            summary=exc.extra.get("rejection_summary") or {},
        )
    if dry_run:
        return _form(text, plan=answer["plan"], business_id=answer["business_id"])
    return redirect(url_for("console.businesses.detail", business_id=answer["business_id"]))


def _usage(business_id: str) -> dict[str, Any]:
    """The usage part's context: what charts.js draws, one line per component on each chart."""
    usage = business_json.usage_json(business_id, business_reads.usage_history(business_id))
    charts = {
        "times": usage["times"],
        "cpu": [{"label": cid, "values": c["cpu_percent"]} for cid, c in usage["components"].items()],
        "memory": [{"label": cid, "values": c["memory_mb"]} for cid, c in usage["components"].items()],
    }
    return {"charts": charts, "samples": len(usage["times"])}


def _detail(business_id: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    business = business_json.detail_json(business_reads.detail(_known(business_id)))
    return render("business.html", status, business=business, **_usage(business_id), **context)


@bp.get("/businesses/<business_id>")
def detail(business_id: str) -> ResponseReturnValue:
    return _detail(business_id)


@bp.get("/console/live/businesses/<business_id>")
def stream(business_id: str) -> ResponseReturnValue:
    """The business's state and components, and its usage charts' data, each sent again whenever it changes."""
    business_id = businesses.get(_known(business_id)).business_id  # a 404 now, not a stream that breaks

    def components() -> str:
        business = business_json.detail_json(business_reads.detail(business_id))
        return render_template("console/_business_components.html", business=business)

    def usage() -> str:
        return render_template("console/_business_usage.html", **_usage(business_id))

    return live.stream({"business": components, "usage": usage})


@bp.post("/businesses/<business_id>/update")
def update(business_id: str) -> ResponseReturnValue:
    text = request.form.get("spec", "")
    data, error = _parse(text)
    if data is None:
        return _detail(business_id, 400, spec=text, spec_error=error)
    settings = extensions.settings()
    business_updates.update(extensions.redis(), _known(business_id), data, auth.actor(), settings)
    return redirect(url_for("console.businesses.detail", business_id=business_id))


@bp.post("/businesses/<business_id>/stop")
def stop(business_id: str) -> ResponseReturnValue:
    businesses.stop(extensions.redis(), _known(business_id), auth.actor(), extensions.settings())
    return redirect(url_for("console.businesses.detail", business_id=business_id))


@bp.post("/businesses/<business_id>/restart")
def restart(business_id: str) -> ResponseReturnValue:
    businesses.restart(extensions.redis(), _known(business_id), auth.actor(), extensions.settings())
    return redirect(url_for("console.businesses.detail", business_id=business_id))
