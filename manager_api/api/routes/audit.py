"""GET /api/audit?page=&page_size= (or ?limit=N, its older form)&actor=&action=&target=&since=&until=: the newest
audit entries first, those filters keep."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api.api.presenters import audit as presenters
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers.audit import AuditPageAnswer
from manager_api.api.schemas.manual import AuditQuerySchema
from manager_api.services import audit

bp = Blueprint("audit", __name__)


@bp.get("/api/audit")
@documented(query=AuditQuerySchema, answer=AuditPageAnswer)
def recent() -> ResponseReturnValue:
    """A page of entries, newest first."""
    args = AuditQuerySchema().load(request.args.to_dict())
    filters = {key: args.get(key) for key in audit.FILTERS}
    page = audit.listing(args["page"], args["page_size"], **filters)
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))
