"""GET /api/audit?limit=N: the newest audit entries first."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from ..schemas import AuditQuerySchema
from ..services import audit

bp = Blueprint("audit", __name__)


@bp.get("/api/audit")
def recent() -> ResponseReturnValue:
    """The newest entries."""
    args = AuditQuerySchema().load(request.args.to_dict())
    return jsonify({"entries": audit.recent(args["limit"])})
