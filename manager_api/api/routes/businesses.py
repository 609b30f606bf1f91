"""Businesses (document 001 §5): deploy (or plan only), list, show, components, usage history, stop, restart,
update, delete."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import businesses as business_json
from manager_api.api.request_json import json_object
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import businesses as answers
from manager_api.api.schemas.businesses import (
    BusinessListQuery,
    BusinessRequest,
    DeployQuery,
    load_business,
    load_query,
)
from manager_api.api.schemas.manual import MAX_ID
from manager_api.services.businesses import actions as businesses
from manager_api.services.businesses import reads as business_reads
from manager_api.services.businesses import updates as business_updates
from manager_api.services.errors import NotFound

bp = Blueprint("businesses", __name__)


def _known(business_id: str) -> str:
    if len(business_id) > MAX_ID:
        raise businesses.error(NotFound, businesses.NOT_FOUND)
    return business_id


@bp.post("/api/businesses")
@documented(
    query=DeployQuery,
    body=BusinessRequest,
    answer=answers.BusinessOutcomeAnswer,
    status=201,
    extra_status=(200,),
    errors=(409,),
)
def deploy() -> ResponseReturnValue:
    """Deploy a business; ``?dry_run=true`` answers where each component would go and writes nothing."""
    dry_run = load_query(DeployQuery(), request.args.to_dict())["dry_run"]
    data = load_business(json_object())
    answer = businesses.deploy(extensions.redis(), data, auth.actor(), extensions.settings(), dry_run=dry_run)
    return jsonify(answer), 200 if dry_run else 201


@bp.get("/api/businesses")
@documented(query=BusinessListQuery, answer=answers.BusinessPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of businesses, newest first, filtered by status and name."""
    args = load_query(BusinessListQuery(), request.args.to_dict())
    page = business_reads.listing(args["page"], args["page_size"], args.get("status"), args.get("name"))
    return jsonify(business_json.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/businesses/<business_id>")
@documented(answer=answers.BusinessAnswer)
def detail(business_id: str) -> ResponseReturnValue:
    """A business with its components, where they run, what they use, and its recent transitions."""
    return jsonify(business_json.detail_json(business_reads.detail(_known(business_id))))


@bp.get("/api/businesses/<business_id>/components")
@documented(answer=answers.ComponentAnswer, many=True)
def components(business_id: str) -> ResponseReturnValue:
    """The components of a business (a JSON array, document 001 §5.7)."""
    return jsonify(business_json.components_json(business_reads.components(_known(business_id))))


@bp.get("/api/businesses/<business_id>/metrics")
@documented(answer=answers.BusinessUsageAnswer)
def metrics(business_id: str) -> ResponseReturnValue:
    """The components' stored usage samples (kept for the retention period), oldest first, on one time axis."""
    business_id = _known(business_id)
    return jsonify(business_json.usage_json(business_id, business_reads.usage_history(business_id)))


@bp.put("/api/businesses/<business_id>")
@documented(body=BusinessRequest, answer=answers.BusinessOutcomeAnswer, errors=(409,))
def update(business_id: str) -> ResponseReturnValue:
    """Update a business to a new version of its request: only what differs is touched."""
    business_id = _known(business_id)
    data = load_business(json_object())
    return jsonify(business_updates.update(extensions.redis(), business_id, data, auth.actor(), extensions.settings()))


@bp.post("/api/businesses/<business_id>/stop")
@documented(answer=answers.BusinessOutcomeAnswer, errors=(409,))
def stop(business_id: str) -> ResponseReturnValue:
    """Stop every component of a business."""
    return jsonify(businesses.stop(extensions.redis(), _known(business_id), auth.actor(), extensions.settings()))


@bp.post("/api/businesses/<business_id>/restart")
@documented(answer=answers.BusinessOutcomeAnswer, errors=(409,))
def restart(business_id: str) -> ResponseReturnValue:
    """A new generation of every component, on its node while it still fits there."""
    return jsonify(businesses.restart(extensions.redis(), _known(business_id), auth.actor(), extensions.settings()))


@bp.delete("/api/businesses/<business_id>")
@documented(answer=answers.BusinessOutcomeAnswer, errors=(409,))
def delete(business_id: str) -> ResponseReturnValue:
    """Delete a stopped business (or a failed one with nothing left running), its components and history."""
    return jsonify(businesses.delete(_known(business_id), auth.actor()))
